import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { z } from 'zod';
import { COMMANDS, parseCommand } from '../../src/cli/commands.js';
import { forwardUserSchema } from '../../src/config/forward.js';
import { ConfigError, parseConfigText } from '../../src/config/load.js';

const ROOT = new URL('../../../', import.meta.url);

const DOCS = ['README.md', ...readdirSync(new URL('docs/', ROOT)).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

/** Every fenced block of README.md and docs/*.md whose info string matches `lang` (a RegExp source), with where it starts. */
function blocks(lang: string): Array<{ where: string; text: string }> {
  const info = new RegExp(`^(?:${lang})$`);
  const out: Array<{ where: string; text: string }> = [];
  for (const f of DOCS) {
    const lines = readFileSync(new URL(f, ROOT), 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const open = /^```(\S*)\s*$/.exec(lines[i]!);
      if (!open) continue;
      const end = lines.findIndex((l, j) => j > i && /^```\s*$/.test(l));
      if (end < 0) break;
      if (info.test(open[1]!)) out.push({ where: `${f}:${i + 1}`, text: lines.slice(i + 1, end).join('\n') + '\n' });
      i = end;
    }
  }
  return out;
}

const yamlBlocks = () => blocks('ya?ml');

const usersFile = z.object({ users: z.array(forwardUserSchema) }).strict();

test('every YAML sample in README.md and docs/ validates (a gatewise config, or a users file when it holds only users)', () => {
  const blocks = yamlBlocks();
  assert.ok(blocks.length >= 3, `found ${blocks.length} YAML blocks`);
  const problems: string[] = [];
  for (const b of blocks) {
    const raw = parse(b.text) as Record<string, unknown> | null;
    if (raw && typeof raw === 'object' && Object.keys(raw).length === 1 && 'users' in raw) {
      const r = usersFile.safeParse(raw);
      if (!r.success) problems.push(`${b.where} (users file): ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
      continue;
    }
    try {
      parseConfigText(b.text, b.where);
    } catch (err) {
      problems.push(err instanceof ConfigError ? err.message : `${b.where}: ${(err as Error).message}`);
    }
  }
  assert.deepEqual(problems, []);
});

/** A command line split as sh would split it (quotes, backslash-newline), up to a comment. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  const re = /\s*(?:'([^']*)'|"([^"]*)"|(#.*$)|([^\s'"#]+))/gy;
  let cur: string | undefined;
  for (let m = re.exec(line); m && m[0] !== ''; m = re.exec(line)) {
    if (m[3] !== undefined) break;
    const part = m[1] ?? m[2] ?? m[4]!;
    const joined = cur !== undefined && !/^\s/.test(m[0]);
    if (joined) cur += part;
    else {
      if (cur !== undefined) words.push(cur);
      cur = part;
    }
  }
  if (cur !== undefined) words.push(cur);
  return words;
}

test('every gatewise command line in the shell samples of README.md and docs/ is one the CLI accepts (command, flags, values by name)', () => {
  const names = new Set(COMMANDS.map((c) => c.name));
  const lines: Array<{ where: string; argv: string[] }> = [];
  for (const b of blocks('sh|bash|shell|console|')) {
    const text = b.text.replace(/\\\n\s*/g, ' ');
    for (const raw of text.split('\n')) {
      const words = shellWords(raw.replace(/^\$\s+/, ''));
      const at = words.findIndex((w, i) => w === 'gatewise' && names.has(words[i + 1] ?? ''));
      // Synopses (`gatewise run -c FILE [--workers N|auto]`) are the CLI block's, compared elsewhere.
      if (at < 0 || words.some((w) => w.startsWith('['))) continue;
      lines.push({ where: `${b.where}: ${raw.trim()}`, argv: words.slice(at + 1) });
    }
  }
  assert.ok(lines.length >= 10, `found ${lines.length} command lines`);
  const refused: string[] = [];
  for (const { where, argv } of lines) {
    const def = COMMANDS.find((c) => c.name === argv[0])!;
    const rest = argv.slice(1).filter((w) => w !== '&&' && !w.startsWith('|'));
    try {
      const { values, positionals } = parseCommand(def, rest);
      for (const o of def.options) if (o.required && values[o.flag] === undefined) refused.push(`${where}: --${o.flag} is required`);
      if (def.name === 'diagnose' && positionals.length !== 1) refused.push(`${where}: one URL`);
    } catch (err) {
      refused.push(`${where}: ${(err as Error).message}`);
    }
  }
  assert.deepEqual(refused, []);
});

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { z } from 'zod';
import { forwardUserSchema } from '../../src/config/forward.js';
import { ConfigError, parseConfigText } from '../../src/config/load.js';

const ROOT = new URL('../../../', import.meta.url);

/** Every ```yaml block of README.md and docs/*.md, with where it starts. */
function yamlBlocks(): Array<{ where: string; text: string }> {
  const files = ['README.md', ...readdirSync(new URL('docs/', ROOT)).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  const out: Array<{ where: string; text: string }> = [];
  for (const f of files) {
    const text = readFileSync(new URL(f, ROOT), 'utf8');
    const re = /^```ya?ml\n([\s\S]*?)^```/gm;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      out.push({ where: `${f}:${text.slice(0, m.index).split('\n').length}`, text: m[1]! });
    }
  }
  return out;
}

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

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, parseConfigText, problemLine } from '../../src/config/load.js';
import { checkConfigFile } from '../../src/config/check.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * Finding (newcomer audit): a `.json` config was read by the YAML parser, so a file that
 * claims to be JSON was accepted with trailing commas, comments (`//` ones became part of a
 * key) and unquoted or single-quoted keys and strings, while the users-file loader of a
 * running proxy read a `.json` users file with JSON.parse: `gatewise check` said ok and
 * `gatewise run` then failed with "Unexpected token '#' ... is not valid JSON", naming no
 * file. A `.json` file (config or users file) is now read as strict JSON, a syntax error said
 * as FILE:LINE:COL like the YAML errors; YAML files are read as before.
 */

const BIN = fileURLToPath(new URL('../../../bin/gatewise.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'gatewise-json-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const CONFIG = {
  name: 'json-strict',
  listeners: [{ address: '127.0.0.1', port: 8080, maxHeaderCount: 50 }],
  clusters: {
    app: { endpoints: ['http://127.0.0.1:3000', { url: 'http://127.0.0.1:3001', weight: 2 }], timeouts: { connect: '2s' } },
    other: { endpoints: ['http://127.0.0.1:3002'] },
  },
  routes: [
    { name: 'api', match: { pathPrefix: '/api', methods: ['GET', 'POST'] }, cluster: 'other' },
    { cluster: 'app', retry: { tries: 2 } },
  ],
  log: { access: false },
};
const GOOD = JSON.stringify(CONFIG, null, 2) + '\n';
const EXPECTED = parseConfigText(GOOD, 'good.yaml');

function lineCol(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  return { line: before.split('\n').length, column: offset - before.lastIndexOf('\n') };
}

function refusal(text: string, file: string): ConfigError {
  try {
    parseConfigText(text, file);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`${file}: accepted as JSON:\n${text}`);
}

/** Offsets in `GOOD` of every character `c` outside strings. */
function structural(text: string, chars: string): number[] {
  const out: number[] = [];
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (chars.includes(c)) out.push(i);
  }
  return out;
}

interface Mutation {
  kind: string;
  text: string;
  /** Where the first error is. */
  at: number;
  /** The words the problem must say. */
  says: RegExp;
  /** YAML reads it as the same config (only then is it checked as .yaml too). */
  yamlSame: boolean;
}

function mutate(rand: () => number, kind: number): Mutation {
  const pick = <T>(xs: readonly T[]): T => xs[between(rand, 0, xs.length - 1)]!;
  switch (kind) {
    case 0: {
      // A trailing comma before a closing bracket of a non-empty container.
      const close = pick(structural(GOOD, ']}').filter((i) => !/[[{]\s*$/.test(GOOD.slice(0, i))));
      let last = close - 1;
      while (/\s/.test(GOOD[last]!)) last--;
      const text = GOOD.slice(0, last + 1) + ',' + GOOD.slice(last + 1);
      return { kind: 'trailing comma', text, at: close + 1, says: new RegExp(`trailing comma before "\\${GOOD[close]}"`), yamlSame: true };
    }
    case 1: {
      // A comment at the start of a line (after its indentation), // or /* */.
      const lines = GOOD.split('\n');
      const n = between(rand, 1, lines.length - 2);
      const offset = lines.slice(0, n).join('\n').length + 1 + /^\s*/.exec(lines[n]!)![0].length;
      const comment = rand() < 0.5 ? '// a note\n' : '/* a note */ ';
      return { kind: 'comment', text: GOOD.slice(0, offset) + comment + GOOD.slice(offset), at: offset, says: /comment/, yamlSame: false };
    }
    case 2: {
      // A key without its quotes.
      const keys = [...GOOD.matchAll(/"([A-Za-z]+)":/g)];
      const m = pick(keys);
      const text = GOOD.slice(0, m.index) + m[1] + ':' + GOOD.slice(m.index + m[0].length);
      return { kind: 'unquoted key', text, at: m.index, says: /key.*double quotes/, yamlSame: true };
    }
    default: {
      // A string value in single quotes.
      const values = [...GOOD.matchAll(/: "([^"']+)"/g)];
      const m = pick(values);
      const text = GOOD.slice(0, m.index) + `: '${m[1]}'` + GOOD.slice(m.index + m[0].length);
      return { kind: 'single-quoted string', text, at: m.index + 2, says: /double quotes/, yamlSame: true };
    }
  }
}

test('a .json config with a trailing comma, a comment, an unquoted key or a single-quoted string is refused at its line and column; the same text as .yaml reads as before (seeded family)', async () => {
  await seededRun('json-strict', (rand) => {
    for (let k = 0; k < 80; k++) {
      const m = mutate(rand, k % 4);
      const err = refusal(m.text, 'c.json');
      assert.equal(err.problems.length, 1, `${m.kind}: ${err.message}`);
      const p = err.problems[0]!;
      const want = lineCol(m.text, m.at);
      assert.deepEqual({ line: p.line, column: p.column }, want, `${m.kind}: ${err.message}\n${m.text}`);
      assert.match(p.message, /^not valid JSON: /, m.kind);
      assert.match(p.message, m.says, m.kind);
      assert.match(problemLine(p, 'c.json'), new RegExp(`^c\\.json:${want.line}:${want.column}  \\(root\\): not valid JSON: `));
      if (m.yamlSame) assert.deepEqual(parseConfigText(m.text, 'c.yaml'), EXPECTED, `${m.kind} as YAML`);
    }
  });
});

test('.json files: what JSON.parse refuses is refused at a place in the file, what it accepts is not refused as JSON (seeded mutations)', async () => {
  const alphabet = ['{', '}', '[', ']', ',', ':', '"', "'", '/', '*', '\\', ' ', '\n', '\t', 'a', '1', '-', '.', 'e', 'n', 'u', 'l', '\u0001', 'x'];
  await seededRun('json-strict mutations', (rand) => {
    let refused = 0;
    for (let k = 0; k < 400; k++) {
      let text = GOOD;
      for (let e = between(rand, 1, 3); e > 0; e--) {
        const at = between(rand, 0, text.length - 1);
        const op = between(rand, 0, 2);
        const c = alphabet[between(rand, 0, alphabet.length - 1)]!;
        text = op === 0 ? text.slice(0, at) + c + text.slice(at) : op === 1 ? text.slice(0, at) + text.slice(at + 1) : text.slice(0, at) + c + text.slice(at + 1);
      }
      let valid = true;
      try {
        JSON.parse(text);
      } catch {
        valid = false;
      }
      let problems: readonly { message: string; line?: number; column?: number }[] = [];
      try {
        parseConfigText(text, 'm.json');
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        problems = err.problems;
      }
      const syntax = problems.filter((p) => p.message.startsWith('not valid JSON'));
      if (valid) {
        assert.deepEqual(syntax, [], `valid JSON refused as not JSON:\n${JSON.stringify(text)}`);
      } else {
        refused++;
        assert.equal(syntax.length, 1, `JSON.parse refuses it, Gatewise said ${JSON.stringify(problems)}:\n${JSON.stringify(text)}`);
        assert.equal(problems.length, 1);
        const lines = text.split('\n');
        const { line, column } = syntax[0]!;
        assert.ok(line !== undefined && line >= 1 && line <= lines.length, `line ${line}`);
        assert.ok(column !== undefined && column >= 1 && column <= lines[line - 1]!.length + 1, `column ${column} of line ${line}`);
      }
    }
    assert.ok(refused > 100, `${refused} of 400 mutations were invalid JSON`);
  });
});

test('valid JSON still loads as .json: tab indentation, CRLF lines, a byte order mark, an upper-case extension', () => {
  const tabs = JSON.stringify(CONFIG, null, '\t');
  for (const [text, file] of [
    [tabs, 'tabs.json'],
    [tabs.replace(/\n/g, '\r\n'), 'crlf.json'],
    ['\uFEFF' + GOOD, 'bom.json'],
    [JSON.stringify(CONFIG), 'ONE-LINE.JSON'],
  ] as const) {
    assert.deepEqual(parseConfigText(text, file), EXPECTED, file);
  }
});

test('an empty .json file and text after the value are said as such', () => {
  for (const [text, says, line, column] of [
    ['', /the file is empty/, 1, 1],
    [' \n', /the file is empty/, 1, 1],
    [GOOD + '}\n', /after the end/, GOOD.split('\n').length, 1],
  ] as const) {
    const p = refusal(text, 'e.json').problems;
    assert.equal(p.length, 1, JSON.stringify(text));
    assert.match(p[0]!.message, says);
    assert.deepEqual({ line: p[0]!.line, column: p[0]!.column }, { line, column }, `${p[0]!.message}: ${JSON.stringify(text)}`);
  }
  const cut = GOOD.slice(0, GOOD.lastIndexOf('}'));
  const p = refusal(cut, 'e.json').problems;
  assert.equal(p.length, 1);
  assert.match(p[0]!.message, /^not valid JSON: the file ends before the "\{" at line 1, column 1 is closed/);
  assert.deepEqual({ line: p[0]!.line, column: p[0]!.column }, lineCol(cut, cut.length));
});

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 30000, cwd: dir }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('gatewise check -c lax.json: exit 1, FILE:LINE:COL and the reason', async () => {
  const text = GOOD.replace('"maxHeaderCount": 50', '"maxHeaderCount": 50,');
  writeFileSync(join(dir, 'lax.json'), text);
  const r = await cli(['check', '-c', 'lax.json']);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  const at = lineCol(text, text.indexOf('}', text.indexOf('"maxHeaderCount"')));
  assert.match(r.stderr, new RegExp(`^lax\\.json: 1 problem\n  lax\\.json:${at.line}:${at.column}  \\(root\\): not valid JSON: a trailing comma before "\\}"`));
});

test('a .json users file is read as strict JSON by gatewise check, as the running proxy reads it', () => {
  const users = join(dir, 'lax-users.json');
  const text = '{\n  "users": [\n    { "name": "alice", "password": "x", },\n  ]\n}\n';
  writeFileSync(users, text);
  writeFileSync(join(dir, 'p.json'), JSON.stringify({ forward: { listeners: [{ port: 3128 }], auth: { usersFile: users } } }));
  const r = checkConfigFile(join(dir, 'p.json'));
  const p = r.problems.find((q) => q.file === users);
  assert.ok(p, JSON.stringify(r.problems));
  assert.match(p.message, /^not valid JSON: a trailing comma before "\}"/);
  assert.deepEqual({ line: p.line, column: p.column }, lineCol(text, text.indexOf('}', text.indexOf('"x",'))));
});

test('gatewise init -c FILE.json --users FILE.json writes JSON, which check and JSON.parse accept', async () => {
  const r = await cli(['init', '--to', 'http://127.0.0.1:3000', '--proxy', '-c', 'init.json', '--users', 'init-users.json']);
  assert.equal(r.code, 0, r.stderr);
  for (const f of ['init.json', 'init-users.json']) assert.doesNotThrow(() => JSON.parse(readFileSync(join(dir, f), 'utf8')), f);
  const c = await cli(['check', '-c', 'init.json']);
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stdout, /^init\.json: ok/);
});

test('gatewise run --help and check --help say that a .json config is read as JSON', async () => {
  for (const cmd of ['run', 'check']) {
    const r = await cli([cmd, '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /-c, --config FILE +the config file: YAML, or strict JSON when its name ends in \.json/, cmd);
  }
});

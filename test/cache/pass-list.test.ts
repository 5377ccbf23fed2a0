import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { staleTestIds, suiteTests } from './cache-suite.js';

/**
 * The committed list of http-cache-tests that must pass (test/cache/http-cache-tests.pass.json)
 * may only grow. Whether each listed test passes is checked by http-cache-tests.test.ts (it
 * runs the suite); this file checks the list itself, without running the suite:
 *   - no id ever committed in the list's history is missing from it now (git log of the file),
 *     except an id moved to `retired` with its reason (a deliberate RFC decision against the
 *     suite), which docs/cache.md's table of failing tests must name;
 *   - every id names a test of the suite, the list is sorted and has no duplicates;
 *   - every stale-if-error / stale-while-revalidate test of the suite is on it.
 */
const LIST = fileURLToPath(new URL('../../../test/cache/http-cache-tests.pass.json', import.meta.url));
const file = JSON.parse(readFileSync(LIST, 'utf8')) as { pass: string[]; retired?: Record<string, string> };
const listed = file.pass;
/** Ids taken off the list on purpose, each with the RFC reason. */
const retired = file.retired ?? {};

/** The repository's top directory, or undefined when this is not a git checkout (or git is absent). */
function gitTop(): string | undefined {
  try {
    return execFileSync('git', ['rev-parse', '--show-toplevel'], { cwd: dirname(LIST), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

test('the must-pass list only grows: every id in any committed version of it is still listed', (t) => {
  const top = gitTop();
  if (top === undefined) {
    t.skip('not a git checkout (or no git): the list\'s history cannot be read; the suite test still checks every listed id passes');
    return;
  }
  const file = relative(top, LIST);
  const commits = execFileSync('git', ['log', '--format=%H', '--follow', '--', file], { cwd: top, encoding: 'utf8' }).split('\n').filter(Boolean);
  if (commits.length === 0) {
    t.skip(`${file} has no committed history here (a new file, or a shallow clone without it)`);
    return;
  }
  const now = new Set(listed);
  const removed = new Map<string, string>();
  for (const c of commits) {
    let text: string;
    try {
      text = execFileSync('git', ['show', `${c}:${file}`], { cwd: top, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      continue; // renamed from another path in that commit (--follow): its ids are in the later versions too
    }
    const ids = (JSON.parse(text) as { pass: string[] }).pass;
    for (const id of ids) if (!now.has(id) && !(id in retired) && !removed.has(id)) removed.set(id, c.slice(0, 10));
  }
  const lines = [...removed].map(([id, c]) => `${id} (listed in ${c})`);
  assert.deepEqual(lines, [], `ids removed from ${file}; the list may only grow (fix the cache, not the list):\n${lines.join('\n')}`);
  console.log(`${file}: ${listed.length} ids, none removed across ${commits.length} committed versions`);
});

test('a retired id has a reason, is off the list, and is named in docs/cache.md\'s table of failing tests', () => {
  const doc = readFileSync(new URL('../../../docs/cache.md', import.meta.url), 'utf8');
  for (const [id, why] of Object.entries(retired)) {
    assert.ok(why.trim().length > 0, `${id}: a reason`);
    assert.ok(!listed.includes(id), `${id} is retired and listed`);
    assert.ok(doc.split('\n').some((l) => l.startsWith('|') && l.includes(`\`${id}\``)), `${id} is not in docs/cache.md's table of failing tests`);
  }
});

test('the must-pass list names only tests of the suite, sorted, without duplicates', async () => {
  const ids = new Set((await suiteTests()).map((s) => s.id));
  assert.deepEqual(listed.filter((id) => !ids.has(id)), [], 'ids that are not tests of http-cache-tests');
  assert.deepEqual([...listed].sort(), listed, 'the list is kept sorted');
  assert.equal(new Set(listed).size, listed.length, 'no duplicates');
});

test('every stale-if-error and stale-while-revalidate test of the suite is on the must-pass list', async () => {
  const stale = await staleTestIds();
  assert.ok(stale.length >= 2, `found ${stale.join(', ')}`);
  assert.deepEqual(stale.filter((id) => !listed.includes(id)), []);
});

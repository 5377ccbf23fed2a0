import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { accessLine } from '../../src/observe/access-log.js';
import { prng } from '../helpers/seeded.js';
import { anyRecord } from '../helpers/records.js';

const doc = readFileSync(new URL('../../../docs/access-log.md', import.meta.url), 'utf8');

/** Field names in the first column of the page's tables (`a` / `b` rows name several). */
function documented(): Set<string> {
  const names = new Set<string>();
  for (const line of doc.split('\n')) {
    const m = /^\| ([^|]+) \|/.exec(line);
    if (!m) continue;
    for (const f of m[1]!.matchAll(/`([A-Za-z]+)`/g)) names.add(f[1]!);
  }
  return names;
}

test('docs/access-log.md lists every field the access log can write, on both faces', () => {
  const names = documented();
  const seen = new Set<string>();
  const attemptKeys = new Set<string>();
  const rand = prng(20261203);
  for (let i = 0; i < 3000; i++) {
    const parsed = JSON.parse(accessLine(anyRecord(rand))) as Record<string, unknown>;
    for (const k of Object.keys(parsed)) seen.add(k);
    for (const a of (parsed.attempts as Array<Record<string, unknown>> | undefined) ?? []) for (const k of Object.keys(a)) attemptKeys.add(k);
  }
  const missing = [...seen].filter((k) => !names.has(k));
  assert.deepEqual(missing, [], `fields written but not documented: ${missing.join(', ')}`);
  const attemptsRow = doc.split('\n').find((l) => l.startsWith('| `attempts` |'))!;
  const missingAttempt = [...attemptKeys].filter((k) => !attemptsRow.includes(`\`${k}\``));
  assert.deepEqual(missingAttempt, [], `attempt fields not documented: ${missingAttempt.join(', ')}`);
});

test('the example lines on the page are JSON and use only documented fields', () => {
  const names = documented();
  const block = /```json\n([\s\S]*?)```/.exec(doc)![1]!;
  const lines = block.trim().split('\n');
  assert.equal(lines.length, 2);
  for (const l of lines) {
    const parsed = JSON.parse(l) as Record<string, unknown>;
    for (const k of Object.keys(parsed)) assert.ok(names.has(k), `${k} is documented`);
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERROR_TYPES, ERROR_TYPE_NAMES } from '../../src/failure/index.js';

const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');

test('the taxonomy has all 32 RFC 9209 error types', () => {
  assert.equal(ERROR_TYPE_NAMES.length, 32);
});

test('docs/errors.md lists every error type with the status and side the code uses', () => {
  const rows = new Map<string, { status: number; side: string }>();
  for (const line of doc.split('\n')) {
    const m = /^\| `([a-z_]+)`(?: †)? \| (\d+) \| (\w+) \|/.exec(line);
    if (m) rows.set(m[1]!, { status: Number(m[2]), side: m[3]! });
  }
  assert.deepEqual([...rows.keys()].sort(), [...ERROR_TYPE_NAMES].sort());
  for (const [name, info] of Object.entries(ERROR_TYPES)) {
    assert.equal(rows.get(name)?.status, info.status, `${name} status`);
    assert.equal(rows.get(name)?.side, info.source, `${name} side`);
  }
});

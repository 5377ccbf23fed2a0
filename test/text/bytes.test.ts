import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBytes } from '../../src/text/index.js';
import { seededRun } from '../helpers/seeded.js';

// The two formats as the plan refusal message (prose) and `gatewise usage` (column) wrote them
// before they shared this function: the same strings, value for value.
const CASES: ReadonlyArray<[number, string, string]> = [
  [0, '0 B', '0 B'],
  [1, '1 B', '1 B'],
  [1023, '1023 B', '1023 B'],
  [1024, '1 KiB', '1.0 KiB'],
  [1536, '1.5 KiB', '1.5 KiB'],
  [1048575, '1024 KiB', '1024.0 KiB'],
  [1048576, '1 MiB', '1.0 MiB'],
  [5 * 2 ** 30, '5 GiB', '5.0 GiB'],
  [2 ** 40, '1 TiB', '1.0 TiB'],
  [3 * 2 ** 50, '3072 TiB', '3072.0 TiB'],
];

test('formatBytes writes prose and column byte counts as before', () => {
  for (const [n, prose, column] of CASES) {
    assert.equal(formatBytes(n), prose, `prose ${n}`);
    assert.equal(formatBytes(n, 'prose'), prose, `prose ${n}`);
    assert.equal(formatBytes(n, 'column'), column, `column ${n}`);
  }
});

test('formatBytes picks the largest unit under 1024 and rounds to one decimal (seeded, any byte count)', () =>
  seededRun('formatBytes', (rand) => {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    for (let k = 0; k < 2000; k++) {
      const n = Math.floor(2 ** (rand() * 52));
      for (const style of ['prose', 'column'] as const) {
        const out = formatBytes(n, style);
        const m = /^(\d+(?:\.\d)?) (B|KiB|MiB|GiB|TiB)$/.exec(out);
        assert.ok(m, `${n} ${style}: "${out}"`);
        const i = units.indexOf(m[2]!);
        const exact = n / 1024 ** i;
        assert.ok(Math.abs(Number(m[1]) - exact) <= 0.05 + 1e-9, `${n} ${style}: "${out}" is not ${exact}`);
        assert.ok(i === units.length - 1 || exact < 1024, `${n} ${style}: a larger unit fits`);
        assert.ok(i === 0 || n >= 1024 ** i, `${n} ${style}: the unit is too large`);
        if (i === 0) assert.equal(out, `${n} B`, 'bytes as they are');
        else if (style === 'column') assert.match(out, /\.\d /, 'a column keeps its decimal');
      }
    }
  }));

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, test } from 'node:test';
import { DEFAULT_HTTP_PORTS, forwardSchema } from '../../src/config/forward.js';

/** The ports 1–65535 a list of numbers and "a-b" ranges holds. */
function portsOf(list: ReadonlyArray<number | string>): Set<number> {
  const out = new Set<number>();
  for (const p of list) {
    if (typeof p === 'number') out.add(p);
    else {
      const [a, b] = p.split('-').map(Number) as [number, number];
      for (let i = a; i <= (b ?? a); i++) out.add(i);
    }
  }
  return out;
}

/** The ports a prose list names after `after` ("1719, 1720, 6665-6669 …"; en dashes too), up to `until`. */
function portsNamed(text: string, after: string, until: string): Set<number> {
  const start = text.indexOf(after);
  assert.ok(start >= 0, `"${after}" not found`);
  const end = text.indexOf(until, start + after.length);
  assert.ok(end > start, `"${until}" not found after "${after}"`);
  const spans = text.slice(start + after.length, end).match(/\d+(?:[-–]\d+)?/g) ?? [];
  return portsOf(spans.map((s) => (s.includes('-') || s.includes('–') ? s.replace('–', '-') : Number(s))));
}

/** What the default leaves out of 1025–65535. */
function highExcluded(): Set<number> {
  const allowed = portsOf(DEFAULT_HTTP_PORTS);
  const out = new Set<number>();
  for (let p = 1025; p <= 65535; p++) if (!allowed.has(p)) out.add(p);
  return out;
}

describe('forward.rules.httpPorts: the default and what the docs say of it agree', () => {
  test('below 1025 the default has only 80 and 443', () => {
    assert.deepEqual([...portsOf(DEFAULT_HTTP_PORTS)].filter((p) => p < 1025), [80, 443]);
  });

  test("the schema's description (the config reference) names exactly the high ports the default leaves out", () => {
    const description = forwardSchema.shape.rules.unwrap().shape.httpPorts.description ?? '';
    assert.deepEqual([...portsNamed(description, 'could speak to:', 'see docs/security.md')].filter((p) => p >= 1025).sort((a, b) => a - b), [...highExcluded()]);
  });

  test('docs/security.md names exactly the high ports the default leaves out', () => {
    const doc = fs.readFileSync(new URL('../../../docs/security.md', import.meta.url), 'utf8');
    assert.deepEqual([...portsNamed(doc, '1025–65535 less', ')')].sort((a, b) => a - b), [...highExcluded()]);
  });
});

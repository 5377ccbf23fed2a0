import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

const ROOT = new URL('../../../', import.meta.url);

/** The lowest major version a `engines.node` range accepts (">=22", "^22.13", ">= 18 || >=20"): the smallest. */
function lowestMajor(range: string): number {
  const majors = [...range.matchAll(/(\d+)(?:\.\d+)*/g)].map((m) => Number(m[1]));
  return majors.length ? Math.min(...majors) : 0;
}

test('no package in package-lock.json (dev dependencies included) wants a newer Node than package.json engines: npm install warns about none', () => {
  const pkg = JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8')) as { engines: { node: string } };
  const ours = lowestMajor(pkg.engines.node);
  assert.equal(ours, 20);
  const lock = JSON.parse(readFileSync(new URL('package-lock.json', ROOT), 'utf8')) as { packages: Record<string, { engines?: { node?: string } | string[] }> };
  const newer: string[] = [];
  for (const [path, p] of Object.entries(lock.packages)) {
    const node = p.engines && !Array.isArray(p.engines) ? p.engines.node : undefined;
    if (node && lowestMajor(node) > ours) newer.push(`${path} (node ${node})`);
  }
  assert.deepEqual(newer, []);
});

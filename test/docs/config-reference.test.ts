import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { z } from 'zod';
import { REFERENCE_FILE, configKeys, configReference } from '../../src/config/reference.js';

test('docs/config-reference.md is the page the schema generates (node dist/src/config/reference.js --write)', () => {
  const page = readFileSync(REFERENCE_FILE, 'utf8');
  // A line-by-line diff says which key differs, not only that something does.
  const want = configReference().split('\n');
  const have = page.split('\n');
  const differ = want.map((l, i) => (l === have[i] ? undefined : `line ${i + 1}: schema says ${JSON.stringify(l)}, page says ${JSON.stringify(have[i])}`)).filter(Boolean);
  assert.deepEqual(differ.slice(0, 5), [], 'docs/config-reference.md is stale: run node dist/src/config/reference.js --write');
  assert.equal(have.length, want.length);
});

test('every key of the schema has a description, and the page lists every key', () => {
  const keys = configKeys();
  assert.ok(keys.length > 150, `${keys.length} keys`);
  assert.deepEqual(keys.filter((k) => !k.description).map((k) => k.path), []);
  const page = readFileSync(REFERENCE_FILE, 'utf8');
  for (const k of ['listeners[].port', 'clusters.<name>.retryBudget.ratio', 'routes[].retry.perTryTimeout', 'forward.auth.usersFile', 'forward.egress.pools.<name>.strategy', 'forward.plans.<name>.bytesPerDay.up']) {
    assert.ok(keys.some((r) => r.path === k), `${k} in the keys`);
    assert.ok(page.includes(`| \`${k}\` |`), `${k} on the page`);
  }
});

test('the generator reads types, defaults and descriptions from the zod schema itself', () => {
  const s = z.object({
    a: z.number().int().min(1).max(9).default(3).describe('An a.'),
    b: z.object({ c: z.enum(['x', 'y']).optional().describe('A c.') }).default({}).describe('A b.'),
    d: z.array(z.string()).describe('Ds.'),
  });
  assert.deepEqual(configKeys(s), [
    { path: 'a', type: 'integer 1–9', default: '`3`', description: 'An a.' },
    { path: 'b', type: 'object', default: 'see the keys below', description: 'A b.' },
    { path: 'b.c', type: '"x" \\| "y"', default: '—', description: 'A c.' },
    { path: 'd', type: 'list of string', default: '**required**', description: 'Ds.' },
  ]);
});

test('docs/forward-proxy.md refers to rules.*, timeouts.*, limits.* by a link to their reference, not "as before" with nothing before', () => {
  const doc = readFileSync(new URL('../../../docs/forward-proxy.md', import.meta.url), 'utf8');
  assert.doesNotMatch(doc, /as before/);
  assert.match(doc, /`rules\.\*`, `timeouts\.\*`, `limits\.\*` \|[^\n]*\[config-reference\.md\]\(config-reference\.md#forward\)/);
  assert.match(readFileSync(REFERENCE_FILE, 'utf8'), /^## forward$/m);
  for (const k of ['forward.rules.allowPrivate', 'forward.rules.connectPorts', 'forward.timeouts.connect', 'forward.limits.maxConnectionsPerUser']) {
    assert.ok(configKeys().some((r) => r.path === k), k);
  }
});

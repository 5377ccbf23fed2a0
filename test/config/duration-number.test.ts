import assert from 'node:assert/strict';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { ConfigError, parseConfigText } from '../../src/config/load.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * Finding (newcomer walk-through): README says "durations are strings" and "a number needs its
 * unit", but a duration key given a YAML number (`timeouts: { connect: 5 }`) was refused in
 * zod's words, `Invalid input: expected string, received number`, which reads as "quote it";
 * quoted (`"5"`), it is refused again as not a duration. Now a number at a duration key is said
 * as a duration without its unit, with the spellings that would be right, at its line.
 *
 * Duration keys of every schema file that has one (schema, forward, tls, shutdown, auth
 * lockout), seeded numbers; a string that is no duration keeps its words.
 */

interface Case { path: string; config: (v: unknown) => Record<string, unknown> }

const base = () => ({ listeners: [{ port: 0 }], clusters: { app: { endpoints: ['http://127.0.0.1:1'] } }, routes: [{ cluster: 'app' } as Record<string, unknown>] });

const CASES: Case[] = [
  { path: 'clusters.app.timeouts.connect', config: (v) => ({ ...base(), clusters: { app: { endpoints: ['http://127.0.0.1:1'], timeouts: { connect: v } } } }) },
  { path: 'listeners[0].keepAliveTimeout', config: (v) => ({ ...base(), listeners: [{ port: 0, keepAliveTimeout: v }] }) },
  { path: 'routes[0].retry.perTryTimeout', config: (v) => ({ ...base(), routes: [{ cluster: 'app', retry: { perTryTimeout: v } }] }) },
  { path: 'shutdown.drainTimeout', config: (v) => ({ ...base(), shutdown: { drainTimeout: v } }) },
  { path: 'forward.timeouts.connect', config: (v) => ({ forward: { listeners: [{ port: 0 }], auth: { required: false }, timeouts: { connect: v } } }) },
  { path: 'admin.lockout.window', config: (v) => ({ ...base(), admin: { port: 0, lockout: { window: v } } }) },
  { path: 'listeners[0].http2.resetWindow', config: (v) => ({ ...base(), listeners: [{ port: 0, http2: { h2c: true, resetWindow: v } }] }) },
];

function problemsOf(config: Record<string, unknown>): ConfigError['problems'] {
  try {
    parseConfigText(stringify(config), 'gw.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

test('a bare number at a duration key is said as a duration without its unit, at its key and line (seeded numbers)', async () => {
  const rand = seededRandom();
  await withSeed(rand, async () => {
    for (const c of CASES) {
      const n = rand.pick([0, 1, 5, 30, 250, 1 + rand.int(100000), Number((rand.next() * 10).toFixed(1))]);
      const problems = problemsOf(c.config(n));
      const at = problems.filter((p) => p.path === c.path);
      assert.equal(at.length, 1, `${c.path} = ${n}: ${JSON.stringify(problems)}`);
      assert.equal(at[0]!.message, `expected a duration with its unit, such as "${n}s" or "${n}ms", not the bare number ${n}`, c.path);
      assert.ok(at[0]!.line !== undefined, `${c.path}: no line`);
      // Quoted with its unit, the same number is accepted there.
      assert.deepEqual(problemsOf(c.config(`${n}s`)).filter((p) => p.path === c.path), [], `${c.path} = "${n}s"`);
    }
  });
});

test('a string that is no duration keeps its words; another type keeps zod\'s', () => {
  const [c] = CASES;
  assert.match(problemsOf(c!.config('5'))[0]!.message, /^expected a duration such as/);
  assert.match(problemsOf(c!.config(true))[0]!.message, /expected string, received boolean/);
});

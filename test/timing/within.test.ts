import { test } from 'node:test';
import assert from 'node:assert/strict';
import { within } from '../../src/timing/within.js';
import { seededRandom } from '../helpers/seeded.js';

/** `within`: a promise bounded by a deadline on the process list (the hook timeout of both faces). */

test('settled in time: its own value or rejection, and the deadline is taken out', async () => {
  assert.equal(await within(Promise.resolve(7), 1000, () => -1), 7);
  await assert.rejects(within(Promise.reject(new Error('boom')), 1000, () => -1), /boom/);
});

test('never settling: the timeout value, after the bound and not long before it; a later settlement changes nothing (seeded bounds)', async () => {
  // The deadline list's timer is unref'd (it never holds a process open); in a gateway the request's socket does.
  const alive = setInterval(() => {}, 1000);
  const rand = seededRandom();
  try {
    for (let i = 0; i < 4; i++) {
      const ms = 20 + rand.int(200);
      const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}): bound ${ms} ms`;
      let settle: (v: number) => void = () => {};
      const p = new Promise<number>((r) => (settle = r));
      const t0 = performance.now();
      const v = await within(p, ms, () => -1);
      const took = performance.now() - t0;
      assert.equal(v, -1, ctx);
      assert.ok(took >= ms - 1, `${ctx}: came after ${took.toFixed(1)} ms`);
      settle(5); // ignored: the bounded promise has settled already
    }
  } finally {
    clearInterval(alive);
  }
});

test('a bound of 0 (or none) is no bound: the promise itself', () => {
  const p = new Promise<number>(() => {});
  assert.equal(within(p, 0, () => -1), p);
});

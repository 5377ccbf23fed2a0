import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RetryBudget } from '../../src/upstream/retry-budget.js';
import { between, seededRun } from '../helpers/seeded.js';

const T0 = 1_700_000_000_000;

function retriesAllowed(b: RetryBudget, now: number): number {
  let n = 0;
  while (n < 10_000 && b.tryRetry(now)) n++;
  return n;
}

test('retries are capped at ratio × requests; the floor adds none in a second that already retried that much', () => {
  const b = new RetryBudget({ ratio: 0.2, minPerSecond: 1, windowMs: 10_000 });
  for (let i = 0; i < 1000; i++) b.onRequest(T0 + i * 5);
  assert.equal(retriesAllowed(b, T0 + 5000), 200);
  assert.equal(b.canRetry(T0 + 5000), false);
  assert.equal(retriesAllowed(b, T0 + 6000), 1, 'the next second: its floor');
});

test('a quiet cluster can still retry: the floor, minPerSecond in each second; fractions of a retry do not count', () => {
  const b = new RetryBudget({ ratio: 0.2, minPerSecond: 3, windowMs: 10_000 });
  b.onRequest(T0);
  assert.equal(retriesAllowed(b, T0), 3);
  assert.equal(retriesAllowed(b, T0 + 999), 0);
  assert.equal(retriesAllowed(b, T0 + 1000), 3);
  const none = new RetryBudget({ ratio: 0.2, minPerSecond: 0, windowMs: 10_000 });
  for (let i = 0; i < 4; i++) none.onRequest(T0);
  assert.equal(none.canRetry(T0), false, '0.8 of a retry');
  none.onRequest(T0);
  assert.equal(retriesAllowed(none, T0), 1);
});

test('the floor is a rate, not a reserve: a burst spends at most ratio × requests or minPerSecond in its second, whichever is more (seeded bursts)', async () => {
  await seededRun('retry budget burst', (rand) => {
    for (let round = 0; round < 200; round++) {
      const ratio = between(rand, 0, 50) / 100;
      const floor = between(rand, 0, 5);
      const n = between(rand, 1, 300);
      const second = T0 + between(rand, 0, 100) * 1000;
      const b = new RetryBudget({ ratio, minPerSecond: floor, windowMs: between(rand, 1, 10) * 1000 });
      // Each request fails and asks for two retries at once, inside one second.
      let retries = 0;
      for (let i = 0; i < n; i++) {
        const now = second + Math.floor((i * 1000) / n);
        b.onRequest(now);
        for (let k = 0; k < 2; k++) if (b.tryRetry(now)) retries++;
      }
      const what = `round ${round}: ${n} requests, ratio ${ratio}, minPerSecond ${floor}: ${retries} retries`;
      assert.ok(retries <= Math.max(Math.floor(ratio * n + 1e-9), floor), what);
      assert.ok(retries >= Math.min(2 * n, floor), what);
    }
  });
});

test('the window slides: old requests and old retries stop counting', () => {
  const b = new RetryBudget({ ratio: 0.5, minPerSecond: 0, windowMs: 3000 });
  for (let i = 0; i < 100; i++) b.onRequest(T0);
  assert.equal(retriesAllowed(b, T0 + 500), 50);
  assert.equal(b.canRetry(T0 + 2999), false);
  // At T0 + 3 s the bucket of T0 leaves the 3-bucket ring: no requests, no retries left in the window.
  assert.equal(b.canRetry(T0 + 3000), false, 'no requests in the window and no floor');
  b.onRequest(T0 + 3000);
  b.onRequest(T0 + 3000);
  assert.equal(retriesAllowed(b, T0 + 3000), 1);
  // Far in the future: everything expired at once (the ring is cleared, not walked second by second).
  for (let i = 0; i < 10; i++) b.onRequest(T0 + 86_400_000);
  assert.equal(b.remaining(T0 + 86_400_000), 5);
});

test('retries spent in earlier seconds still count until they leave the window', () => {
  const b = new RetryBudget({ ratio: 0.1, minPerSecond: 0, windowMs: 10_000 });
  for (let s = 0; s < 10; s++) for (let i = 0; i < 10; i++) b.onRequest(T0 + s * 1000);
  assert.equal(retriesAllowed(b, T0 + 9000), 10);
  for (let i = 0; i < 10; i++) b.onRequest(T0 + 10_000); // T0's bucket leaves: 100 requests, 10 retries
  assert.equal(b.canRetry(T0 + 10_000), false);
  assert.equal(retriesAllowed(b, T0 + 19_500), 1, 'second 10 only: 10 requests, the retries left with second 9');
});

test('a clock step backwards counts into the newest second', () => {
  const b = new RetryBudget({ ratio: 1, minPerSecond: 0, windowMs: 2000 });
  b.onRequest(T0 + 5000);
  b.onRequest(T0); // backwards
  assert.equal(b.remaining(T0 + 5000), 2);
});

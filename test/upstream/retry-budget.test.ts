import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RetryBudget } from '../../src/upstream/retry-budget.js';

const T0 = 1_700_000_000_000;

function retriesAllowed(b: RetryBudget, now: number): number {
  let n = 0;
  while (n < 10_000 && b.tryRetry(now)) n++;
  return n;
}

test('retries are capped at ratio × requests plus the floor', () => {
  const b = new RetryBudget({ ratio: 0.2, minPerSecond: 1, windowMs: 10_000 });
  for (let i = 0; i < 1000; i++) b.onRequest(T0 + i * 5);
  assert.equal(retriesAllowed(b, T0 + 5000), 200 + 10);
  assert.equal(b.canRetry(T0 + 5000), false);
});

test('a quiet cluster can still retry: the floor; fractions of a retry do not count', () => {
  const b = new RetryBudget({ ratio: 0.2, minPerSecond: 3, windowMs: 10_000 });
  b.onRequest(T0);
  assert.equal(retriesAllowed(b, T0), 30);
  const none = new RetryBudget({ ratio: 0.2, minPerSecond: 0, windowMs: 10_000 });
  for (let i = 0; i < 4; i++) none.onRequest(T0);
  assert.equal(none.canRetry(T0), false, '0.8 of a retry');
  none.onRequest(T0);
  assert.equal(retriesAllowed(none, T0), 1);
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

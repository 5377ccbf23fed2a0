import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffWait } from '../../src/tls/acme/index.js';
import { seededRun } from '../helpers/seeded.js';

/**
 * The ACME back-off (src/tls/acme/manager.ts `backoffWait`) over a seeded family of failure
 * counts, initial waits, maxima and jitter: the wait doubles per failure from `initial`, is
 * capped at `max`, carries at most 10 % jitter, never shrinks as failures grow, and stays a
 * finite number for any count (a node failing for months).
 */
test('back-off: doubling from initial, capped at max, jitter within 10 %, monotone in the failure count (seeded family)', async () => {
  await seededRun('acme backoff family', (rand) => {
    for (let i = 0; i < 500; i++) {
      const initial = 1 + Math.floor(rand() * 120_000);
      const max = initial + Math.floor(rand() * 86_400_000);
      const jitter = rand();
      // Failure counts across the range: the first few, the region where the cap is reached, and very long runs.
      const counts = [1 + Math.floor(rand() * 5), 1 + Math.floor(rand() * 40), 1 + Math.floor(rand() * 100_000)];
      for (const n of counts) {
        const w = backoffWait(n, initial, max, jitter);
        const base = Math.min(initial * 2 ** Math.min(n - 1, 60), max);
        const ctx = `n=${n} initial=${initial} max=${max} jitter=${jitter}: ${w}`;
        assert.ok(Number.isFinite(w), ctx);
        assert.ok(w >= base - 0.5 && w <= base * 1.1 + 0.5, `within [base, base × 1.1]: ${ctx}`);
        assert.ok(w >= initial - 0.5 && w <= max * 1.1 + 0.5, `within [initial, max × 1.1]: ${ctx}`);
        // One more failure never waits less (same jitter).
        assert.ok(backoffWait(n + 1, initial, max, jitter) >= w, `monotone: ${ctx}`);
        // Without jitter: exactly the doubled wait, capped.
        assert.equal(backoffWait(n, initial, max, 0), Math.round(base), ctx);
      }
      // Once the cap is reached it stays reached.
      const capAt = Math.ceil(Math.log2(max / initial)) + 1;
      assert.equal(backoffWait(capAt, initial, max, 0), max, `cap reached at ${capAt}: initial=${initial} max=${max}`);
      assert.equal(backoffWait(capAt + 1 + Math.floor(rand() * 1000), initial, max, 0), max);
    }
  });
});

test('back-off: the documented sequence for 1m / 6h (1m, 2m, 4m … 6h)', () => {
  const seq = Array.from({ length: 12 }, (_, i) => backoffWait(i + 1, 60_000, 6 * 3_600_000, 0) / 60_000);
  assert.deepEqual(seq, [1, 2, 4, 8, 16, 32, 64, 128, 256, 360, 360, 360]);
  assert.equal(backoffWait(0, 60_000, 6 * 3_600_000, 0), 60_000, 'a count of 0 (never failed) waits the initial time');
});

import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { describe, test } from 'node:test';
import { request } from 'undici';
import type { AttemptRecord } from '../../src/gateway/events.js';
import { startTestGateway } from '../helpers/gateway.js';
import { onHeads, startRawServer } from '../helpers/scripted-upstream.js';
import { between, seededRun } from '../helpers/seeded.js';
import { assertFiredOnTime, GUARD_MS, LATE_MS } from '../helpers/time-bounds.js';

/**
 * The route's `deadline` (docs/resilience.md): no retry starts after it, and no retry waits
 * past it. Found by the resilience review (F5, F8): a 503 with `Retry-After: 1` under a 195 ms
 * deadline was retried at 1059 ms; with `perTryTimeout` a retry ran its whole per-try
 * timeout, 150-300 ms past the deadline. A retry whose wait would end past the deadline is
 * not made: the last answer (or failure) is what the client gets, when the decision is made.
 */

/**
 * Times here are bounds on timers the test measures (time-bounds.ts): the client's from
 * before its request, the gateway's record's from the exchange's start, both before any timer
 * of the exchange could be armed. What the gateway must not do (wait out a Retry-After, run a
 * whole perTryTimeout) would end more than LATE_MS past the deadline, so a loaded machine's
 * delays cannot be taken for it (the bounds were 100 and 300 ms, the Retry-After 1 s and the
 * per-try timeout 200 ms past the deadline: a late scheduler failed them, and a gateway that
 * waited 150 ms too long passed).
 */
/** A Retry-After (s) that ends far past every deadline here, more than LATE_MS past it. */
const LONG_RETRY_AFTER_S = 30;

async function timed(url: string) {
  const t0 = performance.now();
  const res = await request(url, { signal: AbortSignal.timeout(GUARD_MS + LONG_RETRY_AFTER_S * 1000) });
  await res.body.text();
  return { status: res.statusCode, ms: performance.now() - t0, rid: String(res.headers['x-request-id']), ps: String(res.headers['proxy-status'] ?? ''), retryAfter: res.headers['retry-after'] };
}

/** Every request head answered 503 with the next Retry-After of `plan` (the last one repeats). */
function unavailable(plan: { afters: number[]; served: number }): (s: Socket) => void {
  return (s) => onHeads(s, () => s.write(`HTTP/1.1 503 Service Unavailable\r\nretry-after: ${plan.afters[Math.min(plan.served++, plan.afters.length - 1)]}\r\ncontent-length: 0\r\n\r\n`));
}

describe('the route deadline bounds the wait before a retry', () => {
  test('a 503 whose Retry-After would end past the deadline is passed on at once; one that fits is waited for (seeded deadlines)', { timeout: 60_000 }, async () => {
    await seededRun('deadline vs Retry-After', async (rand) => {
      const plan = { afters: [LONG_RETRY_AFTER_S], served: 0 };
      const a = await startRawServer(unavailable(plan));
      const b = await startRawServer(unavailable(plan));
      try {
        for (let round = 0; round < 4; round++) {
          // Three deadlines shorter than the first Retry-After; one that leaves room for one
          // retry after a Retry-After of 1 s (with LATE_MS to spare), but not for the second
          // answer's long one.
          const fits = round === 3;
          const deadline = fits ? between(rand, 1000 + LATE_MS + 500, 1000 + LATE_MS + 1500) : between(rand, 100, 600);
          plan.afters = fits ? [1, LONG_RETRY_AFTER_S] : [LONG_RETRY_AFTER_S];
          plan.served = 0;
          const gw = await startTestGateway({
            clusters: { c: { endpoints: [a.url, b.url], outlierDetection: { enabled: false } } },
            routes: [{ cluster: 'c', retry: { tries: 3, deadline: `${deadline}ms`, retryAfterMax: `${2 * LONG_RETRY_AFTER_S}s` } }],
          });
          try {
            const r = await timed(`${gw.url}/r${round}`);
            const what = `round ${round}, deadline ${deadline} ms: answered ${r.status} after ${Math.round(r.ms)} ms`;
            assert.equal(r.status, 503, what);
            assert.equal(r.retryAfter, String(LONG_RETRY_AFTER_S), `the upstream's own answer is passed on (${what})`);
            // Waiting out a Retry-After of 30 s would answer after it, more than LATE_MS past the deadline.
            assert.ok(r.ms <= deadline + LATE_MS, `no wait past the deadline (${what})`);
            const attempts = (await gw.logFor(r.rid)).attempts as unknown as AttemptRecord[];
            const starts = attempts.map((x) => x.startMs);
            assert.ok(attempts.at(-1)!.endMs! <= deadline + LATE_MS, `the gateway answered by the deadline (${what}; attempts ${JSON.stringify(attempts)})`);
            for (const s of starts.slice(1)) assert.ok(s < deadline, `a retry started at ${s} ms (${what}; starts ${starts})`);
            if (fits) {
              assert.equal(attempts.length, 2, `one retry after the Retry-After, none after it (${what}; starts ${starts})`);
              assert.ok(starts[1]! >= 1000, `the retry honoured Retry-After (${what}; starts ${starts})`);
            } else {
              assert.equal(attempts.length, 1, `no retry waited for (${what}; starts ${starts})`);
            }
          } finally {
            await gw.close();
          }
        }
      } finally {
        await a.close();
        await b.close();
      }
    });
  });

  test('perTryTimeout is cut to what is left of the deadline for a retry (seeded perTryTimeout and deadline)', { timeout: 120_000 }, async () => {
    await seededRun('deadline vs perTryTimeout', async (rand) => {
      // Two endpoints: a round's first request head is answered 503 at once (retried on the
      // other endpoint at once), every later one is taken and never answered.
      let heads = 0;
      const firstUnavailable = (s: Socket): void =>
        onHeads(s, () => {
          if (heads++ === 0) s.write('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n');
        });
      const a = await startRawServer(firstUnavailable);
      const b = await startRawServer(firstUnavailable);
      try {
        for (let round = 0; round < 3; round++) {
          heads = 0;
          // The retry starts at once, before the deadline; its own per-try timeout would end
          // it more than LATE_MS past the deadline (it was 200-300 ms past, after a first try
          // that ran its own per-try timeout: a loaded machine's delays were of that size).
          const deadline = between(rand, 300, 900);
          const perTry = between(rand, deadline + LATE_MS + 1000, deadline + LATE_MS + 3000);
          const gw = await startTestGateway({
            clusters: { c: { endpoints: [a.url, b.url], outlierDetection: { enabled: false }, timeouts: { response: '120s' } } },
            routes: [{ cluster: 'c', retry: { tries: 3, perTryTimeout: `${perTry}ms`, deadline: `${deadline}ms` } }],
          });
          try {
            const r = await timed(`${gw.url}/t${round}`);
            const what = `round ${round}, perTryTimeout ${perTry} ms, deadline ${deadline} ms: answered ${r.status} after ${Math.round(r.ms)} ms`;
            assert.equal(r.status, 504, what);
            assert.match(r.ps, /error=http_response_timeout/, what);
            const attempts = (await gw.logFor(r.rid)).attempts as unknown as AttemptRecord[];
            assert.equal(attempts.length, 2, `${what}; attempts ${JSON.stringify(attempts)}`);
            assert.ok(attempts[1]!.startMs < deadline, `the retry started before the deadline (${what}; attempts ${JSON.stringify(attempts)})`);
            // The retry's timeout is the deadline: it ends at the deadline, counted from the exchange's start.
            assertFiredOnTime(attempts[1]!.endMs!, deadline, `the retry's timeout, cut to the deadline (${what}; attempts ${JSON.stringify(attempts)})`);
            assertFiredOnTime(r.ms, deadline, `the client's answer (${what})`);
          } finally {
            await gw.close();
          }
        }
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
});

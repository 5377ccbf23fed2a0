import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { describe, test } from 'node:test';
import { request } from 'undici';
import type { AttemptRecord } from '../../src/gateway/events.js';
import { startTestGateway } from '../helpers/gateway.js';
import { onHeads, startRawServer } from '../helpers/scripted-upstream.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * The route's `deadline` (docs/resilience.md): no retry starts after it, and no retry waits
 * past it. Found by the resilience review (F5, F8): a 503 with `Retry-After: 1` under a 195 ms
 * deadline was retried at 1059 ms; with `perTryTimeout` a retry ran its whole per-try
 * timeout, 150-300 ms past the deadline. A retry whose wait would end past the deadline is
 * not made: the last answer (or failure) is what the client gets, when the decision is made.
 */

/** Loopback, the deadline list's 10 ms resolution and a busy test machine (times taken by the gateway's record). */
const SLACK_MS = 100;
/** The same for times the client takes (its own connect included). */
const CLIENT_SLACK_MS = 300;

async function timed(url: string, ms: number) {
  const t0 = performance.now();
  const res = await request(url, { signal: AbortSignal.timeout(ms) });
  await res.body.text();
  return { status: res.statusCode, ms: performance.now() - t0, rid: String(res.headers['x-request-id']), ps: String(res.headers['proxy-status'] ?? ''), retryAfter: res.headers['retry-after'] };
}

const unavailable = (s: Socket): void => onHeads(s, () => s.write('HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n'));

describe('the route deadline bounds the wait before a retry', () => {
  test('a 503 whose Retry-After would end past the deadline is passed on at once; one that fits is waited for (seeded deadlines)', { timeout: 60_000 }, async () => {
    await seededRun('deadline vs Retry-After', async (rand) => {
      const a = await startRawServer(unavailable);
      const b = await startRawServer(unavailable);
      try {
        for (let round = 0; round < 4; round++) {
          // Three deadlines shorter than the Retry-After, one that leaves room for one retry after it.
          const fits = round === 3;
          const deadline = fits ? between(rand, 1300, 1800) : between(rand, 100, 600);
          const gw = await startTestGateway({
            clusters: { c: { endpoints: [a.url, b.url], outlierDetection: { enabled: false } } },
            routes: [{ cluster: 'c', retry: { tries: 3, deadline: `${deadline}ms`, retryAfterMax: '1s' } }],
          });
          try {
            const r = await timed(`${gw.url}/r${round}`, 5000);
            const what = `round ${round}, deadline ${deadline} ms: answered ${r.status} after ${Math.round(r.ms)} ms`;
            assert.equal(r.status, 503, what);
            assert.equal(r.retryAfter, '1', `the upstream's own answer is passed on (${what})`);
            assert.ok(r.ms < deadline + CLIENT_SLACK_MS, `no wait past the deadline (${what})`);
            const attempts = (await gw.logFor(r.rid)).attempts as unknown as AttemptRecord[];
            const starts = attempts.map((x) => x.startMs);
            assert.ok(attempts.at(-1)!.endMs! < deadline + SLACK_MS, `the gateway answered by the deadline (${what}; attempts ${JSON.stringify(attempts)})`);
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

  test('perTryTimeout is cut to what is left of the deadline for a retry (seeded perTryTimeout and deadline)', { timeout: 60_000 }, async () => {
    await seededRun('deadline vs perTryTimeout', async (rand) => {
      // Two endpoints that take the connection and never answer.
      const a = await startRawServer(() => {});
      const b = await startRawServer(() => {});
      try {
        for (let round = 0; round < 3; round++) {
          const perTry = between(rand, 400, 600);
          // Between 1.2 and 1.5 per-try timeouts: the retry starts before the deadline and would end 0.5-0.8 of a per-try timeout (200 ms or more) after it.
          const deadline = Math.round(perTry * (1.2 + rand() * 0.3));
          const gw = await startTestGateway({
            clusters: { c: { endpoints: [a.url, b.url], outlierDetection: { enabled: false }, timeouts: { response: '5s' } } },
            routes: [{ cluster: 'c', retry: { tries: 3, perTryTimeout: `${perTry}ms`, deadline: `${deadline}ms` } }],
          });
          try {
            const r = await timed(`${gw.url}/t${round}`, 5000);
            const what = `round ${round}, perTryTimeout ${perTry} ms, deadline ${deadline} ms: answered ${r.status} after ${Math.round(r.ms)} ms`;
            assert.equal(r.status, 504, what);
            assert.match(r.ps, /error=http_response_timeout/, what);
            const attempts = (await gw.logFor(r.rid)).attempts as unknown as AttemptRecord[];
            assert.equal(attempts.length, 2, `${what}; attempts ${JSON.stringify(attempts)}`);
            assert.ok(attempts[1]!.endMs! < deadline + SLACK_MS, `the retry waited past the deadline (${what}; attempts ${JSON.stringify(attempts)})`);
            assert.ok(r.ms < deadline + CLIENT_SLACK_MS, what);
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

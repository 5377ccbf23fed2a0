import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { startTestGateway } from '../helpers/gateway.js';
import { startRawUpstream } from '../helpers/scripted-upstream.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * The retry budget (docs/resilience.md): 20 % of the requests over the window, and at least
 * `minPerSecond` retries a second so a quiet cluster can still retry. Found by the resilience
 * review (F9): the minimum was a reserve of minPerSecond × window seconds spendable at once, so
 * a burst of 20 requests against a total outage sent 34 retries (2.7 times the load) in one
 * second. The minimum is a rate: at most `minPerSecond` retries beyond the ratio in any second.
 */

const RATIO = 0.2;
const MIN_PER_SECOND = 3;

describe('the retry budget under a burst against a total outage', () => {
  test('a burst of N requests sends at most 20 % of N plus minPerSecond a second in retries, and at least minPerSecond (seeded burst sizes)', { timeout: 60_000 }, async () => {
    await seededRun('retry budget burst', async (rand) => {
      for (let round = 0; round < 4; round++) {
        const n = round === 0 ? between(rand, 1, 3) : between(rand, 10, 80);
        const answer = 'HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n';
        const a = await startRawUpstream(() => answer);
        const b = await startRawUpstream(() => answer);
        const gw = await startTestGateway({
          clusters: { c: { endpoints: [a.url, b.url], outlierDetection: { enabled: false }, retryBudget: { ratio: RATIO, minPerSecond: MIN_PER_SECOND, window: '10s' } } },
          routes: [{ cluster: 'c', retry: { tries: 3, backoff: { base: '1ms', max: '2ms' } } }],
        });
        const client = new Agent({ connections: 100 });
        try {
          const from = Date.now();
          const statuses = await Promise.all(
            Array.from({ length: n }, async (_, i) => {
              const res = await request(`${gw.url}/b${round}/${i}`, { dispatcher: client, signal: AbortSignal.timeout(10_000) });
              await res.body.dump();
              return res.statusCode;
            }),
          );
          const seconds = Math.floor(Date.now() / 1000) - Math.floor(from / 1000) + 1;
          assert.deepEqual(new Set(statuses), new Set([503]));
          const retries = a.received.length + b.received.length - n;
          const most = Math.floor(RATIO * n) + MIN_PER_SECOND * seconds;
          const least = Math.min(2 * n, MIN_PER_SECOND);
          const what = `burst of ${n} over ${seconds} s: ${retries} retries (at most ${most}, at least ${least})`;
          assert.ok(retries <= most, what);
          assert.ok(retries >= least, what);
        } finally {
          await client.close();
          await gw.close();
          await a.close();
          await b.close();
        }
      }
    });
  });
});

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import type { PieceAnswer, PieceRequest } from '../helpers/piecewise-upstream.js';
import { withRaceRig, type RaceTry } from '../helpers/race-rig.js';
import { between, seededRun } from '../helpers/seeded.js';
import { GUARD_MS } from '../helpers/time-bounds.js';
import { until } from '../helpers/until.js';
import { FREE_RACE_RETRIES } from '../../src/gateway/retry-policy.js';

/**
 * At `maxConnections` a request waits behind the one in flight on a busy connection, and is
 * sent as the next request on that connection's socket: a reused connection, whatever it was
 * when the request was queued (still connecting, resilience review F7: it was recorded `new`,
 * so when the upstream ended the socket after the request ahead, the lost keep-alive race was
 * not recognised and a GET got a 502 with `retry.tries: 1`). The race retry at the limit may
 * have to queue behind a busy connection again, so the tries a lost race gives back are
 * bounded (FREE_RACE_RETRIES): a request makes at most `tries + FREE_RACE_RETRIES` attempts.
 *
 * The upstream answers the first request of every connection and ends it (FIN, no
 * `Connection: close`) after a seeded delay of a few ms.
 */
describe('the keep-alive race at maxConnections', () => {
  for (const client of ['undici', 'native'] as const) {
    test(`${client}: GETs queued behind a connection still opening are recorded reused and recovered from a lost race, tries 1 (seeded)`, { timeout: 120_000 }, () =>
      seededRun(`race at maxConnections (${client})`, async (rand) => {
        const answerThenEnd = async (req: PieceRequest): Promise<PieceAnswer> => {
          const ms = between(rand, 0, 4);
          if (ms > 0) await new Promise((r) => setTimeout(r, ms));
          return { pieces: [`HTTP/1.1 200 OK\r\nContent-Length: ${req.path.length}\r\n\r\n${req.path}`], close: true };
        };
        await withRaceRig(answerThenEnd, { client, retry: { tries: 1 }, cluster: { maxConnections: 1 } }, async ({ gw }) => {
          const rounds = between(rand, 4, 10);
          let sent = 0;
          for (let round = 0; round < rounds; round++) {
            // Two or three GETs at once: the later ones queue on the one connection, opened for the first.
            const k = between(rand, 2, 3);
            const answers = await Promise.all(
              Array.from({ length: k }, async (_, i) => {
                const path = `/r${round}/${i}`;
                const res = await request(`${gw.url}${path}`);
                return { path, status: res.statusCode, body: await res.body.text() };
              }),
            );
            sent += k;
            assert.ok(await until(() => gw.logs.filter((l) => l.type === 'access').length >= sent, GUARD_MS, 5), `round ${round}: a record for each of the ${sent} requests`);
            const lines = gw.logs.filter((l) => l.type === 'access');
            for (const a of answers) {
              const line = lines.find((l) => l.path === a.path);
              const attempts = (line?.attempts ?? []) as unknown as RaceTry[];
              assert.equal(a.status, 200, `round ${round} (${k} at once), ${a.path}: ${a.body.slice(0, 300)} attempts ${JSON.stringify(attempts)}`);
              assert.equal(a.body, a.path);
              assert.ok(attempts.length <= 1 + FREE_RACE_RETRIES, `${a.path}: ${attempts.length} attempts ${JSON.stringify(attempts)}`);
              // Every try that failed was a lost race: sent on a socket that had carried another request.
              for (const t of attempts.slice(0, -1)) {
                assert.equal(t.error, 'connection_terminated', JSON.stringify(attempts));
                assert.equal(t.connection, 'reused', JSON.stringify(attempts));
              }
            }
          }
        });
      }));
  }
});

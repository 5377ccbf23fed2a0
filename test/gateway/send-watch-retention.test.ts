import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Pool } from 'undici';
import { deadlines } from '../../src/timing/deadlines.js';
import { startOneUpstreamGateway } from '../helpers/gateway.js';
import { between, seededRun } from '../helpers/seeded.js';
import { onHeads, startRawServer, type RawServer } from '../helpers/scripted-upstream.js';
import { until } from '../helpers/until.js';

/**
 * Finding (session 17, `bench/icount.ts netfront`: 347k instructions per request over 12,000
 * requests against the node front's 161k; the process grew by ~100 MB every 3 s under wrk):
 * on the net front every answered request left a send-timeout watch (exchange.ts SendWatch)
 * on the deadline list, holding its exchange, attempt, request and response for the whole
 * send timeout. The watch is for an answer whose last bytes wait in the gateway's socket
 * buffer because the client does not read; the net front corks its socket until the end of
 * the tick, so at `end()` every answer's bytes were still "queued" and each got a watch.
 *
 * Family: on each front, K keep-alive connections (1–6) carry N small answers (0–16 KiB,
 * under a loopback socket's buffer) to a client that reads everything; once every answer's
 * access-log line is written, the deadline list may hold at most one entry per connection
 * (its keep-alive wait) beyond what it held before, never one per answer.
 */

let upstream: RawServer;

before(async () => {
  upstream = await startRawServer((s) =>
    onHeads(s, (_head, path) => {
      const n = Number(/\/(\d+)$/.exec(path)?.[1] ?? 0);
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${n}\r\n\r\n${'b'.repeat(n)}`);
    }),
  );
});

after(() => upstream.close());

describe('answers taken by the client leave no send-timeout watch behind', () => {
  for (const front of ['node', 'net'] as const) {
    test(`seeded: ${front} front, K keep-alive connections, N answers of 0–16 KiB read whole`, { timeout: 120_000 }, async () => {
      await seededRun(`send watch retention (${front} front)`, async (rand) => {
        for (let round = 0; round < 4; round++) {
          const g = await startOneUpstreamGateway(upstream.port, { listener: { front } });
          const k = between(rand, 1, 6);
          const n = between(rand, 20, 150);
          const pool = new Pool(g.url, { connections: k, pipelining: 1 });
          try {
            const before = deadlines.size;
            let sent = 0;
            const worker = async (): Promise<void> => {
              while (sent < n) {
                sent++;
                const size = rand() < 0.2 ? 0 : between(rand, 1, 16 * 1024);
                const r = await pool.request({ method: 'GET', path: `/b/${size}` });
                const body = await r.body.text();
                assert.equal(r.statusCode, 200);
                assert.equal(body.length, size);
              }
            };
            await Promise.all(Array.from({ length: k }, worker));
            assert.ok(await until(() => g.logs.filter((l) => l.type === 'access').length >= n, 10_000), `round ${round}: every answer's access-log line`);
            const held = deadlines.size - before;
            assert.ok(held <= k, `round ${round}: ${held} deadline entries left after ${n} answers on ${k} connections (at most ${k}: one keep-alive wait each)`);
          } finally {
            await pool.close();
            await g.close();
          }
        }
      });
    });
  }
});

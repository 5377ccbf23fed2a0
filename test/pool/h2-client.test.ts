import assert from 'node:assert/strict';
import { constants, type ServerHttp2Stream } from 'node:http2';
import { describe, test } from 'node:test';
import type { Dispatcher } from 'undici';
import { ConnectionPool, upstreamConnector, type PoolConnection } from '../../src/pool/index.js';
import { between, seededRun } from '../helpers/seeded.js';
import { startH2cUpstream } from '../helpers/h2c-upstream.js';
import { until } from '../helpers/until.js';

/**
 * The pool's HTTP/2 client (src/pool/h2-client.ts) through `ConnectionPool` with `h2`, against
 * a real node:http2 upstream (h2c) on loopback.
 *
 * - A connection that got a graceful GOAWAY must leave the pool once its streams have ended.
 *   Node's graceful close of the session ends the socket and waits for the peer's FIN, and
 *   Node's own HTTP/2 server keeps its half open: found while writing the client, the
 *   connection never said 'disconnect', stayed in the pool, and the gateway's close waited for
 *   it for ever (test/gateway/h2-graceful-goaway.test.ts hung in its `gw.close()`).
 * - A request's own headersTimeout fails it with undici's code, resets its stream (CANCEL) and
 *   leaves the session up for the next request.
 */

interface Outcome {
  status: number;
  body: string;
  error: (Error & { code?: string }) | undefined;
}

/** Dispatch one request on `c`; resolves when it completes or fails. */
function run(c: PoolConnection, opts: Partial<Dispatcher.DispatchOptions> & { path: string }): Promise<Outcome> {
  return new Promise((resolve) => {
    const out: Outcome = { status: 0, body: '', error: undefined };
    c.dispatch({ method: 'GET', headers: [], ...opts } as Dispatcher.DispatchOptions, {
      onConnect() {},
      onHeaders(status: number) {
        out.status = status;
        return true;
      },
      onData(chunk: Buffer) {
        out.body += chunk.toString();
        return true;
      },
      onComplete() {
        resolve(out);
      },
      onError(err: Error) {
        out.error = err;
        resolve(out);
      },
    } as Dispatcher.DispatchHandler);
  });
}

function h2cPool(url: string, maxStreams: number): ConnectionPool<PoolConnection> {
  return new ConnectionPool<PoolConnection>({
    origin: url,
    maxConnections: Infinity,
    keepAliveMs: 30_000,
    clientOptions: { headersTimeout: 0, bodyTimeout: 0 },
    connector: upstreamConnector({ allowH2: true, useH2c: true, timeout: 5_000 }),
    maxStreams,
    h2: true,
  });
}

describe('H2Client in the pool', () => {
  test('a connection given a graceful GOAWAY leaves the pool once its streams end, though the upstream keeps its half open (seeded 1-4 streams)', async () => {
    await seededRun('h2 client goaway leaves the pool', async (rand) => {
      for (let round = 0; round < 4; round++) {
        const k = between(rand, 1, 4);
        const held: ServerHttp2Stream[] = [];
        let goawaySent = false;
        const up = await startH2cUpstream((stream, headers) => {
          if (headers[':path'] === '/after') {
            stream.respond({ ':status': 200 });
            stream.end('after');
            return;
          }
          held.push(stream);
          if (held.length < k) return;
          const last = Math.max(...held.map((s) => s.id!));
          stream.session!.goaway(constants.NGHTTP2_NO_ERROR, last);
          goawaySent = true;
          setImmediate(() => {
            for (const s of held) {
              s.respond({ ':status': 200 });
              s.end(`held ${s.id}`);
            }
          });
        });
        const pool = h2cPool(up.url, 8);
        try {
          const now = Date.now();
          const first = pool.acquire(now, true, false);
          let disconnected = false;
          first.on('disconnect', () => {
            disconnected = true;
          });
          // The event, not the `connected` flag: with one stream the GOAWAY, the answer and the
          // disconnect may all come before a poll would look (seed 3840190034).
          const connected = new Promise<void>((resolve) => first.on('connect', () => resolve()));
          const runs = [run(first, { path: '/held' })];
          await connected;
          for (let i = 1; i < k; i++) {
            const c = pool.acquire(Date.now(), true, false);
            assert.equal(c, first, `round ${round}: stream ${i} goes on the busy HTTP/2 connection`);
            runs.push(run(c, { path: '/held' }));
          }
          const outs = await Promise.all(runs);
          for (const o of outs) {
            assert.equal(o.error, undefined, `round ${round} (k ${k}): ${o.error?.message}`);
            assert.equal(o.status, 200);
            assert.match(o.body, /^held \d+$/);
          }
          assert.ok(goawaySent);
          assert.equal(first.closed, true, 'no new stream on a connection that got a GOAWAY');
          for (let i = 0; i < k; i++) pool.release(first, Date.now(), true);
          assert.ok(await until(() => disconnected, 5_000, 2), `round ${round} (k ${k}): the connection's session and socket end once its streams have`);
          assert.ok(await until(() => pool.size === 0, 5_000, 2), `round ${round}: the connection left the pool (size ${pool.size})`);
          const next = pool.acquire(Date.now(), true, false);
          assert.notEqual(next, first);
          const o = await run(next, { path: '/after' });
          assert.equal(o.body, 'after');
          pool.release(next, Date.now(), true);
        } finally {
          await pool.destroy();
          await up.close();
        }
      }
    });
  });

  test('a request\'s headersTimeout fails it with UND_ERR_HEADERS_TIMEOUT, resets its stream, and the session serves the next request (seeded 30-150 ms)', async () => {
    await seededRun('h2 client headers timeout', async (rand) => {
      const resets: number[] = [];
      const up = await startH2cUpstream((stream, headers) => {
        if (headers[':path'] === '/silent') {
          stream.on('close', () => resets.push(stream.rstCode));
          return;
        }
        stream.respond({ ':status': 200 });
        stream.end('ok');
      });
      const pool = h2cPool(up.url, 4);
      try {
        for (let round = 0; round < 3; round++) {
          const ms = between(rand, 30, 150);
          const c = pool.acquire(Date.now(), true, false);
          const t0 = performance.now();
          const o = await run(c, { path: '/silent', headersTimeout: ms });
          const took = performance.now() - t0;
          // The stream failed, not the connection (the gateway's try gives it back as not reusable: the pool then retires it).
          pool.release(c, Date.now(), true);
          assert.equal(o.error?.code, 'UND_ERR_HEADERS_TIMEOUT', `round ${round} (${ms} ms): ${o.error?.message}`);
          assert.ok(took >= ms - 5, `round ${round}: failed after ${took} ms, before its ${ms} ms`);
          assert.ok(await until(() => resets.length === round + 1, 5_000, 2), `round ${round}: the upstream saw the stream end`);
          assert.equal(resets[round], constants.NGHTTP2_CANCEL, `round ${round}: reset with CANCEL`);
          const c2 = pool.acquire(Date.now(), true, false);
          assert.equal(c2, c, `round ${round}: the same connection serves the next request`);
          const ok = await run(c2, { path: '/ok' });
          pool.release(c2, Date.now(), true);
          assert.equal(ok.body, 'ok');
        }
        assert.equal(up.sessions.size, 1, 'one session for every request');
      } finally {
        await pool.destroy();
        await up.close();
      }
    });
  });
});

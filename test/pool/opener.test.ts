import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { buildConnector, type Dispatcher } from 'undici';
import { Failure } from '../../src/failure/index.js';
import { ConnectionPool, type PoolConnection, type PoolConnector } from '../../src/pool/index.js';
import { Cancel, type CancelSignal } from '../../src/timing/cancel.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * `ConnectionPool.acquire`'s `opener`: the cancel signal of the request a new connection is
 * opened for reaches the connector with the dial, so a connector can refuse the dial of a
 * request already abandoned (the forward proxy's direct exit: a client that left while the
 * name resolved, test/forward/http-client-left-during-dns.test.ts). The pool's side of the
 * contract, on both clients (undici's and the native one), over a real loopback origin that
 * counts its connections:
 *  - a connection opened for one request hands that request's signal to the connector (in a
 *    pool with a limit, a signal that follows it until another request waits on the dial);
 *  - one with a second request queued on it before it connects (at `maxConnections`) hands
 *    none: the opener's leaving must not fail the other request;
 *  - the connect's answer clears it (an idle pooled connection does not keep its first
 *    request alive), and a reused connection makes no dial at all;
 *  - a connector that refuses an aborted signal's dial fails only that request, the origin
 *    sees no connection, and the pool's next request gets a working connection.
 * Seeded: which client, and how many requests are made in a row.
 */

let server: Server;
let accepted = 0;
const ready = (async () => {
  server = createServer((_req, res) => res.end('ok'));
  server.on('connection', () => accepted++);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
})();
after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

/** A real connector that notes the signal of each dial, and refuses one already aborted. */
function notingConnector(seen: Array<CancelSignal | undefined>): PoolConnector {
  const base = buildConnector({});
  return (opts, callback, opener) => {
    seen.push(opener);
    if (opener?.aborted) {
      callback(new Failure({ type: 'proxy_internal_error', phase: 'connect', detail: 'aborted: the request left' }), null);
      return;
    }
    base(opts, callback);
  };
}

function poolOf(port: number, native: boolean, maxConnections: number, seen: Array<CancelSignal | undefined>): ConnectionPool<PoolConnection> {
  return new ConnectionPool<PoolConnection>({ origin: `http://127.0.0.1:${port}`, maxConnections, keepAliveMs: 10_000, clientOptions: {}, native, connector: notingConnector(seen) });
}

/** One GET on `c` (from `pool.acquire`); resolves with the body, rejects with the error. */
function get(pool: ConnectionPool<PoolConnection>, c: PoolConnection): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    const handler: Dispatcher.DispatchHandler = {
      onConnect() {},
      onHeaders: () => true,
      onData: (b: Buffer) => ((body += b.toString()), true),
      onComplete: () => {
        pool.release(c, Date.now(), true);
        resolve(body);
      },
      onError: (err: Error) => {
        pool.release(c, Date.now(), false);
        reject(err);
      },
    };
    c.dispatch({ path: '/', method: 'GET' }, handler);
  });
}

describe('ConnectionPool: the opening request’s signal reaches the connector', () => {
  test('given to a new connection’s dial, none when another request shares it, cleared once connected, refused dials cost nothing (seeded family)', () =>
    seededRun('pool opener', async (rand) => {
      const port = await ready;
      for (const native of [false, true]) {
        const what = native ? 'native client' : 'undici client';
        const seen: Array<CancelSignal | undefined> = [];
        // Without a limit (the forward proxy's direct pools) the dial is given the request's signal itself.
        const pool = poolOf(port, native, Infinity, seen);
        try {
          // A new connection for one request: its signal goes with the dial, and is let go once connected.
          const a = new Cancel();
          const c = pool.acquire(Date.now(), true, false, a);
          assert.equal(await get(pool, c), 'ok', what);
          assert.deepEqual(seen, [a], `${what}: the dial was given the opening request's signal`);
          assert.equal(c.opener, undefined, `${what}: the connected connection keeps no signal`);
          // With a limit, a signal that follows the request's until another request waits on the dial (shared-dial.test.ts).
          const limited = poolOf(port, native, 1, seen);
          seen.length = 0;
          const b = new Cancel();
          const lc = limited.acquire(Date.now(), true, false, b);
          assert.equal(await get(limited, lc), 'ok', what);
          assert.equal(seen.length, 1, `${what}: one dial`);
          assert.equal(seen[0]?.aborted, false, `${what}: the limited pool's dial signal reads the request's`);
          b.abort();
          assert.equal(seen[0]?.aborted, true, `${what}: the limited pool's dial signal follows the request's`);
          assert.equal(lc.opener, undefined, `${what}: the connected connection keeps no signal`);
          await limited.close();
          seen.length = 0;
          seen.push(a);
          // Reused, a few times in a row: no dial, whatever signal the request has.
          const n = between(rand, 1, 4);
          for (let i = 0; i < n; i++) {
            const r = pool.acquire(Date.now(), true, false, new Cancel());
            assert.equal(r, c, `${what}: the idle connection is reused`);
            assert.equal(await get(pool, r), 'ok', what);
          }
          assert.equal(seen.length, 1, `${what}: a reused connection makes no dial`);
          await pool.close();

          // At maxConnections 1, a second request queued on the connection before it connects: no signal.
          const shared = poolOf(port, native, 1, seen);
          seen.length = 0;
          const first = shared.acquire(Date.now(), false, false, new Cancel());
          const second = shared.acquire(Date.now(), false, false, new Cancel());
          assert.equal(second, first, `${what}: the second request queues on the connection being opened`);
          const both = Promise.all([get(shared, first), get(shared, second)]);
          assert.deepEqual(await both, ['ok', 'ok'], what);
          assert.deepEqual(seen, [undefined], `${what}: a connection that serves two requests is dialled without the opener's signal`);
          await shared.close();

          // A dial refused for an aborted signal: that request fails, the origin sees nothing, the next one works.
          const refusing = poolOf(port, native, Infinity, seen);
          seen.length = 0;
          const before = accepted;
          const gone = new Cancel();
          gone.abort();
          const g = refusing.acquire(Date.now(), false, false, gone);
          await assert.rejects(get(refusing, g), (err: unknown) => err instanceof Failure && err.type === 'proxy_internal_error', `${what}: the refused dial fails its request`);
          const next = refusing.acquire(Date.now(), true, false, new Cancel());
          assert.notEqual(next, g, `${what}: the refused connection is not reused`);
          assert.equal(await get(refusing, next), 'ok', `${what}: the next request gets a working connection`);
          assert.equal(accepted - before, 1, `${what}: the origin saw only the next request's connection`);
          await refusing.close();
        } finally {
          await pool.close();
        }
      }
    }));
});

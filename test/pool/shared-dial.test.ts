import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import type { Dispatcher } from 'undici';
import { Failure } from '../../src/failure/index.js';
import { ConnectionPool, type PoolConnection, type PoolConnector } from '../../src/pool/index.js';
import { Cancel } from '../../src/timing/cancel.js';
import { between, everyCase, seededRun, shuffle } from '../helpers/seeded.js';

/**
 * A dial shared by two requests: at `maxConnections` 1 a second request queues on the
 * connection being opened for the first, after that connection's dial has begun (the
 * connector already holds the first request's signal, `acquire`'s `opener`). When the first
 * request's signal then fires (its client left), the dial must go on: the second request is
 * waiting for it. Before, `acquire` only cleared the connection's `opener` field, which the
 * connector had already read, so the first's leaving stopped the dial and failed the second.
 *
 * Real sockets on loopback: the origin accepts, then holds a one-byte greeting until the test
 * releases it (the phase a TLS or proxy handshake would be in), then answers HTTP/1.1. The
 * connector dials it and stops on its signal, as the forward proxy's dialer does (socket
 * destroyed, a connect error). The family (seeded): which client (undici's, native), when the
 * second request queues (as soon as the connector is called, or once the origin accepted),
 * when the first's signal fires (right after the second queued, or once the origin accepted),
 * how many requests queue (1–3).
 * Every wait is an event (the connector called, the origin accepting, the answer); nothing sleeps.
 */

type Phase = 'dial-called' | 'accepted';

interface Origin {
  server: Server;
  port: number;
  sockets: Socket[];
  /** Resolves with each accepted socket, in order. */
  accepted(n: number): Promise<Socket>;
}

async function greetingOrigin(): Promise<Origin> {
  const sockets: Socket[] = [];
  const waiters: Array<[number, (s: Socket) => void]> = [];
  const server = createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    let got = '';
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      // One answer per request head (a keep-alive connection may carry two).
      let end: number;
      while ((end = got.indexOf('\r\n\r\n')) >= 0) {
        got = got.slice(end + 4);
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      }
    });
    for (const [n, r] of waiters) if (sockets.length === n) r(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as AddressInfo).port,
    sockets,
    accepted: (n) => (sockets.length >= n ? Promise.resolve(sockets[n - 1]!) : new Promise((r) => waiters.push([n, r]))),
  };
}

/**
 * Dials the origin, waits for its greeting byte, then hands the socket over; an aborted signal
 * stops it at once (the socket destroyed, a connect error), as egress/direct-dialer.ts does.
 */
function greetingConnector(port: number, called: () => void): PoolConnector {
  return (_opts, callback, opener) => {
    called();
    const abortFailure = (): Failure => new Failure({ type: 'proxy_internal_error', phase: 'connect', detail: 'aborted: the request left' });
    if (opener?.aborted) {
      callback(abortFailure(), null);
      return;
    }
    const sock = connect(port, '127.0.0.1');
    let done = false;
    const finish = (err: Error | null): void => {
      if (done) return;
      done = true;
      opener?.removeEventListener('abort', onAbort);
      sock.off('data', onData);
      if (err) {
        sock.destroy();
        callback(err, null);
      } else callback(null, sock);
    };
    const onAbort = (): void => finish(abortFailure());
    const onData = (b: Buffer): void => {
      if (b.length > 1) sock.unshift(b.subarray(1));
      finish(null);
    };
    sock.on('data', onData);
    sock.once('error', (err) => finish(err));
    opener?.addEventListener('abort', onAbort, { once: true });
  };
}

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

function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}

async function oneCase(native: boolean, queueAt: Phase, fireAt: Phase, waiters: number): Promise<void> {
  const what = `${native ? 'native' : 'undici'} client, ${waiters} request(s) queued at ${queueAt}, the first's signal fired at ${fireAt}`;
  const origin = await greetingOrigin();
  let dialCalled!: () => void;
  const dialCalledP = new Promise<void>((r) => (dialCalled = r));
  let dials = 0;
  const pool = new ConnectionPool<PoolConnection>({
    origin: `http://127.0.0.1:${origin.port}`,
    maxConnections: 1,
    keepAliveMs: 10_000,
    clientOptions: {},
    native,
    connector: greetingConnector(origin.port, () => (dials++, dialCalled())),
  });
  const settle = (p: Promise<string>): Promise<string> => p.then((b) => b, (e: Error) => `failed: ${e.message}`);
  try {
    const firstSignal = new Cancel();
    const first = pool.acquire(Date.now(), true, false, firstSignal);
    const firstGot = settle(get(pool, first));
    await bounded(dialCalledP, 5000, `${what}: the dial starting`);
    const others: Promise<string>[] = [];
    const queue = (): void => {
      for (let i = 0; i < waiters; i++) {
        const c = pool.acquire(Date.now(), true, false, new Cancel());
        assert.equal(c, first, `${what}: a request queues on the connection being opened`);
        others.push(settle(get(pool, c)));
      }
    };
    if (queueAt === 'dial-called') queue();
    if (fireAt === 'dial-called') firstSignal.abort();
    const sock = await bounded(origin.accepted(1), 5000, `${what}: the origin accepting the dial`);
    if (queueAt === 'accepted') queue();
    if (fireAt === 'accepted') firstSignal.abort();
    // The greeting: the dial, if it went on, completes now.
    if (!sock.destroyed) sock.write('R');
    const got = await bounded(Promise.all(others), 5000, `${what}: the queued requests' answers`);
    assert.deepEqual(got, others.map(() => 'ok'), `${what}: every queued request is served (the shared dial went on): ${JSON.stringify(got)}`);
    await bounded(firstGot, 5000, `${what}: the first request's end`);
    assert.equal(dials, 1, `${what}: one dial`);
  } finally {
    await pool.destroy();
    for (const s of origin.sockets) s.destroy();
    origin.server.close();
  }
}

describe('ConnectionPool: a dial shared by a queued request', () => {
  test('goes on when the request it was opened for leaves (seeded family: client, when the second queues, when the first leaves)', { timeout: 120_000 }, () =>
    seededRun('pool shared dial', async (rand) => {
      // The second request queues once the dial has begun; the first's signal fires after it queued.
      const cases: Array<[boolean, Phase, Phase, number]> = [];
      for (const native of [false, true]) {
        for (const [q, f] of [['dial-called', 'dial-called'], ['dial-called', 'accepted'], ['accepted', 'accepted']] as const) cases.push([native, q, f, between(rand, 1, 3)]);
      }
      shuffle(rand, cases);
      await everyCase(cases, async ([n, q, f, w]) => oneCase(n, q, f, w));
    }));
});

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startOneUpstreamGateway, type TestGateway } from '../helpers/gateway.js';
import { requestEnd, type ReverseRecord } from '../../src/gateway/events.js';
import { RawConn, parseHead, type Head } from '../helpers/raw-conn.js';
import { seededRandom } from '../helpers/seeded.js';
import { onHeads, startRawServer, tick, type RawServer } from '../helpers/scripted-upstream.js';

/**
 * Stall hunt (session 13): a cluster with `maxConnections` whose connections are all busy
 * queues the next request on one of them (ConnectionPool.acquire: "queue on the least busy
 * one"). Its try starts timing only at onConnect, which the client (native or undici) calls
 * when the request is written, i.e. when the request ahead of it has ended. Until then
 * nothing times it: not the response timeout (the wait for a head), not the route deadline.
 * Behind a long response (a download, a server-sent-events stream that sends a byte every
 * 100 ms and so never trips the idle timeout) the queued request waits as long as that
 * stream lives — for ever for an endless one — and its client with it.
 *
 * Here the stream ahead lasts STREAM_MS (bounded); the queued request must be answered
 * (any status: a 504 from its response timeout is fine) well before that.
 */

const STREAM_MS = 8000;

let upstream: RawServer;

/** `/stream`: chunked, a chunk every 100 ms for STREAM_MS; `/c`: a cacheable `v1`, stale at once; anything else: `200 q`. */
before(async () => {
  upstream = await startRawServer((s) =>
    onHeads(s, (head) => {
      if (head.startsWith('GET /stream ')) {
        s.write('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n');
        const t0 = Date.now();
        tick(s, 100, () => (Date.now() - t0 >= STREAM_MS ? undefined : '7\r\ndata: x\r\n'), '0\r\n\r\n');
      } else if (head.startsWith('GET /c ')) {
        // Stale at once, served stale while revalidated (the revalidation case).
        s.write('HTTP/1.1 200 OK\r\nCache-Control: max-age=0, stale-while-revalidate=60\r\nETag: "v1"\r\nContent-Length: 2\r\n\r\nv1');
      } else s.write('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nq');
    }),
  );
});

after(() => upstream.close());

/** A connection to `port` with the `/stream` answer running on it (its first event read): the endpoint's one connection is busy. */
async function streamAhead(port: number, ctx: string): Promise<RawConn> {
  const stream = new RawConn(port);
  try {
    await stream.write('GET /stream HTTP/1.1\r\nHost: app.test\r\n\r\n');
    await stream.waitFor((t) => t.includes('data: x'), 3000, `${ctx}: the stream's first event`);
  } catch (err) {
    stream.destroy();
    throw err;
  }
  return stream;
}

/**
 * Sends `request` on `c` while the stream ahead holds the endpoint's one connection: the
 * answer's head and how long it took, bounded by the response timeout and 2.5 s (else the
 * test fails: `what` had no answer, `why` said after it).
 */
async function answerBehindStream(c: RawConn, request: string, responseMs: number, ctx: string, what: string, why = ''): Promise<{ head: Head; waited: number }> {
  const t0 = performance.now();
  await c.write(request);
  try {
    await c.waitFor((t) => parseHead(t) !== undefined, responseMs + 2500, 'the answer');
  } catch {
    assert.fail(`${ctx}: ${what} queued behind the stream had no answer ${Math.round(performance.now() - t0)} ms after it was sent${why}`);
  }
  const waited = performance.now() - t0;
  return { head: parseHead(c.text)!, waited };
}

/** A gateway whose one endpoint takes one connection (`maxConnections: 1`), with the seeded response timeout. */
function busyGateway(responseMs: number, extra: { client?: 'native' | 'undici'; cache?: boolean } = {}): Promise<TestGateway> {
  return startOneUpstreamGateway(upstream.port, {
    cluster: { maxConnections: 1, ...(extra.client !== undefined ? { client: extra.client } : {}), timeouts: { response: `${responseMs}ms`, idle: '5s' } },
    route: extra.cache === true ? { cache: {} } : {},
  });
}

for (const client of ['native', 'undici'] as const) {
  describe(`a request queued behind a busy upstream connection (maxConnections; client ${client})`, () => {
    const rand = seededRandom();
    const responseMs = 300 + rand.int(500);
    let gw: TestGateway;
    before(async () => {
      gw = await busyGateway(responseMs, { client });
    });
    after(() => gw.close());

    test('is answered within its response timeout, not when the stream ahead ends (seeded timeout)', { timeout: 30_000 }, async () => {
      const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}): client ${client}, response timeout ${responseMs} ms`;
      const stream = await streamAhead(gw.port, ctx);
      const queued = new RawConn(gw.port);
      try {
        const { head, waited } = await answerBehindStream(queued, 'GET /quick HTTP/1.1\r\nHost: app.test\r\n\r\n', responseMs, ctx, 'the request', ` (it waits for the stream ahead, ${STREAM_MS} ms, with no timer)`);
        // Never sent upstream, so named as the endpoint's connection limit, not as the upstream's slowness.
        assert.equal(head.status, 503, `${ctx}: status`);
        assert.match(head.get('proxy-status') ?? '', /error=connection_limit_reached/, `${ctx}: Proxy-Status`);
        assert.match(head.get('proxy-status') ?? '', /maxConnections 1/, `${ctx}: the detail names the limit`);
        assert.ok(waited >= responseMs - 50, `${ctx}: answered after ${Math.round(waited)} ms, before its response timeout`);
        assert.ok(!stream.ended, `${ctx}: the stream ahead was cut`);
        assert.ok(!stream.text.includes('0\r\n\r\n'), `${ctx}: the stream ahead ended early`);
      } finally {
        stream.destroy();
        queued.destroy();
      }
      // The endpoint serves again once the stream is gone (the queued request left nothing behind).
      const next = new RawConn(gw.port);
      try {
        await next.write('GET /quick HTTP/1.1\r\nHost: app.test\r\n\r\n');
        await next.waitFor((t) => parseHead(t) !== undefined && t.endsWith('q'), 5000, `${ctx}: the next request's answer`);
        assert.equal(parseHead(next.text)!.status, 200, `${ctx}: the next request`);
      } finally {
        next.destroy();
      }
    });

    test('an upgrade queued the same way is answered within the response timeout too', { timeout: 30_000 }, async () => {
      const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}): client ${client}, response timeout ${responseMs} ms`;
      const stream = await streamAhead(gw.port, ctx);
      const ws = new RawConn(gw.port);
      try {
        const { head } = await answerBehindStream(ws, 'GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n', responseMs, ctx, 'the upgrade');
        assert.equal(head.status, 503, `${ctx}: status`);
        assert.match(head.get('proxy-status') ?? '', /error=connection_limit_reached/, `${ctx}: Proxy-Status`);
        assert.ok(!stream.ended, `${ctx}: the stream ahead was cut`);
      } finally {
        stream.destroy();
        ws.destroy();
      }
    });
  });
}

describe('a background revalidation queued behind a busy upstream connection (maxConnections)', () => {
  const rand = seededRandom();
  const responseMs = 300 + rand.int(500);
  let gw: TestGateway;
  before(async () => {
    gw = await busyGateway(responseMs, { cache: true });
  });
  after(() => gw.close());

  test('ends within its response timeout and is recorded, not held until the stream ahead ends', { timeout: 30_000 }, async () => {
    const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}): response timeout ${responseMs} ms`;
    const first = new RawConn(gw.port);
    try {
      await first.write('GET /c HTTP/1.1\r\nHost: app.test\r\n\r\n');
      await first.waitFor((t) => t.endsWith('v1'), 3000, `${ctx}: the first answer`);
      assert.match(parseHead(first.text)!.get('cache-status') ?? '', /stored/, `${ctx}: stored`);
    } finally {
      first.destroy();
    }
    const stream = await streamAhead(gw.port, ctx);
    const stale = new RawConn(gw.port);
    try {
      // The revalidation's record, waited for on the records' channel (bounded by the response timeout and slack).
      const recorded = new Promise<ReverseRecord | undefined>((resolve) => {
        const done = (r: ReverseRecord | undefined): void => {
          clearTimeout(timer);
          requestEnd.unsubscribe(on);
          resolve(r);
        };
        const on = (m: unknown): void => {
          const r = m as ReverseRecord;
          if (r.background === 'revalidation' && r.path === '/c') done(r);
        };
        const timer = setTimeout(() => done(undefined), responseMs + 2500);
        requestEnd.subscribe(on);
      });
      const t0 = performance.now();
      await stale.write('GET /c HTTP/1.1\r\nHost: app.test\r\n\r\n');
      await stale.waitFor((t) => t.endsWith('v1'), 3000, `${ctx}: the stale answer`);
      assert.match(parseHead(stale.text)!.get('cache-status') ?? '', /stale-while-revalidate/, `${ctx}: served stale`);
      const line = await recorded;
      assert.ok(line !== undefined, `${ctx}: the revalidation queued behind the stream was still held ${Math.round(performance.now() - t0)} ms after the stale hit (no record)`);
      assert.equal(line.error, 'connection_limit_reached', `${ctx}: ${JSON.stringify(line)}`);
      assert.ok(!stream.ended, `${ctx}: the stream ahead was cut`);
    } finally {
      stream.destroy();
      stale.destroy();
    }
  });
});

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { seededRandom } from '../helpers/seeded.js';

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

let upstream: Server;
const upSockets = new Set<Socket>();

/** `/stream`: chunked, a chunk every 100 ms for STREAM_MS; anything else: `200 q`. */
before(async () => {
  upstream = createServer((s) => {
    upSockets.add(s);
    s.on('close', () => upSockets.delete(s));
    s.on('error', () => {});
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        if (head.startsWith('GET /stream ')) {
          s.write('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n');
          const t0 = Date.now();
          const tick = setInterval(() => {
            if (s.destroyed) return clearInterval(tick);
            if (Date.now() - t0 >= STREAM_MS) {
              clearInterval(tick);
              s.write('0\r\n\r\n');
              return;
            }
            s.write('7\r\ndata: x\r\n');
          }, 100);
          continue;
        }
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nq');
      }
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
});

after(async () => {
  for (const s of upSockets) s.destroy();
  await new Promise<void>((r) => upstream.close(() => r()));
});

describe('a request queued behind a busy upstream connection (maxConnections)', () => {
  const rand = seededRandom();
  const responseMs = 300 + rand.int(500);
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway({
      clusters: {
        up: {
          endpoints: [`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`],
          maxConnections: 1,
          timeouts: { response: `${responseMs}ms`, idle: '5s' },
          outlierDetection: { enabled: false },
        },
      },
      routes: [{ cluster: 'up', retry: { tries: 1 } }],
    } as never);
  });
  after(() => gw.close());

  test('is answered within its response timeout, not when the stream ahead ends (seeded timeout)', { timeout: 30_000, todo: 'open (session 13): the try\'s head timer starts at onConnect, after the request ahead ends; the fix needs the timer from dispatch and a way to drop a queued request (or no queueing on busy connections, leaving waits to the admission queue)' }, async () => {
    const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}): response timeout ${responseMs} ms`;
    const stream = new RawConn(gw.port);
    const queued = new RawConn(gw.port);
    try {
      await stream.write('GET /stream HTTP/1.1\r\nHost: app.test\r\n\r\n');
      await stream.waitFor((t) => t.includes('data: x'), 3000, `${ctx}: the stream's first event`);
      const t0 = performance.now();
      await queued.write('GET /quick HTTP/1.1\r\nHost: app.test\r\n\r\n');
      const bound = responseMs + 2500;
      try {
        await queued.waitFor((t) => parseHead(t) !== undefined, bound, 'the answer');
      } catch {
        assert.fail(`${ctx}: the request queued behind the stream had no answer ${Math.round(performance.now() - t0)} ms after it was sent (it waits for the stream ahead, ${STREAM_MS} ms, with no timer)`);
      }
      assert.ok(!stream.ended, `${ctx}: the stream ahead was cut`);
    } finally {
      stream.destroy();
      queued.destroy();
    }
  });
});

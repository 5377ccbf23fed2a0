import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { accessRecord, startOneUpstreamGateway, type TestGateway } from '../helpers/gateway.js';
import { h2session, responseHead } from '../helpers/h2-request.js';
import { FLAG, RawH2, T, frame, headerBlock } from '../helpers/h2-frames.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { startRawServer, tick, type RawServer } from '../helpers/scripted-upstream.js';
import { until as untilEvery } from '../helpers/until.js';

/**
 * Stall hunt on the HTTP/2 front (h2c with prior knowledge on a plain listener, a real
 * `node:http2` client or raw frames): states where a client stream or connection, an upstream
 * connection, the gateway's in-flight count (the graceful drain waits for it) or a request's
 * record could be held for ever because no timer or event covers them. Each family ends in a
 * bounded wait for the event that must come (the record, the upstream connection's close, the
 * client connection's close), and a failure names the state held and the seed.
 *
 * The upstream is a raw TCP server so the test sees exactly when the gateway lets go of an
 * upstream connection; it answers by the request path:
 * - `/len/<n>/<chunked 0|1>/…`: a 200 with an n-byte body, all at once (Content-Length, or chunked);
 * - `/trickle/<count>/…`: a chunked 200, one small chunk every TRICKLE_MS, `count` of them, then the end;
 * - anything else: nothing (the request waits for its head; a request body is read and dropped).
 */

const SEND_MS = 300;
const BODY_MS = 300;
const KEEPALIVE_MS = 300;
const SLACK_MS = 3000;
const TRICKLE_MS = 40;
const MAX_TRICKLE = 500;

interface UpConn {
  socket: Socket;
  closed: boolean;
}
const upstreamBy = new Map<string, UpConn>();
let upstream: RawServer;

before(async () => {
  upstream = await startRawServer((s) => {
    let buf = '';
    let inHead = true;
    s.on('data', (d: Buffer) => {
      if (!inHead) return; // a request body: dropped
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      inHead = false;
      const path = buf.slice(0, end).split(' ')[1]!;
      buf = '';
      const conn: UpConn = { socket: s, closed: false };
      upstreamBy.set(path, conn);
      s.once('close', () => (conn.closed = true));
      const parts = path.split('/');
      if (parts[1] === 'len') {
        const n = Number(parts[2]);
        const body = Buffer.alloc(n, 0x61);
        if (parts[3] === '1') s.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${n.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]));
        else s.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${n}\r\n\r\n`), body]));
        inHead = true; // the next request on this connection
      } else if (parts[1] === 'trickle') {
        const count = Math.min(Number(parts[2]), MAX_TRICKLE);
        s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
        tick(s, TRICKLE_MS, (n) => {
          if (n < count) return '4\r\ntick\r\n';
          inHead = true; // with the last chunk (written next): the next request on this connection
          return undefined;
        }, '0\r\n\r\n');
      }
    });
  });
});

after(() => upstream.close());

function upstreamPort(): number {
  return upstream.port;
}

/** Polled every 5 ms. */
const until = (ok: () => boolean, ms: number): Promise<boolean> => untilEvery(ok, ms, 5);

function h2gateway(listener: Record<string, unknown> = {}): Promise<TestGateway> {
  return startOneUpstreamGateway(upstreamPort(), {
    listener: { http2: { h2c: true }, sendTimeout: `${SEND_MS}ms`, clientBodyTimeout: `${BODY_MS}ms`, keepAliveTimeout: `${KEEPALIVE_MS}ms`, ...listener },
    cluster: { timeouts: { response: '20s', idle: '20s' } },
  });
}




describe('HTTP/2: a client that never reads its answer (stream window 0 or a small one)', () => {
  let g: TestGateway;
  before(async () => {
    g = await h2gateway();
  });
  after(() => g.close());

  for (const state of ['still streaming', 'ended with bytes queued in the stream'] as const) {
    test(`${state}: the send timeout ends the request, resets the stream and frees the upstream connection (seeded)`, { timeout: 90_000 }, async () => {
      const rand = seededRandom();
      await withSeed(rand, async () => {
        for (let i = 0; i < 4; i++) {
          const window = rand.next() < 0.4 ? 0 : rand.int(4000);
          const chunked = rand.next() < 0.5 ? 1 : 0;
          // Still streaming: far more than the stream's buffer (write() says "full"). Ended: under
          // 16 KiB past the window (write() never says "full"; the gateway ends the answer).
          const size = state === 'still streaming' ? 256 * 1024 + rand.int(2 * 1024 * 1024) : window + 1 + rand.int(12_000);
          const path = `/len/${size}/${chunked}/${rand.seed}/${state === 'still streaming' ? 's' : 'e'}${i}`;
          const ctx = `seed ${rand.seed}, ${state}, case ${i}: window ${window}, body ${size} bytes${chunked ? ' chunked' : ''}`;
          const s = h2session(g.url, window);
          try {
            const req = s.request({ ':path': path });
            req.on('error', () => {});
            const head = await responseHead(req, ctx);
            assert.equal(head[':status'], 200, ctx);
            const id = String(head['x-request-id']);
            const closed = new Promise<number>((r) => req.once('close', () => r(req.rstCode ?? -1)));
            // The client reads nothing: its window stays where it is.
            const t0 = performance.now();
            const line = await accessRecord(g, (l) => l.requestId === id, SEND_MS + SLACK_MS);
            assert.ok(
              line,
              `${ctx}: ${Math.round(performance.now() - t0)} ms after the head, the client reading nothing (send timeout ${SEND_MS} ms), the request is still held: no access-log line (in flight ${g.gw.ctx.inflight}, upstream connection ${upstreamBy.get(path)?.closed === false ? 'open' : 'closed'})`,
            );
            assert.equal(line.endedBy, 'client', `${ctx}: ${JSON.stringify(line)}`);
            assert.ok(await until(() => upstreamBy.get(path)?.closed !== false || state !== 'still streaming', SLACK_MS), `${ctx}: the request ended but its upstream connection is still open`);
            const code = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-2), SLACK_MS))]);
            assert.ok(code > 0, `${ctx}: the client's stream ${code === -2 ? 'is still open' : 'closed without RST_STREAM'} after the request ended`);
            assert.ok(await until(() => g.gw.ctx.inflight === 0, SLACK_MS), `${ctx}: ${g.gw.ctx.inflight} requests still in flight`);
          } finally {
            s.destroy();
          }
        }
      });
    });
  }
});

describe('HTTP/2: a request body that never comes, or stops (no END_STREAM)', () => {
  let g: TestGateway;
  before(async () => {
    g = await h2gateway();
  });
  after(() => g.close());

  // Both end with an answer sent whole while the client's side of the stream is still open:
  // Node leaves such a stream half-closed once the request body was read from, so nothing
  // closed it (found: the 408 reached the client, and the stream, the in-flight count and the
  // record were held until the client left; the same after an early upstream answer).
  for (const answer of ['408 from clientBodyTimeout', 'an early upstream answer'] as const) {
    test(`${answer}: the stream is closed (RST_STREAM NO_ERROR) once the answer is sent, the request recorded and its upstream request ended (seeded)`, { timeout: 90_000 }, async () => {
      const rand = seededRandom();
      await withSeed(rand, async () => {
        for (let i = 0; i < 5; i++) {
          const length = 1 + rand.int(50_000);
          const withLength = rand.next() < 0.6;
          const sent = rand.int(Math.min(length, 40_000));
          const early = answer === 'an early upstream answer';
          const path = early ? `/len/${1 + rand.int(5000)}/${rand.int(2)}/${rand.seed}/early${i}` : `/post/${rand.seed}/${i}`;
          const ctx = `seed ${rand.seed}, ${answer}, case ${i}: POST ${withLength ? `content-length ${length}` : 'without content-length'}, ${sent} bytes sent, then silence`;
          const s = h2session(g.url);
          try {
            const req = s.request({ ':method': 'POST', ':path': path, ...(withLength ? { 'content-length': String(length) } : {}) }, { endStream: false });
            req.on('error', () => {});
            let status: number | undefined;
            req.on('response', (h) => (status = Number(h[':status'])));
            req.resume();
            if (sent > 0) req.write(Buffer.alloc(sent, 0x62));
            assert.ok(await until(() => upstreamBy.has(path), 5000), `${ctx}: the request did not reach the upstream`);
            const t0 = performance.now();
            const line = await accessRecord(g, (l) => l.path === path, BODY_MS + SLACK_MS);
            assert.ok(
              line,
              `${ctx}: ${Math.round(performance.now() - t0)} ms after the request went upstream (clientBodyTimeout ${BODY_MS} ms), the request is still held: no access-log line (in flight ${g.gw.ctx.inflight}; client saw ${status ?? 'no answer'}, its stream ${req.closed ? 'closed' : 'open'})`,
            );
            assert.equal(line.status, early ? 200 : 408, `${ctx}: ${JSON.stringify(line)}`);
            if (!early) assert.ok(await until(() => upstreamBy.get(path)!.closed, SLACK_MS), `${ctx}: the request ended but its upstream request (connection) is still open`);
            assert.ok(await until(() => req.closed, SLACK_MS), `${ctx}: the client's stream is still open after its answer`);
            assert.equal(status, early ? 200 : 408, ctx);
            assert.ok(await until(() => g.gw.ctx.inflight === 0, SLACK_MS), `${ctx}: ${g.gw.ctx.inflight} requests still in flight`);
          } finally {
            s.destroy();
          }
        }
      });
    });
  }
});

describe('HTTP/2: a connection that goes silent in the middle of a header block, or right after its SETTINGS', () => {
  let g: TestGateway;
  before(async () => {
    g = await h2gateway();
  });
  after(() => g.close());

  const shapes = ['HEADERS without END_HEADERS', 'HEADERS and CONTINUATION without END_HEADERS', 'preface and SETTINGS only'] as const;
  test('the connection is closed within keepAliveTimeout and slack (seeded over shapes and split points)', { timeout: 90_000 }, async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      const cases = [...shapes, rand.pick(shapes), rand.pick(shapes)];
      for (const [i, shape] of cases.entries()) {
        const block = headerBlock({ path: `/silent/${rand.seed}/${i}`, extra: [['x-pad', 'p'.repeat(1 + rand.int(100))]] });
        const cut = 1 + rand.int(block.length - 1);
        const ctx = `seed ${rand.seed}, case ${i}: ${shape} (block cut at ${cut} of ${block.length})`;
        const c = new RawH2(g.port);
        try {
          if (shape === 'HEADERS without END_HEADERS') await c.write(frame(T.HEADERS, FLAG.END_STREAM, 1, block.subarray(0, cut)));
          else if (shape === 'HEADERS and CONTINUATION without END_HEADERS') {
            await c.write(frame(T.HEADERS, FLAG.END_STREAM, 1, block.subarray(0, cut)));
            await c.write(frame(9 /* CONTINUATION */, 0, 1, block.subarray(cut, cut + Math.ceil((block.length - cut) / 2))));
          }
          const t0 = performance.now();
          const closed = await c.closedWithin(KEEPALIVE_MS + SLACK_MS);
          assert.ok(closed, `${ctx}: the connection is still open ${Math.round(performance.now() - t0)} ms after its last frame (keepAliveTimeout ${KEEPALIVE_MS} ms); sessions open: ${g.gw.h2Sessions()}`);
        } finally {
          c.destroy();
        }
      }
      assert.ok(await until(() => g.gw.h2Sessions() === 0, SLACK_MS), `${g.gw.h2Sessions()} HTTP/2 sessions still open`);
    });
  });
});

describe('HTTP/2: RST_STREAM from the client while its request waits or streams', () => {
  let g: TestGateway;
  before(async () => {
    g = await h2gateway();
  });
  after(() => g.close());

  test('the upstream request is aborted at once and the request recorded (seeded: waiting for the head, mid-body)', { timeout: 60_000 }, async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let i = 0; i < 4; i++) {
        const midBody = i < 2 ? i === 1 : rand.next() < 0.5;
        const path = midBody ? `/trickle/${MAX_TRICKLE}/${rand.seed}/${i}` : `/wait/${rand.seed}/${i}`;
        const ctx = `seed ${rand.seed}, case ${i}: reset ${midBody ? 'while the body streams' : 'while the head is awaited'}`;
        const s = h2session(g.url);
        try {
          const req = s.request({ ':path': path });
          req.on('error', () => {});
          req.resume();
          const head = responseHead(req, ctx);
          head.catch(() => {});
          assert.ok(await until(() => upstreamBy.has(path), 5000), `${ctx}: the request did not reach the upstream`);
          if (midBody) await head;
          await new Promise((r) => setTimeout(r, rand.int(100)));
          req.close(8 /* CANCEL */);
          assert.ok(await until(() => upstreamBy.get(path)!.closed, SLACK_MS), `${ctx}: the upstream connection is still open after the client reset its stream`);
          const line = await accessRecord(g, (l) => l.path === path, SLACK_MS);
          assert.ok(line, `${ctx}: no access-log line after the reset`);
          assert.equal(line.endedBy, 'client', `${ctx}: ${JSON.stringify(line)}`);
          assert.ok(await until(() => g.gw.ctx.inflight === 0, SLACK_MS), `${ctx}: ${g.gw.ctx.inflight} requests still in flight`);
        } finally {
          s.destroy();
        }
      }
    });
  });
});

describe('HTTP/2: graceful drain with a long-running stream', () => {
  test('GOAWAY is sent, a stream that ends in time is answered whole, one that does not is cut at the drain timeout; close() resolves (seeded)', { timeout: 90_000 }, async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let i = 0; i < 3; i++) {
        const drainMs = 300 + rand.int(500);
        const finishes = i < 2 ? i === 0 : rand.next() < 0.5;
        // Ends well within the drain, or runs far beyond it.
        const ticks = finishes ? Math.max(1, Math.floor(drainMs / TRICKLE_MS / 3)) : MAX_TRICKLE;
        const path = `/trickle/${ticks}/${rand.seed}/drain${i}`;
        const ctx = `seed ${rand.seed}, case ${i}: drain ${drainMs} ms, a stream of ${ticks} ticks (${finishes ? 'ends within the drain' : 'runs beyond it'})`;
        const g = await h2gateway({ keepAliveTimeout: '20s' });
        const s = h2session(g.url);
        let goaway: number | undefined;
        s.on('goaway', (code: number) => (goaway = code));
        try {
          const req = s.request({ ':path': path });
          let body = '';
          let ended = false;
          let error = false;
          req.setEncoding('latin1');
          req.on('data', (c: string) => (body += c));
          req.on('end', () => (ended = true));
          req.on('error', () => (error = true));
          await responseHead(req, ctx);
          const t0 = performance.now();
          const closing = g.gw.close(drainMs).then(() => performance.now() - t0);
          const took = await Promise.race([closing, new Promise<number>((r) => setTimeout(() => r(-1), drainMs + SLACK_MS))]);
          assert.ok(took >= 0, `${ctx}: close(${drainMs}) has not resolved after ${drainMs + SLACK_MS} ms (in flight ${g.gw.ctx.inflight}, sessions ${g.gw.h2Sessions()})`);
          assert.ok(await until(() => goaway !== undefined, SLACK_MS), `${ctx}: the client saw no GOAWAY`);
          assert.ok(await until(() => req.closed, SLACK_MS), `${ctx}: the client's stream is still open after close()`);
          if (finishes) {
            assert.ok(ended && !error, `${ctx}: the stream that ends within the drain was not answered whole (ended ${ended}, error ${error})`);
            assert.equal(body, 'tick'.repeat(ticks), ctx);
            assert.ok(took < drainMs + SLACK_MS, ctx);
          } else {
            assert.ok(!ended || error, `${ctx}: a stream cut by the drain looked complete`);
            assert.ok(took >= drainMs * 0.9, `${ctx}: close() resolved after ${Math.round(took)} ms, before the drain timeout`);
          }
          assert.ok(await until(() => g.gw.h2Sessions() === 0, SLACK_MS), `${ctx}: ${g.gw.h2Sessions()} HTTP/2 sessions still open after close()`);
          assert.equal(g.gw.ctx.inflight, 0, `${ctx}: requests still in flight after close()`);
          assert.ok(await until(() => upstreamBy.get(path)!.closed || finishes, SLACK_MS), `${ctx}: the upstream connection of the cut stream is still open`);
        } finally {
          s.destroy();
          await g.close();
        }
      }
    });
  });
});

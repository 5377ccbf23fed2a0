import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { accessRecord, startOneUpstreamGateway, type LogLine, type TestGateway } from '../helpers/gateway.js';
import { h2session, responseHead } from '../helpers/h2-request.js';
import { E, FLAG, RawH2, T, errorCode, frame, headerBlock } from '../helpers/h2-frames.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { certDir, type CertDir, type TestCa } from '../helpers/tls-certs.js';
import { until as untilEvery } from '../helpers/until.js';

/**
 * Stall hunt on the HTTP/2 front, second round (the first: ./stall-h2.test.ts). States a
 * misbehaving client could hold for ever, each ended by a bounded wait on what must come (the
 * record, the in-flight count back to 0, the upstream connection's close, the client
 * connection's close); a failure names the state held and the seed:
 * - a failure answer the gateway makes itself (502, 504, 503, 404, 408 problem pages) written into
 *   a stream whose flow-control window the client keeps shut (found: held for ever, nothing
 *   timed it; fixed: the send timeout applies);
 * - a client that stops reading TCP altogether while one or several streams answer (found: the
 *   send timeout reset each stream, but the RST_STREAM was never written and the streams never
 *   closed; fixed: such a connection is cut, gateway/h2.ts StuckResets);
 * - a graceful drain while such a client stays (found: the drain timeout destroyed its session,
 *   but Node's destroy waits for a write that never ends, and close() never resolved; fixed:
 *   a destroyed session's connection still open a second later is cut);
 * - guards, found not to stall: PINGs or SETTINGS by the tens of thousands with nothing read
 *   (nghttp2's bound on queued ACKs closes the connection); a header block left open while other frames come (PING,
 *   SETTINGS, WINDOW_UPDATE, PRIORITY: nghttp2 answers GOAWAY PROTOCOL_ERROR), or kept open by
 *   CONTINUATIONs without END_HEADERS; a session with no stream kept busy by PING, SETTINGS,
 *   PRIORITY or WINDOW_UPDATE (they do not restart its idle timer: Node calls into JavaScript
 *   for a PING or a PRIORITY only when the session or stream has a 'ping' / 'priority' listener,
 *   and its handler restarts the timer; a listener added one day would let PINGs hold an idle
 *   session for ever, which this guard would catch); an ended answer whose window
 *   the client opens a few bytes at a time (the stream's queue moves by whole chunks, so the
 *   send timeout sees no progress).
 *
 * The upstream is a raw TCP server that answers by the request path (all under `/up/`, the
 * route's prefix; other paths get the gateway's 404):
 * - `/up/len/<n>/…`: a 200 with an n-byte body, all at once;
 * - `/up/close/…`: the connection closed without an answer (502);
 * - `/up/trickle/…`: a chunked 200 that ticks for ever (holds the cluster's one slot: 503);
 * - anything else: nothing (504 at the cluster's response timeout).
 */

const SEND_MS = 300;
const RESPONSE_MS = 300;
const KEEPALIVE_MS = 300;
const SLACK_MS = 3000;

interface UpConn {
  socket: Socket;
  closed: boolean;
}
const upstreamBy = new Map<string, UpConn>();
const upstreamSockets = new Set<Socket>();
let upstream: Server;

before(async () => {
  upstream = createServer((s) => {
    upstreamSockets.add(s);
    s.on('error', () => {});
    let buf = '';
    let inHead = true;
    s.on('data', (d: Buffer) => {
      if (!inHead) return;
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      inHead = false;
      const path = buf.slice(0, end).split(' ')[1]!;
      buf = '';
      const conn: UpConn = { socket: s, closed: false };
      upstreamBy.set(path, conn);
      s.once('close', () => {
        conn.closed = true;
        upstreamSockets.delete(s);
      });
      const parts = path.split('/');
      if (parts[2] === 'len') {
        const n = Number(parts[3]);
        s.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${n}\r\n\r\n`), Buffer.alloc(n, 0x61)]));
        inHead = true;
      } else if (parts[2] === 'close') {
        s.destroy();
      } else if (parts[2] === 'trickle') {
        s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
        const t = setInterval(() => (conn.closed ? clearInterval(t) : s.write('4\r\ntick\r\n')), 40);
      }
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
});

after(async () => {
  for (const s of upstreamSockets) s.destroy();
  await new Promise<void>((r) => upstream.close(() => r()));
});

/** Bounded polling for states nothing announces (an in-flight count), every 5 ms. */
const until = (ok: () => boolean, ms: number): Promise<boolean> => untilEvery(ok, ms, 5);

function h2gateway(listener: Record<string, unknown> = {}, cluster: Record<string, unknown> = {}): Promise<TestGateway> {
  return startOneUpstreamGateway((upstream.address() as AddressInfo).port, {
    listener: { http2: { h2c: true }, sendTimeout: `${SEND_MS}ms`, clientBodyTimeout: `${SEND_MS}ms`, keepAliveTimeout: `${KEEPALIVE_MS}ms`, ...listener },
    cluster: { timeouts: { response: '20s', idle: '20s' }, ...cluster },
    route: { match: { pathPrefix: '/up' } },
  });
}




describe('HTTP/2: a failure answer of the gateway written into a stream whose window the client keeps shut', () => {
  let g: TestGateway;
  before(async () => {
    // One slot, no queue: a request while the slot is held gets the cluster's 503.
    g = await h2gateway({}, { limits: { maxConcurrent: 1, maxQueued: 0 }, timeouts: { response: `${RESPONSE_MS}ms`, idle: '20s' } });
  });
  after(() => g.close());

  const kinds = ['502 upstream closed', '504 response timeout', '503 no slot', '404 no route', '408 body stopped'] as const;
  test('the send timeout ends the request: recorded, in-flight count back, stream reset (seeded over failures and Accept)', { timeout: 90_000 }, async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      const cases = [...kinds, rand.pick(kinds), rand.pick(kinds)];
      for (const [i, kind] of cases.entries()) {
        const accept = rand.pick([undefined, 'application/json', 'text/html', 'application/problem+json', '*/*']);
        const status = Number(kind.slice(0, 3));
        const path =
          kind === '502 upstream closed'
            ? `/up/close/${rand.seed}/${i}`
            : kind === '504 response timeout' || kind === '408 body stopped'
              ? `/up/wait/${rand.seed}/${i}`
              : kind === '404 no route'
                ? `/other/${rand.seed}/${i}`
                : `/up/x/${rand.seed}/${i}`;
        const ctx = `seed ${rand.seed}, case ${i}: ${kind}, accept ${accept ?? '(none)'}`;
        // The 503: another client holds the cluster's one slot with an answer that never ends.
        const holder = kind === '503 no slot' ? h2session(g.url) : undefined;
        const held = holder?.request({ ':path': `/up/trickle/${rand.seed}/${i}` });
        held?.on('error', () => {});
        held?.resume();
        if (held !== undefined) await responseHead(held, `${ctx} (the holder)`);
        const s = h2session(g.url, 0);
        try {
          // The 408: a POST whose body stops (clientBodyTimeout, here the send timeout's length).
          const post = kind === '408 body stopped';
          const req = s.request({ ':path': path, ...(accept !== undefined ? { accept } : {}), ...(post ? { ':method': 'POST', 'content-length': '100000' } : {}) }, { endStream: !post });
          req.on('error', () => {});
          if (post) req.write(Buffer.alloc(1 + rand.int(5000), 0x62));
          const head = await responseHead(req, ctx);
          assert.equal(head[':status'], status, ctx);
          const id = String(head['x-request-id']);
          const closed = new Promise<number>((r) => req.once('close', () => r(req.rstCode ?? -1)));
          // The client never opens its window: the problem page stays queued in the stream.
          const t0 = performance.now();
          const line = await accessRecord(g, (l) => l.requestId === id, SEND_MS + SLACK_MS);
          assert.ok(
            line,
            `${ctx}: ${Math.round(performance.now() - t0)} ms after the head, the client's window shut (send timeout ${SEND_MS} ms), the ${status} is still held: no access-log line (in flight ${g.gw.ctx.inflight})`,
          );
          assert.equal(line.status, status, `${ctx}: ${JSON.stringify(line)}`);
          assert.equal(line.endedBy, 'client', `${ctx}: ${JSON.stringify(line)}`);
          const code = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-2), SLACK_MS))]);
          assert.ok(code > 0, `${ctx}: the client's stream ${code === -2 ? 'is still open' : 'closed without RST_STREAM'} after the request ended`);
          held?.close(8);
          assert.ok(await until(() => g.gw.ctx.inflight === 0, SLACK_MS), `${ctx}: ${g.gw.ctx.inflight} requests still in flight`);
        } finally {
          s.destroy();
          holder?.destroy();
        }
      }
    });
  });

  test('guard: the same failures answered to a HEAD (no body) or to a client that opens its window are recorded as answered (seeded)', { timeout: 60_000 }, async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let i = 0; i < 4; i++) {
        const kind = rand.pick(['502 upstream closed', '404 no route'] as const);
        const headOnly = rand.next() < 0.5;
        const path = kind === '502 upstream closed' ? `/up/close/${rand.seed}/g${i}` : `/other/${rand.seed}/g${i}`;
        const ctx = `seed ${rand.seed}, guard case ${i}: ${kind}, ${headOnly ? 'HEAD, window 0' : 'GET, default window'}`;
        const s = h2session(g.url, headOnly ? 0 : undefined);
        try {
          const req = s.request({ ':path': path, ':method': headOnly ? 'HEAD' : 'GET' });
          req.on('error', () => {});
          req.resume();
          const head = await responseHead(req, ctx);
          const id = String(head['x-request-id']);
          const line = await accessRecord(g, (l) => l.requestId === id, SLACK_MS);
          assert.ok(line, `${ctx}: no access-log line`);
          assert.equal(line.status, Number(kind.slice(0, 3)), ctx);
          assert.notEqual(line.endedBy, 'client', `${ctx}: an answer the client could take was cut: ${JSON.stringify(line)}`);
        } finally {
          s.destroy();
        }
      }
      assert.ok(await until(() => g.gw.ctx.inflight === 0, SLACK_MS), `${g.gw.ctx.inflight} requests still in flight`);
    });
  });
});

/** SETTINGS_INITIAL_WINDOW_SIZE (0x4) at its largest, and the connection window opened as far. */
function bigWindows(): Buffer {
  const settings = Buffer.alloc(6);
  settings.writeUInt16BE(0x4, 0);
  settings.writeUInt32BE(0x7fffffff, 2);
  const inc = Buffer.alloc(4);
  inc.writeUInt32BE(0x7fffffff - 65_535, 0);
  return Buffer.concat([frame(T.SETTINGS, 0, 0, settings), frame(T.WINDOW_UPDATE, 0, 0, inc)]);
}

describe('HTTP/2: a client that stops reading TCP while streams answer (its windows wide open)', () => {
  let g: TestGateway;
  /** The same over TLS (ALPN h2): the session's connection is the TLS socket. */
  let tlsGateway: TestGateway;
  let ca: TestCa;
  let dir: CertDir;
  before(async () => {
    g = await h2gateway();
    dir = certDir();
    ca = dir.ca('stall-h2-client CA');
    const leaf = ca.issue('localhost', { dns: ['localhost'], ip: ['127.0.0.1'] });
    tlsGateway = await h2gateway({ http2: {}, tls: { certificates: [{ cert: leaf.certFile, key: leaf.keyFile }] } });
  });
  after(async () => {
    await g.close();
    await tlsGateway.close();
    dir.remove();
  });

  test('every stream is ended by the send timeout and recorded, the upstream connections let go of, the connection closed (seeded over stream counts and sizes, h2c and TLS)', { timeout: 120_000 }, async () => {
    const gw = g;
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let i = 0; i < 4; i++) {
        const tls = i % 2 === 1;
        const g = tls ? tlsGateway : gw;
        const streams = 1 + rand.int(3);
        // Far more than the loopback socket buffers of both ends can hold.
        const sizes = Array.from({ length: streams }, () => 12 * 1024 * 1024 + rand.int(8 * 1024 * 1024));
        const ctx = `seed ${rand.seed}, case ${i} (${tls ? 'TLS' : 'h2c'}): ${streams} stream(s) of ${sizes.map((n) => Math.round(n / 1024)).join(', ')} KiB, the client reading nothing`;
        const c = new RawH2(g.port, tls ? { ca: ca.cert, servername: 'localhost' } : undefined);
        try {
          if (tls) await new Promise((r) => c.socket.once('secureConnect', r));
          c.socket.pause();
          const paths = sizes.map((n, k) => `/up/len/${n}/${rand.seed}/${i}/${k}`);
          await c.write(Buffer.concat([bigWindows(), ...paths.map((p, k) => frame(T.HEADERS, FLAG.END_STREAM | FLAG.END_HEADERS, 1 + 2 * k, headerBlock({ path: p })))]));
          assert.ok(await until(() => paths.every((p) => upstreamBy.has(p)), 5000), `${ctx}: the requests did not all reach the upstream`);
          const t0 = performance.now();
          const all = await until(() => paths.every((p) => g.logs.some((l) => l.type === 'access' && l.path === p)), SEND_MS + SLACK_MS);
          const recorded = paths.filter((p) => g.logs.some((l) => l.type === 'access' && l.path === p)).length;
          assert.ok(all, `${ctx}: ${Math.round(performance.now() - t0)} ms on, ${recorded} of ${streams} requests recorded (send timeout ${SEND_MS} ms); in flight ${g.gw.ctx.inflight}, sessions ${g.gw.h2Sessions()}`);
          for (const p of paths) {
            const line = g.logs.find((l) => l.type === 'access' && l.path === p)!;
            assert.equal(line.endedBy, 'client', `${ctx}: ${JSON.stringify(line)}`);
          }
          assert.ok(await until(() => paths.every((p) => upstreamBy.get(p)!.closed), SLACK_MS), `${ctx}: an upstream connection is still open after its request ended`);
          assert.ok(await until(() => g.gw.ctx.inflight === 0, SLACK_MS), `${ctx}: ${g.gw.ctx.inflight} requests still in flight`);
          assert.ok(await until(() => g.gw.h2Sessions() === 0, KEEPALIVE_MS + SLACK_MS), `${ctx}: the session of a client that reads nothing is still open (${g.gw.h2Sessions()} sessions)`);
        } finally {
          c.destroy();
        }
      }
    });
  });
});

describe('HTTP/2: a client that reads no TCP at all and sends frames the gateway must acknowledge', () => {
  let g: TestGateway;
  before(async () => {
    g = await h2gateway({ sendTimeout: '30s', keepAliveTimeout: '30s' });
  });
  after(() => g.close());

  test('guard: PINGs or SETTINGS by the tens of thousands, their ACKs never read: the connection is closed (nghttp2 bounds the queued ACKs), not held (seeded)', { timeout: 90_000 }, async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let i = 0; i < 3; i++) {
        const settings = rand.next() < 0.4;
        const count = 50_000 + rand.int(150_000);
        const ctx = `seed ${rand.seed}, case ${i}: ${count} ${settings ? 'SETTINGS' : 'PING'} frames in one write, nothing read`;
        const one = settings ? frame(T.SETTINGS, 0, 0) : frame(T.PING, 0, 0, Buffer.alloc(8, 1 + rand.int(200)));
        const c = new RawH2(g.port);
        try {
          c.socket.pause();
          void c.write(Buffer.concat(Array.from({ length: count }, () => one)));
          const t0 = performance.now();
          assert.ok(await until(() => g.gw.h2Sessions() === 0, SLACK_MS), `${ctx}: the session is still open ${Math.round(performance.now() - t0)} ms on`);
          // The client reads again: what was queued for it, then the connection's end.
          c.socket.resume();
          assert.ok(await c.closedWithin(SLACK_MS), `${ctx}: the gateway's session is gone but the connection is still open`);
        } finally {
          c.destroy();
        }
      }
    });
  });
});

describe('HTTP/2: graceful drain while a client reads no TCP at all', () => {
  test('close(ms) resolves soon after the drain timeout: the session destroyed there is not left waiting for a write that never ends (seeded)', { timeout: 90_000 }, async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let i = 0; i < 3; i++) {
        const drainMs = 200 + rand.int(400);
        const streams = 1 + rand.int(2);
        const paths = Array.from({ length: streams }, (_, k) => `/up/len/${12 * 1024 * 1024 + rand.int(8 * 1024 * 1024)}/${rand.seed}/drain${i}/${k}`);
        const ctx = `seed ${rand.seed}, case ${i}: drain ${drainMs} ms, ${streams} stream(s) answering, the client reading nothing`;
        // A send timeout far beyond the drain: the drain's own cut is what is tested.
        const g = await h2gateway({ sendTimeout: '30s', keepAliveTimeout: '30s' });
        const c = new RawH2(g.port);
        try {
          c.socket.pause();
          await c.write(Buffer.concat([bigWindows(), ...paths.map((p, k) => frame(T.HEADERS, FLAG.END_STREAM | FLAG.END_HEADERS, 1 + 2 * k, headerBlock({ path: p })))]));
          assert.ok(await until(() => paths.every((p) => upstreamBy.has(p)), 5000), `${ctx}: the requests did not all reach the upstream`);
          const t0 = performance.now();
          const closing = g.gw.close(drainMs).then(() => performance.now() - t0);
          const took = await Promise.race([closing, new Promise<number>((r) => setTimeout(() => r(-1), drainMs + SLACK_MS))]);
          assert.ok(took >= 0, `${ctx}: close(${drainMs}) has not resolved ${drainMs + SLACK_MS} ms on (in flight ${g.gw.ctx.inflight}, sessions ${g.gw.h2Sessions()})`);
          assert.ok(await until(() => g.gw.h2Sessions() === 0, SLACK_MS), `${ctx}: ${g.gw.h2Sessions()} sessions still open after close()`);
          for (const p of paths) assert.ok(g.logs.some((l) => l.type === 'access' && l.path === p && l.endedBy !== 'complete'), `${ctx}: ${p} not recorded as cut`);
        } finally {
          c.destroy();
          await g.close();
        }
      }
    });
  });
});

describe('HTTP/2: a session kept busy without a request', () => {
  let g: TestGateway;
  before(async () => {
    g = await h2gateway();
  });
  after(() => g.close());

  const pings = () => frame(T.PING, 0, 0, Buffer.alloc(8, 7));
  const settings = () => frame(T.SETTINGS, 0, 0);
  const windowUpdate = () => {
    const inc = Buffer.alloc(4);
    inc.writeUInt32BE(1, 0);
    return frame(T.WINDOW_UPDATE, 0, 0, inc);
  };
  const priority = () => frame(2 /* PRIORITY */, 0, 3, Buffer.from([0, 0, 0, 0, 15]));
  const keepers = { PING: pings, SETTINGS: settings, 'WINDOW_UPDATE (stream 0)': windowUpdate, 'PRIORITY (an idle stream)': priority } as const;
  type Keeper = keyof typeof keepers;

  /** Send `make()` every `every` ms until the connection closes or `ms` pass; true when it closed. */
  async function keepBusy(c: RawH2, make: () => Buffer, every: number, ms: number): Promise<boolean> {
    const t0 = performance.now();
    while (!c.closed && performance.now() - t0 < ms) {
      await c.write(make());
      await c.until(() => c.closed, every);
    }
    return c.closed;
  }

  test('guard: a header block left open (HEADERS without END_HEADERS), then other frames: the connection is closed (seeded)', { timeout: 90_000 }, async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      const names = Object.keys(keepers) as Keeper[];
      for (let i = 0; i < 6; i++) {
        const keeper = i < names.length ? names[i]! : rand.pick(names);
        const block = headerBlock({ path: `/up/len/10/${rand.seed}/hb${i}`, extra: [['x-pad', 'p'.repeat(1 + rand.int(100))]] });
        const cut = 1 + rand.int(block.length - 1);
        const every = Math.round(KEEPALIVE_MS / (2 + rand.int(3)));
        const ctx = `seed ${rand.seed}, case ${i}: HEADERS cut at ${cut} of ${block.length}, then ${keeper} every ${every} ms`;
        const c = new RawH2(g.port);
        try {
          await c.write(frame(T.HEADERS, FLAG.END_STREAM, 1, block.subarray(0, cut)));
          const t0 = performance.now();
          const closed = await keepBusy(c, keepers[keeper], every, 2 * KEEPALIVE_MS + SLACK_MS);
          assert.ok(closed, `${ctx}: the connection is still open ${Math.round(performance.now() - t0)} ms on (keepAliveTimeout ${KEEPALIVE_MS} ms); sessions ${g.gw.h2Sessions()}`);
          // RFC 9113 §6.10: any frame but the CONTINUATION of the open block is a connection error.
          const goaway = c.goaway();
          assert.ok(goaway !== undefined && errorCode(goaway) === E.PROTOCOL_ERROR, `${ctx}: closed with ${goaway === undefined ? 'no GOAWAY' : `GOAWAY ${errorCode(goaway)}`}, not GOAWAY PROTOCOL_ERROR`);
        } finally {
          c.destroy();
        }
      }
    });
  });

  test('guard: a header block kept open by CONTINUATION frames without END_HEADERS (empty or a byte of the block each): the connection is closed (seeded)', { timeout: 90_000 }, async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let i = 0; i < 4; i++) {
        const block = headerBlock({ path: `/up/len/10/${rand.seed}/cf${i}`, extra: [['x-pad', 'p'.repeat(100 + rand.int(27))]] });
        const cut = 1 + rand.int(20);
        const empty = rand.next() < 0.5;
        const every = Math.round(KEEPALIVE_MS / (2 + rand.int(3)));
        const ctx = `seed ${rand.seed}, case ${i}: HEADERS cut at ${cut} of ${block.length}, then ${empty ? 'empty CONTINUATIONs' : 'one byte of the block per CONTINUATION'} every ${every} ms`;
        const c = new RawH2(g.port);
        try {
          await c.write(frame(T.HEADERS, FLAG.END_STREAM, 1, block.subarray(0, cut)));
          let at = cut;
          const t0 = performance.now();
          const closed = await keepBusy(c, () => frame(9 /* CONTINUATION */, 0, 1, empty || at >= block.length - 1 ? Buffer.alloc(0) : block.subarray(at, ++at)), every, 2 * KEEPALIVE_MS + SLACK_MS);
          assert.ok(closed, `${ctx}: the connection is still open ${Math.round(performance.now() - t0)} ms on (keepAliveTimeout ${KEEPALIVE_MS} ms); sessions ${g.gw.h2Sessions()}`);
          assert.equal(g.gw.ctx.inflight, 0, `${ctx}: a request of a header block never ended is in flight`);
        } finally {
          c.destroy();
        }
      }
    });
  });

  test('guard: no stream open, only PING, SETTINGS, PRIORITY or WINDOW_UPDATE inside keepAliveTimeout: the session is closed as idle (seeded)', { timeout: 90_000 }, async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      const names = Object.keys(keepers) as Keeper[];
      for (let i = 0; i < 6; i++) {
        const keeper = i < names.length ? names[i]! : rand.pick(names);
        const afterRequest = rand.next() < 0.5;
        const every = Math.round(KEEPALIVE_MS / (2 + rand.int(3)));
        const ctx = `seed ${rand.seed}, case ${i}: ${afterRequest ? 'one request answered, then' : 'no request,'} ${keeper} every ${every} ms`;
        const c = new RawH2(g.port);
        try {
          if (afterRequest) {
            await c.write(frame(T.HEADERS, FLAG.END_STREAM | FLAG.END_HEADERS, 1, headerBlock({ path: `/up/len/10/${rand.seed}/idle${i}` })));
            assert.ok(await c.until((fs) => fs.some((f) => f.stream === 1 && (f.flags & FLAG.END_STREAM) !== 0), 5000), `${ctx}: the request was not answered`);
          }
          const t0 = performance.now();
          const closed = await keepBusy(c, keepers[keeper], every, 2 * KEEPALIVE_MS + SLACK_MS);
          assert.ok(closed, `${ctx}: the session is still open ${Math.round(performance.now() - t0)} ms on without a stream (keepAliveTimeout ${KEEPALIVE_MS} ms); sessions ${g.gw.h2Sessions()}`);
          assert.ok(c.goaway() !== undefined, `${ctx}: closed without GOAWAY`);
        } finally {
          c.destroy();
        }
      }
    });
  });
});

describe('HTTP/2: a client that opens its stream window a few bytes at a time (data dribble)', () => {
  let g: TestGateway;
  before(async () => {
    g = await h2gateway();
  });
  after(() => g.close());

  /** SETTINGS_INITIAL_WINDOW_SIZE 0: nothing of any answer goes until the client says so. */
  function shutWindows(): Buffer {
    const settings = Buffer.alloc(6);
    settings.writeUInt16BE(0x4, 0);
    settings.writeUInt32BE(0, 2);
    return frame(T.SETTINGS, 0, 0, settings);
  }

  test('guard: an ended answer taken a few bytes per WINDOW_UPDATE is still cut by the send timeout, not held for its length × sendTimeout (seeded)', { timeout: 90_000 }, async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let i = 0; i < 4; i++) {
        const size = 4000 + rand.int(60_000);
        const step = 1 + rand.int(64);
        const every = Math.round(SEND_MS / (2 + rand.int(3)));
        const path = `/up/len/${size}/${rand.seed}/drip${i}`;
        const ctx = `seed ${rand.seed}, case ${i}: a ${size}-byte answer, the stream window opened by ${step} bytes every ${every} ms`;
        const c = new RawH2(g.port);
        try {
          await c.write(Buffer.concat([shutWindows(), frame(T.HEADERS, FLAG.END_STREAM | FLAG.END_HEADERS, 1, headerBlock({ path }))]));
          assert.ok(await c.until((fs) => fs.some((f) => f.type === T.HEADERS && f.stream === 1), 5000), `${ctx}: no response head`);
          const inc = Buffer.alloc(4);
          inc.writeUInt32BE(step, 0);
          const t0 = performance.now();
          let line: LogLine | undefined;
          // At this pace the whole answer would take size / step × every ms (minutes).
          while ((line = g.logs.find((l) => l.type === 'access' && l.path === path)) === undefined && !c.closed && performance.now() - t0 < 4 * SEND_MS + SLACK_MS) {
            await c.write(frame(T.WINDOW_UPDATE, 0, 1, inc));
            await c.until(() => c.closed, every);
          }
          line ??= await accessRecord(g, (l) => l.path === path, 100);
          assert.ok(line, `${ctx}: ${Math.round(performance.now() - t0)} ms on, the answer is still held (send timeout ${SEND_MS} ms): no access-log line (in flight ${g.gw.ctx.inflight})`);
          assert.equal(line.endedBy, 'client', `${ctx}: ${JSON.stringify(line)}`);
          assert.ok(await c.until((fs) => fs.some((f) => f.type === T.RST_STREAM && f.stream === 1), SLACK_MS), `${ctx}: the stream was not reset`);
          assert.ok(await until(() => g.gw.ctx.inflight === 0, SLACK_MS), `${ctx}: ${g.gw.ctx.inflight} requests still in flight`);
        } finally {
          c.destroy();
        }
      }
    });
  });
});

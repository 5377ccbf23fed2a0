import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as h2connect, constants, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { Agent, request } from 'undici';
import { LAB_FAULTS, startLab, type Lab, type LabFault } from '../../src/lab/index.js';
import { labGatewayConfig } from '../../src/cli/demo.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/until.js';
import { GUARD_MS } from '../helpers/time-bounds.js';
import { h2request, type H2Answer } from '../helpers/h2-request.js';
import { certDir, type CertDir, type TestCa, type IssuedCert } from '../helpers/tls-certs.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * HTTP/2 downstream (ALPN h2 on a TLS listener): the failure lab's faults give the same
 * statuses and Proxy-Status types over h2 as over HTTP/1.1; stream resets are named; the
 * rapid-reset attack closes the abuser's connection; the concurrent-stream limit is announced.
 */

let dir: CertDir;
let ca: TestCa;
let leaf: IssuedCert;
let lab: Lab;
let gw: TestGateway;

const PREFIX: Record<string, string> = { http: '', refused: '/_refused', 'tls-self-signed': '/_tls-self', 'tls-ca': '/_tls-ca' };

before(async () => {
  dir = certDir();
  ca = dir.ca('H2 CA');
  leaf = ca.issue('localhost', { dns: ['localhost'], ip: ['127.0.0.1'] });
  lab = await startLab({ tls: true });
  const caFile = join(dir.dir, 'lab-ca.pem');
  writeFileSync(caFile, lab.caPem!);
  gw = await startTestGateway({
    ...labGatewayConfig(lab, caFile, { connect: '1s', response: '600ms', idle: '600ms' }),
    listeners: [{ address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: leaf.certFile, key: leaf.keyFile }] }, http2: { maxConcurrentStreams: 50, maxResets: 30, resetWindow: '10s' } }],
  });
});

after(async () => {
  await gw?.close();
  await lab?.close();
  dir?.remove();
});

function errorType(proxyStatus: string | string[] | undefined): string | undefined {
  const v = Array.isArray(proxyStatus) ? proxyStatus.join(', ') : proxyStatus;
  return v ? /;error=([a-z_]+)/.exec(v)?.[1] : undefined;
}

function session(): ClientHttp2Session {
  const s = h2connect(gw.url, { ca: ca.cert, servername: 'localhost' });
  s.on('error', () => {});
  return s;
}

/** Every answer read whole, its bytes as they are (latin1), a reset after the head reported. */
function h2get(s: ClientHttp2Session, path: string, headers: Record<string, string> = {}): Promise<H2Answer> {
  return h2request(s, path, { headers, encoding: 'latin1', allowReset: true });
}

describe('over h2, the same pipeline', () => {
  let s: ClientHttp2Session;
  let h1: Agent;
  before(() => {
    s = session();
    h1 = new Agent({ connect: { ca: ca.cert, servername: 'localhost' } });
  });
  after(async () => {
    s.close();
    await h1.close();
  });

  test('ALPN h2 is negotiated, the request is proxied, the record says HTTP/2', async () => {
    const r = await h2get(s, '/ok');
    assert.equal(r.status, 200, r.body);
    assert.equal(s.alpnProtocol, 'h2');
    const line = await gw.logFor(String(r.headers['x-request-id']));
    assert.equal(line.httpVersion, '2.0');
    assert.equal(line.status, 200);
  });

  test('the concurrent-stream limit is announced in SETTINGS', async () => {
    await h2get(s, '/ok');
    assert.equal(s.remoteSettings.maxConcurrentStreams, 50);
  });

  test('the upstream sees Host from :authority and no pseudo-headers; cookies joined', async () => {
    const r = await h2get(s, '/echo', { cookie: 'a=1', 'x-one': 'v' });
    assert.equal(r.status, 200);
    const echo = JSON.parse(r.body) as { headers: Record<string, string> };
    assert.match(String(echo.headers.host), /^(127\.0\.0\.1|localhost):\d+$/);
    assert.equal(Object.keys(echo.headers).some((k) => k.startsWith(':')), false);
    assert.equal(echo.headers['x-forwarded-proto'], 'https');
  });

  const named = LAB_FAULTS.filter((f) => f.expectType !== undefined && !f.midBody);
  for (const f of named) {
    test(`${f.listener ?? 'http'} ${f.path}: the same status and Proxy-Status type over h2 and HTTP/1.1 (${f.expectStatus} ${f.expectType})`, async () => {
      const path = PREFIX[f.listener ?? 'http'] + f.path;
      const over2 = await h2get(s, path);
      const res1 = await request(gw.url + path, { dispatcher: h1 });
      await res1.body.text().catch(() => '');
      assert.equal(over2.status, f.expectStatus, `h2 status for ${path}`);
      assert.equal(res1.statusCode, f.expectStatus, `HTTP/1.1 status for ${path}`);
      assert.equal(errorType(over2.headers['proxy-status']), f.expectType);
      assert.equal(errorType(res1.headers['proxy-status']), f.expectType);
      const line = await gw.logFor(String(over2.headers['x-request-id']));
      assert.equal(line.error, f.expectType);
      assert.equal(line.httpVersion, '2.0');
    });
  }

  const midBody = LAB_FAULTS.filter((f) => f.midBody === true);
  for (const f of midBody) {
    test(`${f.path}: a body cut upstream resets the h2 stream (never a complete-looking body), logged ${f.expectType}`, async () => {
      const r = await h2get(s, f.path);
      assert.equal(r.status, f.expectStatus);
      assert.ok(r.reset !== undefined, 'the stream must end with an error');
      const line = await gw.logFor(String(r.headers['x-request-id']));
      assert.equal(line.error, f.expectType);
    });
  }

  test('404 and OPTIONS * over h2: the gateway\'s own answers', async () => {
    const nf = await h2get(s, '/_none-such', { ':authority': 'nowhere.test' });
    // The lab route takes every path; a 404 comes from a host no route serves only when hosts are routed: check OPTIONS *.
    assert.ok(nf.status > 0);
    const opt = await h2get(s, '*', { ':method': 'OPTIONS' });
    assert.equal(opt.status, 204);
    assert.match(String(opt.headers['proxy-status']), /error=proxy_internal_response/);
  });

  test('a stream the client resets is recorded as ended by the client, with the RST_STREAM code', async () => {
    const before = gw.gw.ctx.inflight;
    const req = s.request({ ':path': '/slow?ms=2000' });
    req.on('error', () => {});
    // The request is in flight at the gateway before the client resets it (it slept 100 ms,
    // which on a loaded machine could end before the gateway had the stream, another case:
    // test/gateway/h2-reset-before-dial.test.ts). A count without an event: polled, bounded.
    assert.ok(await until(() => gw.gw.ctx.inflight > before, GUARD_MS), 'the request in flight');
    req.close(constants.NGHTTP2_CANCEL);
    const line = await gw.logWhere((l) => l.path === '/slow?ms=2000' && l.endedBy === 'client', GUARD_MS, 'the record of the reset stream');
    assert.match(String(line.detail), /RST_STREAM CANCEL/);
  });
});

describe('a client that closes its connection mid-request', () => {
  test('the gateway survives (finding: it threw ERR_HTTP2_SOCKET_UNBOUND and the process died), cancels the upstream request and records it as ended by the client', async () => {
    const s = session();
    const path = '/slow?ms=2500&close=1';
    const req = s.request({ ':path': path });
    req.on('error', () => {});
    const until = async (cond: () => boolean, what: string): Promise<void> => {
      const deadline = Date.now() + 3000;
      while (!cond()) {
        if (Date.now() > deadline) throw new Error(`${what} not within 3 s`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    await until(() => gw.gw.ctx.inflight > 0, 'the request in flight');
    const t0 = Date.now();
    s.destroy();
    await until(() => gw.gw.ctx.inflight === 0, 'the request ended');
    // Under 2 s: well before the upstream would answer (2.5 s), with slack for a slow machine.
    assert.ok(Date.now() - t0 < 2000, `ended ${Date.now() - t0} ms after the close (the upstream answers after 2.5 s)`);
    await until(() => gw.logs.some((l) => l.type === 'access' && l.path === path), 'the record');
    const line = gw.logs.find((l) => l.type === 'access' && l.path === path)!;
    assert.equal(line.endedBy, 'client');
    assert.match(String(line.detail), /client (closed the HTTP\/2 connection|reset the HTTP\/2 stream)/);
    const other = session();
    assert.equal((await h2get(other, '/ok')).status, 200);
    other.close();
  });
});

/** RST_STREAM CANCEL as soon as the stream has its id (Node may assign it before or after request() returns). */
function resetOnceOpen(req: ClientHttp2Stream, done: () => void): void {
  const go = (): void => {
    req.close(constants.NGHTTP2_CANCEL);
    done();
  };
  if (req.id !== undefined) go();
  else req.once('ready', go);
}

describe('rapid reset (CVE-2023-44487) is bounded per connection', () => {
  // A gateway of its own: a short window, so a well-behaved client can cancel more than
  // maxResets streams in all (spread over windows) within a test's time.
  let g: TestGateway;
  before(async () => {
    g = await startTestGateway({
      ...labGatewayConfig(lab, join(dir.dir, 'lab-ca.pem'), { connect: '1s', response: '2s', idle: '2s' }),
      listeners: [{ address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: leaf.certFile, key: leaf.keyFile }] }, http2: { maxConcurrentStreams: 100, maxResets: 20, resetWindow: '600ms' } }],
    });
  });
  after(() => g?.close());

  function session2(): ClientHttp2Session {
    const s = h2connect(g.url, { ca: ca.cert, servername: 'localhost' });
    s.on('error', () => {});
    return s;
  }

  // Finding (fixed): the bound fired but the abuser's connection was not always closed, or
  // closed by Node's own bound (GOAWAY INTERNAL_ERROR, no record). Streams reset in the read
  // that opened them were never counted, a deferred close let whole reads through, and a
  // destroy inside nghttp2's send lost the GOAWAY (h2-rapid-reset.test has the raw-frame
  // interleavings).
  test('seeded family of reset rates (Node client): every abuser\'s connection is closed by the gateway (any GOAWAY seen is ENHANCE_YOUR_CALM); one record names it; others are served', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    console.log(`rapid-reset family seed ${rand.seed} (replay: GATEWISE_SEED=${rand.seed})`);
    let recorded = 0;
    await withSeed(rand, async () => {
      for (let round = 0; round < 5; round++) {
        // A rate: streams opened and reset per burst, and a pause (0-2 ms) between bursts.
        const burst = 1 + rand.int(40);
        const pauseMs = rand.int(3);
        const s = session2();
        let code = -1;
        let closed = false;
        s.on('goaway', (c: number) => (code = c));
        s.on('close', () => (closed = true));
        await new Promise<void>((resolve) => s.once('connect', () => resolve()));
        const recordsBefore = g.logs.filter((l) => l.reason === 'h2_rapid_reset').length;
        let opened = 0;
        const t0 = Date.now();
        // Bounded: at most 2000 streams, at most 5 s.
        while (!closed && code === -1 && !s.destroyed && opened < 2000 && Date.now() - t0 < 5000) {
          const req = s.request({ ':path': '/slow?ms=1000' });
          req.on('error', () => {});
          // Reset once the gateway has the stream (Node emitted it): that is what costs it work.
          resetOnceOpen(req, () => undefined);
          opened++;
          if (opened % burst === 0) await new Promise((r) => setTimeout(r, pauseMs));
        }
        // Closed as the gateway sees it: its session ends when the connection does. The
        // client's own view is not always usable: Node's client, after queueing thousands of
        // streams, can sit with its frames unsent and stop reading while its write is
        // "in progress" (its session showed outboundQueueSize 1919, nothing read), so it
        // may never see the GOAWAY or the close (h2-rapid-reset.test reads every frame).
        const deadline = Date.now() + 20_000;
        while (!closed && g.gw.h2Sessions() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        const rate = `burst ${burst}, pause ${pauseMs} ms, ${opened} streams`;
        assert.ok(closed || g.gw.h2Sessions() === 0, `the abuser's connection was not closed (${rate}; GOAWAY ${code}; records ${g.logs.filter((l) => l.reason === 'h2_rapid_reset').length - recordsBefore})`);
        assert.ok(code === -1 || code === constants.NGHTTP2_ENHANCE_YOUR_CALM, `GOAWAY code ${code} (${rate})`);
        let records = 0;
        while (records <= recordsBefore && Date.now() < deadline + 1000) {
          records = g.logs.filter((l) => l.reason === 'h2_rapid_reset').length;
          if (records <= recordsBefore) await new Promise((r) => setTimeout(r, 10));
        }
        assert.equal(records - recordsBefore, 1, `h2_rapid_reset records (${rate})`);
        recorded++;
        s.destroy();
      }
      assert.equal(recorded, 5);
    });
    const other = session2();
    assert.equal((await h2get(other, '/ok')).status, 200);
    other.close();
  });

  test('a well-behaved client that cancels often, but fewer than maxResets per window, is never cut off', { timeout: 30_000 }, async () => {
    const s = session2();
    let code = -1;
    s.on('goaway', (c: number) => (code = c));
    let cancelled = 0;
    let served = 0;
    // 7 rounds 700 ms apart, each 9 cancels and 20 ordinary requests; 63 cancels in all, three
    // times maxResets. The gateway counts per 600 ms window as it reads the frames, and on a
    // loaded machine a round read late and the next read on time can fall in one window: at 15
    // a round (it was 4 rounds of 15) two rounds made 30 > 20, and the client was cut (seen under
    // load). At 9, two rounds in one window are 18 < 20; three would need 1.4 s squeezed into 0.6.
    for (let w = 0; w < 7; w++) {
      const t0 = Date.now();
      const work: Array<Promise<unknown>> = [];
      for (let i = 0; i < 9; i++) {
        const req = s.request({ ':path': '/slow?ms=300' });
        req.on('error', () => {});
        resetOnceOpen(req, () => cancelled++);
      }
      for (let i = 0; i < 20; i++) work.push(h2get(s, '/ok').then((r) => r.status === 200 && served++));
      await Promise.all(work);
      const left = 700 - (Date.now() - t0);
      if (left > 0) await new Promise((r) => setTimeout(r, left));
    }
    assert.equal(code, -1, 'the gateway sent GOAWAY to a well-behaved client');
    assert.equal(s.closed || s.destroyed, false);
    assert.equal(served, 7 * 20);
    assert.equal(cancelled, 7 * 9);
    assert.equal((await h2get(s, '/ok')).status, 200);
    s.close();
  });
});

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http2, { type ClientHttp2Session } from 'node:http2';
import net, { type AddressInfo, type Socket } from 'node:net';
import { until } from '../helpers/until.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { endedRecords, within } from '../helpers/ended-records.js';
import { certDir, type CertDir, type TestCa } from '../helpers/tls-certs.js';
import { seededRandom, withSeed, type Rand } from '../helpers/seeded.js';

/**
 * A stream the client resets in the same read as its HEADERS is never dialled for. On
 * HTTP/1.1 a client gone before the dial is not dialled and is recorded 499 ended by the
 * client; over HTTP/2, Node emits a stream at its HEADERS, before it reads the RST_STREAM
 * that follows in the same read, and the exchange used to dial the upstream at once: every
 * such stream opened an upstream connection, cancelled before a byte was sent (finding:
 * 20 streams reset by node:http2's client, 20 connections to the origin). The same for the
 * rapid-reset flood (CVE-2023-44487), whose HEADERS+RST_STREAM pairs each dialled until the
 * per-connection budget closed the session. A real node:http2 client against a real lab
 * origin: no stream's record has a try (a try is made as the pool is asked for a connection),
 * and the origin accepts no connection and no request but a sentinel's, answered last.
 */

const MAX_RESETS = 40;
const CODES = [http2.constants.NGHTTP2_CANCEL, http2.constants.NGHTTP2_NO_ERROR, http2.constants.NGHTTP2_INTERNAL_ERROR, http2.constants.NGHTTP2_REFUSED_STREAM];
const NAMES: Record<number, string> = { 0: 'NO_ERROR', 2: 'INTERNAL_ERROR', 7: 'REFUSED_STREAM', 8: 'CANCEL' };

let dir: CertDir;
let ca: TestCa;
let lab: Lab;
let gw: TestGateway;
let tlsPort: number;

before(async () => {
  dir = certDir();
  ca = dir.ca('Reset before dial CA');
  const leaf = ca.issue('localhost', { dns: ['localhost'], ip: ['127.0.0.1'] });
  lab = await startLab();
  const h2 = { maxConcurrentStreams: 1000, maxResets: MAX_RESETS, resetWindow: '60s' };
  gw = await startTestGateway({
    listeners: [
      { address: '127.0.0.1', port: 0, http2: { ...h2, h2c: true } },
      { address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: leaf.certFile, key: leaf.keyFile }] }, http2: h2 },
    ],
    clusters: { lab: { endpoints: [lab.url], outlierDetection: { enabled: false } } },
    routes: [{ cluster: 'lab', retry: { tries: 1 } }],
  });
  tlsPort = (gw.gw.addresses()[1] as { port: number }).port;
});

after(async () => {
  await gw?.close();
  await lab?.close();
  dir?.remove();
});

/**
 * A loopback relay between the client and the gateway that can hold the client's bytes and
 * pass them on in one write: node:http2's client writes a stream's HEADERS and its RST_STREAM
 * in separate socket writes (it flushes before each RST_STREAM), and in one process the
 * gateway may read between them. Held, they reach the gateway in one read, as from a client
 * that sends them together (the precondition of the finding).
 */
class Relay {
  readonly server = net.createServer((s) => this.#accept(s));
  received = 0;
  #held: Buffer[] | undefined;
  #to: Socket | undefined;
  readonly #sockets = new Set<Socket>();
  constructor(readonly target: number) {}
  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return (this.server.address() as AddressInfo).port;
  }
  #accept(from: Socket): void {
    const to = (this.#to = net.connect(this.target, '127.0.0.1'));
    for (const s of [from, to]) {
      this.#sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => this.close());
    }
    to.on('data', (d) => from.write(d));
    from.on('data', (d) => {
      this.received += d.length;
      if (this.#held !== undefined) this.#held.push(d);
      else to.write(d);
    });
  }
  hold(): void {
    this.#held = [];
  }
  release(): void {
    const held = this.#held ?? [];
    this.#held = undefined;
    if (held.length > 0) this.#to?.write(Buffer.concat(held));
  }
  close(): void {
    for (const s of this.#sockets) s.destroy();
    this.server.close();
  }
}

/** A node:http2 session to the gateway through a relay, its SETTINGS exchanged. */
async function connect(tls: boolean): Promise<{ c: ClientHttp2Session; relay: Relay }> {
  const relay = new Relay(tls ? tlsPort : gw.port);
  const port = await relay.listen();
  const c = tls ? http2.connect(`https://localhost:${port}`, { ca: ca.cert }) : http2.connect(`http://127.0.0.1:${port}`);
  c.on('error', () => {});
  c.once('close', () => relay.close());
  await within(new Promise((r) => c.once('remoteSettings', r)), 10_000, 'SETTINGS from the gateway');
  return { c, relay };
}

/** Every stream's RST_STREAM written by the client (each stream closes once its reset is sent) and taken by the relay: passed on in one write. */
async function releaseTogether(c: ClientHttp2Session, relay: Relay, closed: Array<Promise<void>>): Promise<void> {
  await within(Promise.all(closed), 10_000, 'the streams closed at the client');
  assert.ok(await until(() => relay.received >= (c.socket as Socket).bytesWritten, 10_000, 2), 'the relay did not take every byte the client wrote');
  relay.release();
}

/**
 * `n` streams opened and reset in one tick: node:http2 writes each HEADERS and its RST_STREAM
 * in the same write. Not NO_ERROR on a GET: node:http2 resets a stream whose side it has ended
 * with NO_ERROR only after that side's 'finish', in a later write (a reset the gateway cannot
 * see before its dial).
 */
function openAndReset(c: ClientHttp2Session, rand: Rand, tag: string, n: number): Array<{ path: string; code: number; closed: Promise<void> }> {
  const out: Array<{ path: string; code: number; closed: Promise<void> }> = [];
  for (let i = 0; i < n; i++) {
    const path = `/slow?ms=5000&${tag}-${i}`;
    const post = rand.next() < 0.3;
    const code = post ? rand.pick(CODES) : rand.pick(CODES.filter((x) => x !== http2.constants.NGHTTP2_NO_ERROR));
    const st = c.request({ ':path': path, ':method': post ? 'POST' : 'GET' }, { endStream: !post });
    st.on('error', () => {});
    const closed = new Promise<void>((r) => st.once('close', () => r()));
    st.close(code);
    out.push({ path, code, closed });
  }
  return out;
}

/** One request answered on `c`: every start the gateway deferred before it has run by then. */
async function sentinel(c: ClientHttp2Session, tag: string): Promise<void> {
  const st = c.request({ ':path': `/ok?${tag}` });
  st.on('error', () => {});
  st.resume();
  const status = await within(new Promise<number | undefined>((r) => st.once('response', (h) => r(h[':status'] as number))), 10_000, `the answer to /ok?${tag}`);
  assert.equal(status, 200, `/ok?${tag}`);
}

describe('HTTP/2: a stream reset in the read of its HEADERS is never dialled', () => {
  test('seeded family: h2c and TLS, 1–30 streams, GET and POST, any RST_STREAM code → no upstream connection or request, each recorded 499 ended by the client with no try', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    console.log(`reset-before-dial seed ${rand.seed} (replay: GATEWISE_SEED=${rand.seed})`);
    await withSeed(rand, async () => {
      for (let round = 0; round < 8; round++) {
        const tls = rand.next() < 0.5;
        const n = 1 + rand.int(30);
        const tag = `b${rand.seed}r${round}`;
        const what = `round ${round}: ${tls ? 'TLS' : 'h2c'}, ${n} streams`;
        const { c, relay } = await connect(tls);
        const records = endedRecords();
        try {
          const conns0 = lab.stats.connections;
          const reqs0 = lab.stats.requests;
          relay.hold();
          const streams = openAndReset(c, rand, tag, n);
          await releaseTogether(c, relay, streams.map((s) => s.closed));
          for (const s of streams) {
            const r = await within(records.wait((x) => x.path === s.path), 10_000, `the record of ${s.path} (${what})`);
            assert.equal(r.endedBy, 'client', `${s.path}: endedBy (${what})`);
            assert.equal(r.status, 499, `${s.path}: status (${what})`);
            assert.equal(r.attempts.length, 0, `${s.path}: ${r.attempts.length} tries (${what}; code ${s.code}; ${JSON.stringify(r.attempts)}; ${r.method})`);
            assert.equal(r.detail, `the client reset the HTTP/2 stream (RST_STREAM ${NAMES[s.code]})`, `${s.path}: detail (${what})`);
          }
          // The session is still served; by its answer any deferred start has run.
          await sentinel(c, tag);
          assert.equal(lab.stats.requests - reqs0, 1, `the origin saw ${lab.stats.requests - reqs0} requests, the sentinel's only expected (${what})`);
          assert.ok(lab.stats.connections - conns0 <= 1, `the origin accepted ${lab.stats.connections - conns0} connections (${what})`);
        } finally {
          records.close();
          c.destroy();
          relay.close();
        }
      }
    });
  });

  test('seeded family: a rapid-reset flood of HEADERS+RST_STREAM pairs on one session → GOAWAY ENHANCE_YOUR_CALM, no upstream connection or request, bounded records', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    console.log(`reset-before-dial flood seed ${rand.seed} (replay: GATEWISE_SEED=${rand.seed})`);
    await withSeed(rand, async () => {
      for (let round = 0; round < 4; round++) {
        const tls = round % 2 === 1;
        const n = MAX_RESETS + 1 + rand.int(300);
        const tag = `f${rand.seed}r${round}`;
        const what = `round ${round}: ${tls ? 'TLS' : 'h2c'}, ${n} streams`;
        const { c, relay } = await connect(tls);
        const records = endedRecords();
        const other = (await connect(!tls)).c;
        try {
          const conns0 = lab.stats.connections;
          const reqs0 = lab.stats.requests;
          const goaway = new Promise<number>((r) => c.once('goaway', (code: number) => r(code)));
          const closed = new Promise<void>((r) => c.once('close', () => r()));
          relay.hold();
          const streams = openAndReset(c, rand, tag, n);
          await releaseTogether(c, relay, streams.map((s) => s.closed));
          assert.equal(await within(goaway, 10_000, `GOAWAY (${what})`), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, `GOAWAY code (${what})`);
          await within(closed, 10_000, `the abuser's connection closed (${what})`);
          await within(records.wait((x) => x.reason === 'h2_rapid_reset'), 10_000, `the h2_rapid_reset record (${what})`);
          // Another client is served; by its answer any start deferred for the abuser has run.
          await sentinel(other, tag);
          const paths = new Set(streams.map((s) => s.path));
          const flood = gw.logs.filter((l) => l.type === 'access' && paths.has(String(l.path)));
          const tried = flood.filter((l) => (l.attempts ?? []).length > 0).map((l) => `${String(l.path)}: ${JSON.stringify(l.attempts)}`);
          assert.deepEqual(tried, [], `streams of the flood tried upstream (${what})`);
          assert.equal(lab.stats.requests - reqs0, 1, `the origin saw ${lab.stats.requests - reqs0} requests, the sentinel's only expected (${what})`);
          assert.ok(lab.stats.connections - conns0 <= 1, `the origin accepted ${lab.stats.connections - conns0} connections (${what})`);
          assert.ok(flood.length <= MAX_RESETS + 1, `${flood.length} streams of the flood recorded (${what})`);
        } finally {
          records.close();
          c.destroy();
          relay.close();
          other.destroy();
        }
      }
    });
  });
});

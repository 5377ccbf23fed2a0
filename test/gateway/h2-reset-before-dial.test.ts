import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http2, { type ClientHttp2Session } from 'node:http2';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
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
 * origin; dials counted on Node's `net.client.socket` channel (published as the gateway
 * opens an upstream socket), connections and requests at the origin.
 */

const MAX_RESETS = 40;
const CODES = [http2.constants.NGHTTP2_CANCEL, http2.constants.NGHTTP2_NO_ERROR, http2.constants.NGHTTP2_INTERNAL_ERROR, http2.constants.NGHTTP2_REFUSED_STREAM];
const NAMES: Record<number, string> = { 0: 'NO_ERROR', 2: 'INTERNAL_ERROR', 7: 'REFUSED_STREAM', 8: 'CANCEL' };

let dir: CertDir;
let ca: TestCa;
let lab: Lab;
let gw: TestGateway;
let tlsPort: number;
let dials = 0;
const onDial = (): void => {
  dials++;
};

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
  subscribe('net.client.socket', onDial);
});

after(async () => {
  unsubscribe('net.client.socket', onDial);
  await gw?.close();
  await lab?.close();
  dir?.remove();
});

/** A node:http2 session to the gateway, its SETTINGS exchanged (its own socket is dialled before the test counts). */
async function connect(tls: boolean): Promise<ClientHttp2Session> {
  const c = tls ? http2.connect(`https://localhost:${tlsPort}`, { ca: ca.cert }) : http2.connect(`http://127.0.0.1:${gw.port}`);
  c.on('error', () => {});
  await within(new Promise((r) => c.once('remoteSettings', r)), 10_000, 'SETTINGS from the gateway');
  return c;
}

/** `n` streams opened and reset in one tick: node:http2 writes each HEADERS and its RST_STREAM in the same write. */
function openAndReset(c: ClientHttp2Session, rand: Rand, tag: string, n: number): Array<{ path: string; code: number }> {
  const out: Array<{ path: string; code: number }> = [];
  for (let i = 0; i < n; i++) {
    const path = `/slow?ms=5000&${tag}-${i}`;
    const code = rand.pick(CODES);
    const post = rand.next() < 0.3;
    const st = c.request({ ':path': path, ':method': post ? 'POST' : 'GET' }, { endStream: !post });
    st.on('error', () => {});
    st.close(code);
    out.push({ path, code });
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
        const c = await connect(tls);
        const records = endedRecords();
        try {
          const dials0 = dials;
          const conns0 = lab.stats.connections;
          const reqs0 = lab.stats.requests;
          const streams = openAndReset(c, rand, tag, n);
          for (const s of streams) {
            const r = await within(records.wait((x) => x.path === s.path), 10_000, `the record of ${s.path} (${what})`);
            assert.equal(r.endedBy, 'client', `${s.path}: endedBy (${what})`);
            assert.equal(r.status, 499, `${s.path}: status (${what})`);
            assert.equal(r.attempts.length, 0, `${s.path}: ${r.attempts.length} tries (${what})`);
            assert.equal(r.detail, `the client reset the HTTP/2 stream (RST_STREAM ${NAMES[s.code]})`, `${s.path}: detail (${what})`);
          }
          assert.equal(dials - dials0, 0, `the gateway dialled ${dials - dials0} upstream connections for ${n} reset streams (${what})`);
          // The session is still served; by its answer any deferred start has run.
          await sentinel(c, tag);
          assert.equal(lab.stats.requests - reqs0, 1, `the origin saw ${lab.stats.requests - reqs0} requests, the sentinel's only expected (${what})`);
          assert.ok(lab.stats.connections - conns0 <= 1, `the origin accepted ${lab.stats.connections - conns0} connections (${what})`);
        } finally {
          records.close();
          c.destroy();
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
        const c = await connect(tls);
        const records = endedRecords();
        const other = await connect(!tls);
        try {
          const dials0 = dials;
          const conns0 = lab.stats.connections;
          const reqs0 = lab.stats.requests;
          const goaway = new Promise<number>((r) => c.once('goaway', (code: number) => r(code)));
          const closed = new Promise<void>((r) => c.once('close', () => r()));
          const streams = openAndReset(c, rand, tag, n);
          assert.equal(await within(goaway, 10_000, `GOAWAY (${what})`), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, `GOAWAY code (${what})`);
          await within(closed, 10_000, `the abuser's connection closed (${what})`);
          await within(records.wait((x) => x.reason === 'h2_rapid_reset'), 10_000, `the h2_rapid_reset record (${what})`);
          // Another client is served; by its answer any start deferred for the abuser has run.
          await sentinel(other, tag);
          assert.ok(dials - dials0 <= 1, `the gateway dialled ${dials - dials0} upstream connections during a flood of ${n} reset streams (${what})`);
          assert.equal(lab.stats.requests - reqs0, 1, `the origin saw ${lab.stats.requests - reqs0} requests, the sentinel's only expected (${what})`);
          assert.ok(lab.stats.connections - conns0 <= 1, `the origin accepted ${lab.stats.connections - conns0} connections (${what})`);
          const paths = new Set(streams.map((s) => s.path));
          const recorded = gw.logs.filter((l) => l.type === 'access' && paths.has(String(l.path))).length;
          assert.ok(recorded <= MAX_RESETS + 1, `${recorded} streams of the flood recorded (${what})`);
        } finally {
          records.close();
          c.destroy();
          other.destroy();
        }
      }
    });
  });
});

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { constants, createSecureServer, createServer, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { between, seededRun } from '../helpers/seeded.js';
import { until } from '../helpers/until.js';
import { certDir, type CertDir } from '../helpers/tls-certs.js';

/**
 * A graceful GOAWAY (RFC 9113 §6.8: `GOAWAY(NO_ERROR, last-stream-id)`, as Envoy's and gRPC's
 * `max_connection_age` or a rolling restart send it): the streams at or below last-stream-id
 * go on to their end, and only new streams must go elsewhere. undici's HTTP/2 client destroyed
 * the session on any GOAWAY and failed every stream on it, so a POST the upstream was still
 * answering became a 502 (and, being maybe processed, could not be retried). The upstream here
 * is a real node:http2 server, TLS with ALPN h2 and h2c both: it holds N POSTs in flight on one
 * connection (seeded N, seeded body sizes), sends the GOAWAY with a last-stream-id that covers
 * all of them (or, in the second seeded family, only the lowest M), then answers the covered
 * ones. Every covered POST gets the upstream's answer, sent once; every uncovered one was not
 * processed (§8.7) and is sent again on a new connection: the upstream sees its body twice,
 * and the client gets the second answer.
 */

interface Arrival {
  readonly session: Http2Session;
  readonly stream: ServerHttp2Stream;
  readonly sha: string;
}

interface CaseState {
  /** How many POSTs of the case are held before the GOAWAY. */
  readonly n: number;
  /** How many of them (lowest stream ids first) the GOAWAY's last-stream-id covers. */
  readonly cover: number;
  /** Covered ones (by rank) the upstream resets (RST_STREAM INTERNAL_ERROR) after the GOAWAY instead of answering. */
  readonly reset: ReadonlySet<number>;
  readonly held: Arrival[];
  acted: boolean;
  /** By body sha: how many times the upstream received that body whole. */
  readonly seen: Map<string, number>;
  /** By body sha: the sessions it came on. */
  readonly sessions: Map<string, Http2Session[]>;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function answer(a: Arrival): void {
  try {
    a.stream.respond({ ':status': 200, 'content-type': 'text/plain' });
    a.stream.end(a.sha);
  } catch {
    // Cut by the client.
  }
}

function act(st: CaseState): void {
  st.acted = true;
  const held = [...st.held].sort((x, y) => x.stream.id! - y.stream.id!);
  const session = held[0]!.session;
  const last = held[st.cover - 1]!.stream.id!;
  session.goaway(constants.NGHTTP2_NO_ERROR, last);
  // The covered streams are answered after the GOAWAY has gone out.
  setImmediate(() => {
    held.slice(0, st.cover).forEach((a, rank) => {
      if (st.reset.has(rank)) a.stream.close(constants.NGHTTP2_INTERNAL_ERROR);
      else answer(a);
    });
  });
}

function onStream(cases: Map<string, CaseState>) {
  return (stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void => {
    stream.on('error', () => {});
    const st = cases.get(String(headers['x-case']));
    if (st === undefined) {
      stream.respond({ ':status': 404 });
      stream.end();
      return;
    }
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => {
      const h = sha(Buffer.concat(chunks));
      st.seen.set(h, (st.seen.get(h) ?? 0) + 1);
      st.sessions.set(h, [...(st.sessions.get(h) ?? []), stream.session!]);
      const a: Arrival = { session: stream.session!, stream, sha: h };
      if (st.acted) return answer(a);
      st.held.push(a);
      if (st.held.length === st.n) act(st);
    });
  };
}

let dir: CertDir;
let caFile: string;
const cases = new Map<string, CaseState>();
const servers: { close(): unknown; address(): unknown }[] = [];
const sessions = new Set<Http2Session>();
let tlsUrl: string;
let h2cUrl: string;

before(async () => {
  dir = certDir();
  const ca = dir.ca('GOAWAY CA');
  caFile = ca.certFile;
  const leaf = ca.issue('localhost', { dns: ['localhost'], ip: ['127.0.0.1'] });
  const tls = createSecureServer({ cert: leaf.cert, key: leaf.key, allowHTTP1: false });
  const h2c = createServer();
  for (const s of [tls, h2c]) {
    s.on('stream', onStream(cases));
    s.on('session', (x: Http2Session) => {
      sessions.add(x);
      x.on('error', () => {});
      x.on('close', () => sessions.delete(x));
    });
    s.listen(0, '127.0.0.1');
    await once(s, 'listening');
    servers.push(s);
  }
  tlsUrl = `https://127.0.0.1:${(tls.address() as AddressInfo).port}`;
  h2cUrl = `http://127.0.0.1:${(h2c.address() as AddressInfo).port}`;
});

after(async () => {
  for (const s of sessions) s.destroy();
  for (const s of servers) s.close();
  dir?.remove();
});

interface Result {
  readonly sha: string;
  readonly status: number;
  readonly body: string;
  readonly proxyStatus: string;
  readonly tries: readonly { error?: string; detail?: string }[];
}

async function post(gw: TestGateway, client: Agent, caseId: string, body: Buffer): Promise<Result> {
  const res = await request(`${gw.url}/u`, { method: 'POST', dispatcher: client, headers: { 'x-case': caseId, 'content-type': 'application/octet-stream' }, body, headersTimeout: 20_000, bodyTimeout: 20_000 });
  const text = await res.body.text();
  const id = res.headers['x-request-id'] as string | undefined;
  const line = id === undefined ? undefined : await gw.logFor(id);
  return { sha: sha(body), status: res.statusCode, body: text, proxyStatus: String(res.headers['proxy-status'] ?? ''), tries: (line?.attempts ?? []) as Result['tries'] };
}

/**
 * A family of cases against one upstream: `all`, the GOAWAY covers every held stream; `partial`,
 * only some; `reset`, all, and the upstream then resets some of them instead of answering.
 */
async function family(protocol: 'h2' | 'h2c', mode: 'all' | 'partial' | 'reset'): Promise<void> {
  const partial = mode === 'partial';
  await seededRun(`h2 graceful GOAWAY ${protocol} ${mode}`, async (rand) => {
    const client = new Agent({ connections: 16 });
    let gw: TestGateway | undefined;
    try {
      gw = await startTestGateway({
        clusters: {
          up: {
            endpoints: [protocol === 'h2' ? tlsUrl : h2cUrl],
            protocol,
            ...(protocol === 'h2' ? { tls: { ca: caFile, servername: 'localhost' } } : {}),
            outlierDetection: { enabled: false },
            retryBudget: { ratio: 10, minPerSecond: 1000 },
            timeouts: { response: '20s' },
          },
        },
        routes: [{ cluster: 'up', retry: { tries: 2 } }],
      });
      const failures: string[] = [];
      for (let c = 0; c < 5; c++) {
        const n = partial ? between(rand, 2, 8) : between(rand, 1, 8);
        const cover = partial ? between(rand, 1, n - 1) : n;
        const caseId = `${protocol}-${mode}${c}`;
        const reset = new Set<number>();
        if (mode === 'reset') {
          for (let r = 0; r < n; r++) if (rand() < 0.5) reset.add(r);
          if (reset.size === 0) reset.add(between(rand, 0, n - 1));
        }
        const st: CaseState = { n, cover, reset, held: [], acted: false, seen: new Map(), sessions: new Map() };
        cases.set(caseId, st);
        const bodies = Array.from({ length: n }, (_, i) => {
          const b = Buffer.alloc(between(rand, 1, 60 * 1024));
          for (let j = 0; j < b.length; j += 4096) b[j] = Math.floor(rand() * 256);
          b.writeUInt32BE(c * 100 + i, 0);
          return b;
        });
        // One at a time into flight, so that all of them share the connection the first opened.
        const pending: Promise<Result>[] = [];
        for (let i = 0; i < n; i++) {
          pending.push(post(gw, client, caseId, bodies[i]!));
          if (i < n - 1) assert.ok(await until(() => st.held.length > i, 10_000, 2), `case ${caseId} (N ${n}): POST ${i} never reached the upstream alongside the ones before it (${st.held.length} held)`);
        }
        const results = await Promise.all(pending);
        const sorted = [...st.held].sort((x, y) => x.stream.id! - y.stream.id!);
        const what = `case ${caseId}: N ${n}, GOAWAY covers ${cover}`;
        for (const r of results) {
          const rank = sorted.findIndex((a) => a.sha === r.sha);
          const covered = rank < cover;
          const who = `${what}: POST rank ${rank} (${covered ? 'covered' : 'above last-stream-id'}${reset.has(rank) ? ', reset' : ''}): status ${r.status} ${r.proxyStatus}, tries ${JSON.stringify(r.tries)}`;
          try {
            if (reset.has(rank)) {
              // Maybe processed (covered by the GOAWAY), then reset: never sent again, and the record says what came before.
              assert.equal(r.status, 502, who);
              assert.match(r.proxyStatus, /error=connection_terminated/, who);
              assert.equal(st.seen.get(r.sha), 1, `${who}: never sent again`);
              assert.equal(r.tries.length, 1, who);
              assert.match(String(r.tries[0]!.detail), /after the upstream's GOAWAY \(code 0, last-stream-id \d+\)/, `${who}: the record says the GOAWAY came first`);
              continue;
            }
            assert.equal(r.status, 200, `${who}: the upstream's answer`);
            assert.equal(r.body, r.sha, `${who}: the answer to this very body`);
            if (covered) {
              assert.equal(st.seen.get(r.sha), 1, `${who}: sent once`);
              assert.equal(r.tries.length, 1, `${who}: one try`);
            } else {
              assert.equal(st.seen.get(r.sha), 2, `${who}: not processed, so sent again`);
              const on = st.sessions.get(r.sha)!;
              assert.notEqual(on[0], on[1], `${who}: sent again on a new connection`);
              assert.equal(r.tries.length, 2, `${who}: two tries`);
              assert.equal(r.tries[0]!.error, 'connection_terminated', who);
              assert.match(String(r.tries[0]!.detail), /GOAWAY/, `${who}: the record says why`);
            }
          } catch (err) {
            failures.push((err as Error).message.split('\n')[0]!);
          }
        }
      }
      assert.deepEqual(failures, [], `${failures.length} POSTs went wrong:\n${failures.join('\n')}`);
    } finally {
      await client.close();
      await gw?.close();
    }
  });
}

describe('HTTP/2 upstream: a graceful GOAWAY lets the streams it covers finish (RFC 9113 §6.8)', () => {
  test('TLS (ALPN h2): GOAWAY over all of 1-8 POSTs in flight (seeded)', () => family('h2', 'all'));
  test('TLS (ALPN h2): GOAWAY over some of 2-8 POSTs in flight, the rest retried (seeded)', () => family('h2', 'partial'));
  test('TLS (ALPN h2): GOAWAY over all, then some reset: 502, never sent again, the record names the GOAWAY (seeded)', () => family('h2', 'reset'));
  test('h2c: GOAWAY over all of 1-8 POSTs in flight (seeded)', () => family('h2c', 'all'));
  test('h2c: GOAWAY over some of 2-8 POSTs in flight, the rest retried (seeded)', () => family('h2c', 'partial'));
  test('h2c: GOAWAY over all, then some reset: 502, never sent again, the record names the GOAWAY (seeded)', () => family('h2c', 'reset'));
});

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { constants, type Http2Session, type ServerHttp2Stream } from 'node:http2';
import { Agent, request } from 'undici';
import { startTestGateway, type LogLine, type TestGateway } from '../helpers/gateway.js';
import { between, seededRun, shuffle } from '../helpers/seeded.js';
import { until } from '../helpers/until.js';
import { startH2cUpstream } from '../helpers/h2c-upstream.js';

/**
 * RFC 9113 §8.7: a request on a stream the upstream refused (RST_STREAM REFUSED_STREAM), or on
 * a stream above the last-stream-id of its GOAWAY, was not processed, and may be sent again
 * whatever its method. The gateway retries such a try (within `retry.tries` and the retry
 * budget), its record says why; a POST the upstream did process (its stream at or below the
 * GOAWAY's last-stream-id) is never sent again and is answered 502 connection_terminated; and
 * no body the gateway did not keep whole (over 64 KiB, more than an HTTP/2 window) is ever sent
 * again. A real node:http2 upstream (h2c) on loopback; a seeded family over what the upstream
 * does (a: GOAWAY below in-flight streams, NO_ERROR or INTERNAL_ERROR; b: REFUSED_STREAM;
 * c: a graceful GOAWAY(NO_ERROR) over every stream in flight), the methods, the body sizes
 * and how many requests are in flight on the connection.
 */

type Kind = 'goaway-low' | 'refused' | 'graceful';

interface Req {
  readonly n: number;
  readonly method: 'GET' | 'POST';
  readonly body: Buffer | undefined;
}

interface Plan {
  readonly kind: Kind;
  /** How many requests of the case are in flight before the upstream acts. */
  readonly k: number;
  /** refused: the requests (by n) whose first stream is refused. */
  readonly refuse: ReadonlySet<number>;
  /** goaway-low: how many of the in-flight streams (lowest ids first) are at or below last-stream-id. */
  readonly processed: number;
  /** goaway-low: the GOAWAY's error code. */
  readonly code: number;
}

interface Arrival {
  readonly n: number;
  readonly session: Http2Session;
  readonly stream: ServerHttp2Stream;
  readonly sha: string;
}

interface CaseState {
  readonly plan: Plan;
  /** Streams of the case that arrived, their bodies whole, before the upstream acted. */
  readonly held: Arrival[];
  acted: boolean;
  /** goaway-low, graceful: how many of the held streams (lowest ids first) were at or below the GOAWAY's last-stream-id. */
  cut: number;
  /** By n: the upstream processed the request (answered it, or held it at or below a GOAWAY's last-stream-id). */
  readonly processed: Map<number, number>;
  /** By n: streams that arrived (whole or not). */
  readonly seen: Map<number, number>;
}

interface Upstream {
  readonly url: string;
  readonly cases: Map<string, CaseState>;
  close(): Promise<void>;
}

const sha = (b: Buffer | undefined): string => createHash('sha256').update(b ?? Buffer.alloc(0)).digest('hex');

function answer(st: CaseState, a: Arrival): void {
  st.processed.set(a.n, (st.processed.get(a.n) ?? 0) + 1);
  try {
    a.stream.respond({ ':status': 200, 'content-type': 'text/plain' });
    a.stream.end(a.sha);
  } catch {
    // The stream is gone (the client's connection was closed under it): nothing to answer.
  }
}

function act(st: CaseState): void {
  st.acted = true;
  const p = st.plan;
  const held = [...st.held].sort((x, y) => x.stream.id! - y.stream.id!);
  if (p.kind === 'refused') {
    for (const a of held) {
      if (p.refuse.has(a.n)) a.stream.close(constants.NGHTTP2_REFUSED_STREAM);
      else answer(st, a);
    }
    return;
  }
  const session = held[0]!.session;
  // goaway-low: the first `processed` streams are taken as processed (the upstream works on
  // them and answers them if it can), the rest are above last-stream-id. graceful: all of them.
  // Node's session.goaway() sends the last stream it processed for a last-stream-id of 0, so
  // "none processed" is the stream before the first held one, when there is one (id > 1).
  let cut = p.kind === 'graceful' ? held.length : p.processed;
  if (cut === 0 && held[0]!.stream.id! === 1) cut = 1;
  st.cut = cut;
  const last = cut === 0 ? held[0]!.stream.id! - 2 : held[cut - 1]!.stream.id!;
  for (const a of held.slice(0, cut)) st.processed.set(a.n, (st.processed.get(a.n) ?? 0) + 1);
  session.goaway(p.kind === 'graceful' ? constants.NGHTTP2_NO_ERROR : p.code, last);
  setImmediate(() => {
    for (const a of held.slice(0, cut)) {
      try {
        a.stream.respond({ ':status': 200 });
        a.stream.end(a.sha);
      } catch {
        // Cut by the client.
      }
    }
  });
}

async function h2cUpstream(): Promise<Upstream> {
  const cases = new Map<string, CaseState>();
  const h2 = await startH2cUpstream((stream, headers) => {
    const st = cases.get(String(headers['x-case']));
    const n = Number(headers['x-n']);
    if (st === undefined) {
      stream.respond({ ':status': 404 });
      stream.end();
      return;
    }
    st.seen.set(n, (st.seen.get(n) ?? 0) + 1);
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => {
      const body = Buffer.concat(chunks);
      const a: Arrival = { n, session: stream.session!, stream, sha: sha(body.length === 0 ? undefined : body) };
      if (st.acted) {
        answer(st, a);
        return;
      }
      st.held.push(a);
      if (st.held.length === st.plan.k) act(st);
    });
  });
  return { url: h2.url, cases, close: () => h2.close() };
}

interface Result {
  readonly req: Req;
  readonly status: number | undefined;
  readonly proxyStatus: string;
  readonly body: string;
  readonly line: LogLine | undefined;
}

async function send(gw: TestGateway, client: Agent, caseId: string, r: Req): Promise<Result> {
  const res = await request(`${gw.url}/u`, {
    method: r.method,
    dispatcher: client,
    headers: { 'x-case': caseId, 'x-n': String(r.n) },
    body: r.body,
    headersTimeout: 20_000,
    bodyTimeout: 20_000,
  });
  const body = await res.body.text();
  const id = res.headers['x-request-id'] as string | undefined;
  const line = id === undefined ? undefined : await gw.logFor(id);
  return { req: r, status: res.statusCode, proxyStatus: String(res.headers['proxy-status'] ?? ''), body, line };
}

const SMALL: readonly [number, number] = [1, 16 * 1024];
/** Over the gateway's replay limit (64 KiB) and so over one HTTP/2 flow-control window (65,535). */
const LARGE: readonly [number, number] = [70 * 1024, 256 * 1024];

describe('HTTP/2 upstream: streams the upstream did not process are retried (RFC 9113 §8.7)', () => {
  test('GOAWAY below in-flight streams, REFUSED_STREAM, graceful GOAWAY: GET and POST, small and large bodies, 1-4 in flight (seeded)', async () => {
    await seededRun('h2 unprocessed retry', async (rand) => {
      const up = await h2cUpstream();
      const client = new Agent({ connections: 8 });
      let gw: TestGateway | undefined;
      try {
        gw = await startTestGateway({
          clusters: {
            up: {
              endpoints: [up.url],
              protocol: 'h2c',
              outlierDetection: { enabled: false },
              // This family is about which tries are sent again, not about the budget.
              retryBudget: { ratio: 10, minPerSecond: 1000 },
              timeouts: { response: '20s' },
            },
          },
          routes: [{ cluster: 'up', retry: { tries: 3 } }],
        });
        const failures: string[] = [];
        for (let c = 0; c < 18; c++) {
          const kind = (['goaway-low', 'refused', 'graceful'] as const)[c % 3]!;
          const k = between(rand, 1, 4);
          // At most one POST (undici's HTTP/2 client sends a request with a body alone behind
          // the streams before it, so a POST is sent first and GETs join it on its connection).
          const withPost = rand() < 0.7;
          const large = rand() < 0.35;
          const reqs: Req[] = [];
          for (let n = 0; n < k; n++) {
            const post = withPost && n === 0;
            const size = post ? (large ? between(rand, LARGE[0], LARGE[1]) : between(rand, SMALL[0], SMALL[1])) : 0;
            reqs.push({ n, method: post ? 'POST' : 'GET', body: post ? Buffer.from(Array.from({ length: size }, () => Math.floor(rand() * 256))) : undefined });
          }
          const refuse = new Set(shuffle(rand, reqs.map((r) => r.n)).slice(0, between(rand, 1, k)));
          const plan: Plan = { kind, k, refuse, processed: between(rand, 0, k - 1), code: rand() < 0.5 ? constants.NGHTTP2_NO_ERROR : constants.NGHTTP2_INTERNAL_ERROR };
          const caseId = `c${c}`;
          const st: CaseState = { plan, held: [], acted: false, cut: 0, processed: new Map(), seen: new Map() };
          up.cases.set(caseId, st);
          // One at a time into flight: each waits until the upstream holds the one before it.
          const pending: Promise<Result>[] = [];
          for (const r of reqs) {
            pending.push(send(gw, client, caseId, r));
            if (r.n < k - 1) assert.ok(await until(() => st.held.length > r.n, 10_000, 2), `case ${caseId}: request ${r.n} never reached the upstream`);
          }
          const results = await Promise.all(pending);
          const what = `case ${caseId} ${kind} k=${k} ${reqs.map((r) => `${r.method}${r.body ? `(${r.body.length})` : ''}`).join(',')} refuse=[${[...refuse]}] processed=${st.cut} code=${plan.code}`;
          for (const res of results) {
            const r = res.req;
            const tries = res.line?.attempts ?? [];
            const heldAt = st.held.findIndex((a) => a.n === r.n);
            const sorted = [...st.held].sort((x, y) => x.stream.id! - y.stream.id!);
            const rank = sorted.findIndex((a) => a.n === r.n);
            const unprocessed = kind === 'refused' ? refuse.has(r.n) : kind === 'goaway-low' ? rank >= st.cut : false;
            const kept = r.body === undefined || r.body.length <= 64 * 1024;
            const who = `${what}: ${r.method} #${r.n} (held ${heldAt}, rank ${rank}, ${unprocessed ? 'unprocessed' : 'processed'}): status ${res.status}, ${res.proxyStatus}, tries ${JSON.stringify(tries)}`;
            try {
              // Never a request whose body was not kept sent twice, never a POST the upstream processed.
              if (!kept || (r.method === 'POST' && !unprocessed)) assert.equal(st.seen.get(r.n), 1, `${who}: sent again`);
              // What the upstream answered is the request the client sent (a replay sends the whole body).
              if (res.status === 200) assert.equal(res.body, sha(r.body), `${who}: the body that reached the upstream differs`);
              if (unprocessed && kept) {
                assert.equal(res.status, 200, `${who}: an unprocessed request must be retried`);
                assert.equal(tries.length, 2, `${who}: one retry`);
                assert.equal(tries[0]!.error, 'connection_terminated', who);
                assert.match(String((tries[0] as { detail?: string }).detail), kind === 'refused' ? /REFUSED_STREAM/ : /GOAWAY/, `${who}: the record says why it was retried`);
              } else if (unprocessed) {
                assert.equal(res.status, 502, who);
                assert.match(res.proxyStatus, /error=connection_terminated/, who);
                assert.equal(tries.length, 1, who);
              } else if (r.method === 'GET') {
                assert.equal(res.status, 200, `${who}: a GET is retried whatever happened to it`);
              } else {
                // Processed: answered by the upstream, or cut and answered 502, never sent again.
                assert.ok(res.status === 200 || (res.status === 502 && /error=connection_terminated/.test(res.proxyStatus)), who);
                assert.equal(tries.length, 1, `${who}: never retried`);
              }
            } catch (err) {
              failures.push((err as Error).message.split('\n')[0]!);
            }
          }
        }
        assert.deepEqual(failures, [], `${failures.length} requests went wrong:\n${failures.join('\n')}`);
      } finally {
        await client.close();
        await gw?.close();
        await up.close();
      }
    });
  });

  test('a refused POST is retried only within the retry budget and retry.tries: else 502 connection_terminated, the record says why', async () => {
    await seededRun('h2 refused, no budget', async (rand) => {
      const up = await h2cUpstream();
      const client = new Agent({ connections: 2 });
      const gws: TestGateway[] = [];
      try {
        // No retry budget at all; and a budget but one try.
        const noBudget = await startTestGateway({
          clusters: { up: { endpoints: [up.url], protocol: 'h2c', outlierDetection: { enabled: false }, retryBudget: { ratio: 0, minPerSecond: 0 } } },
          routes: [{ cluster: 'up', retry: { tries: 3 } }],
        });
        gws.push(noBudget);
        const oneTry = await startTestGateway({
          clusters: { up: { endpoints: [up.url], protocol: 'h2c', outlierDetection: { enabled: false }, retryBudget: { ratio: 10, minPerSecond: 1000 } } },
          routes: [{ cluster: 'up', retry: { tries: 1 } }],
        });
        gws.push(oneTry);
        for (let c = 0; c < 6; c++) {
          const gw = c % 2 === 0 ? noBudget : oneTry;
          const body = Buffer.from(Array.from({ length: between(rand, SMALL[0], SMALL[1]) }, () => Math.floor(rand() * 256)));
          const caseId = `b${c}`;
          const st: CaseState = { plan: { kind: 'refused', k: 1, refuse: new Set([0]), processed: 0, code: 0 }, held: [], acted: false, cut: 0, processed: new Map(), seen: new Map() };
          up.cases.set(caseId, st);
          const res = await send(gw, client, caseId, { n: 0, method: 'POST', body });
          const what = `case ${caseId} (${c % 2 === 0 ? 'no budget' : 'tries 1'}): ${res.status} ${JSON.stringify(res.line?.attempts)}`;
          assert.equal(res.status, 502, what);
          assert.match(res.proxyStatus, /error=connection_terminated/, what);
          assert.equal(res.line?.attempts?.length, 1, what);
          assert.equal(st.seen.get(0), 1, what);
          const detail = String((res.line?.attempts?.[0] as { detail?: string } | undefined)?.detail);
          assert.match(detail, /REFUSED_STREAM/, what);
          if (c % 2 === 0) assert.match(detail, /retry budget exhausted/, what);
        }
      } finally {
        await client.close();
        for (const g of gws) await g.close();
        await up.close();
      }
    });
  });
});

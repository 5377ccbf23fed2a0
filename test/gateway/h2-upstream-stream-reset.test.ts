import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { constants } from 'node:http2';
import { Agent, request } from 'undici';
import { startTestGateway, type LogLine, type TestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/until.js';
import { startH2cUpstream } from '../helpers/h2c-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * An h2c upstream that resets streams (RST_STREAM) is an upstream failure, not the gateway's
 * own (it was 500 proxy_internal_error, never retried, never charged to the endpoint): before
 * the response head it is `connection_terminated` (502), retried for an idempotent request as an
 * HTTP/1.1 reset is (and for any request when the code is REFUSED_STREAM: not processed); in the middle of the body the client's response is cut and recorded
 * `http_response_incomplete`; and an endpoint resetting every stream is ejected by outlier
 * detection (consecutiveGatewayFailures).
 */

const CODES = {
  REFUSED_STREAM: constants.NGHTTP2_REFUSED_STREAM,
  INTERNAL_ERROR: constants.NGHTTP2_INTERNAL_ERROR,
  CANCEL: constants.NGHTTP2_CANCEL,
  ENHANCE_YOUR_CALM: constants.NGHTTP2_ENHANCE_YOUR_CALM,
} as const;
type CodeName = keyof typeof CODES;

interface Upstream {
  url: string;
  /** Streams it received. */
  seen: number;
  /** What it does to the next streams: answer, reset before the head, reset after part of the body. */
  mode: { kind: 'answer' } | { kind: 'beforeHead' | 'midBody'; code: number };
  close(): Promise<void>;
}

async function h2cUpstream(): Promise<Upstream> {
  const state: Pick<Upstream, 'seen' | 'mode'> = { seen: 0, mode: { kind: 'answer' } };
  const h2 = await startH2cUpstream((stream) => {
    state.seen++;
    const m = state.mode;
    // Read the request body (if any) before acting, so the reset is about the answer.
    stream.resume();
    if (m.kind === 'answer') {
      stream.respond({ ':status': 200 });
      stream.end('ok');
    } else if (m.kind === 'beforeHead') {
      stream.close(m.code);
    } else {
      stream.respond({ ':status': 200, 'content-length': '100' });
      // The reset follows the first body bytes once they are on the wire.
      stream.write('abc', () => stream.close(m.code));
    }
  });
  return Object.assign(state, { url: h2.url, close: () => h2.close() });
}

interface Answer {
  status?: number;
  proxyStatus?: string;
  /** The response body did not arrive whole (the connection was cut). */
  cut: boolean;
}

async function ask(gw: TestGateway, client: Agent, method: 'GET' | 'POST'): Promise<Answer> {
  try {
    const r = await request(`${gw.url}/r`, {
      method,
      dispatcher: client,
      body: method === 'POST' ? 'payload' : undefined,
      headersTimeout: 20_000,
      bodyTimeout: 20_000,
    });
    const proxyStatus = r.headers['proxy-status'] as string | undefined;
    try {
      await r.body.text();
      return { status: r.statusCode, proxyStatus, cut: false };
    } catch {
      return { status: r.statusCode, proxyStatus, cut: true };
    }
  } catch {
    return { cut: true };
  }
}

/**
 * The `n`-th access record of gateway `g` (its requests are made one at a time), waited for up
 * to 5 s. By listener: the records of every gateway of the process reach each test logger.
 */
async function record(g: TestGateway, n: number): Promise<LogLine> {
  const listener = `127.0.0.1:${g.port}`;
  const access = (): LogLine[] => g.logs.filter((l) => l.type === 'access' && l.listener === listener);
  assert.ok(await until(() => access().length > n, 5000, 5), `no access record #${n}`);
  return access()[n]!;
}

describe('an upstream HTTP/2 stream reset is an upstream failure', () => {
  test('before the head: 502 connection_terminated, retried for GET (for POST only when refused), never proxy_internal_error (seeded)', async () => {
    const rand = seededRandom();
    const bad = await h2cUpstream();
    const good = await h2cUpstream();
    const gws: TestGateway[] = [];
    const client = new Agent({ connections: 4 });
    try {
      await withSeed(rand, async () => {
        // One gateway with the resetting endpoint alone (what the client sees), one with a healthy
        // endpoint beside it (where the retry goes). Budgets that never run out: this family is
        // about how a reset is classified and retried, not the retry budget (12 cases in well
        // under a second would spend minPerSecond's 3).
        const alone = await startTestGateway({
          clusters: { up: { endpoints: [bad.url], protocol: 'h2c', outlierDetection: { enabled: false }, retryBudget: { ratio: 10, minPerSecond: 1000 } } },
          routes: [{ cluster: 'up', retry: { tries: 2 } }],
        });
        gws.push(alone);
        const pair = await startTestGateway({
          clusters: { up: { endpoints: [bad.url, good.url], protocol: 'h2c', balancer: 'round-robin', outlierDetection: { enabled: false }, retryBudget: { ratio: 10, minPerSecond: 1000 } } },
          routes: [{ cluster: 'up', retry: { tries: 2 } }],
        });
        gws.push(pair);
        const names = Object.keys(CODES) as CodeName[];
        for (let i = 0; i < 12; i++) {
          const name = rand.pick(names);
          const method = rand.pick(['GET', 'POST'] as const);
          bad.mode = { kind: 'beforeHead', code: CODES[name] };
          const what = `${method} reset ${name} before the head`;
          const seenBefore = bad.seen;
          const a = await ask(alone, client, method);
          assert.equal(a.status, 502, `${what}: ${JSON.stringify(a)}`);
          assert.match(a.proxyStatus ?? '', /error=connection_terminated/, what);
          const line = await record(alone, i);
          // An idempotent request is tried again (here on the same endpoint: the only one); a POST the
          // upstream may have seen is not, but one it refused (REFUSED_STREAM: not processed, RFC 9113
          // §8.7) is (test/gateway/h2-unprocessed-retry.test.ts).
          const tries = method === 'GET' || name === 'REFUSED_STREAM' ? 2 : 1;
          assert.equal(line.attempts?.length, tries, `${what}: ${JSON.stringify(line.attempts)}`);
          assert.equal(bad.seen - seenBefore, tries, what);
          for (const t of line.attempts ?? []) assert.equal(t.error, 'connection_terminated', what);
          if (method === 'GET') {
            // Beside a healthy endpoint, the GET is answered whichever endpoint it met first.
            const b = await ask(pair, client, 'GET');
            assert.equal(b.status, 200, `${what}, beside a healthy endpoint: ${JSON.stringify(b)}`);
          }
        }
      });
    } finally {
      await client.close();
      for (const g of gws) await g.close();
      await bad.close();
      await good.close();
    }
  });

  test('mid-body: the client\'s response is cut and recorded http_response_incomplete (seeded)', async () => {
    const rand = seededRandom();
    const bad = await h2cUpstream();
    let gw: TestGateway | undefined;
    const client = new Agent({ connections: 4 });
    try {
      await withSeed(rand, async () => {
        const g = (gw = await startTestGateway({
          clusters: { up: { endpoints: [bad.url], protocol: 'h2c', outlierDetection: { enabled: false } } },
          routes: [{ cluster: 'up', retry: { tries: 2 } }],
        }));
        for (let i = 0; i < 6; i++) {
          const name = rand.pick(Object.keys(CODES) as CodeName[]);
          bad.mode = { kind: 'midBody', code: CODES[name] };
          const a = await ask(g, client, 'GET');
          assert.equal(a.cut, true, `reset ${name} mid-body: the answer must not look complete: ${JSON.stringify(a)}`);
          const line = await record(g, i);
          assert.equal(line.error, 'http_response_incomplete', `reset ${name} mid-body: ${JSON.stringify(line)}`);
          assert.equal(line.attempts?.length, 1, `reset ${name} mid-body: nothing retried once the head was passed on`);
        }
      });
    } finally {
      await client.close();
      await gw?.close();
      await bad.close();
    }
  });

  test('an endpoint that resets every stream is ejected (consecutiveGatewayFailures), its requests answered by the other', async () => {
    const bad = await h2cUpstream();
    const good = await h2cUpstream();
    bad.mode = { kind: 'beforeHead', code: CODES.INTERNAL_ERROR };
    const ejected: string[] = [];
    const onOutlier = (m: unknown): void => {
      const e = m as { endpoint: string; event: string };
      if (e.event === 'ejected') ejected.push(e.endpoint);
    };
    subscribe('gatewise:upstream:outlier', onOutlier);
    let gw: TestGateway | undefined;
    const client = new Agent({ connections: 4 });
    try {
      gw = await startTestGateway({
        clusters: { up: { endpoints: [bad.url, good.url], protocol: 'h2c', balancer: 'round-robin', outlierDetection: { consecutiveGatewayFailures: 2 } } },
        routes: [{ cluster: 'up', retry: { tries: 2 } }],
      });
      const badHop = new URL(bad.url).host;
      for (let i = 0; i < 20 && !ejected.includes(badHop); i++) {
        const a = await ask(gw, client, 'GET');
        assert.equal(a.status, 200, JSON.stringify(a));
      }
      assert.deepEqual(ejected, [badHop]);
    } finally {
      unsubscribe('gatewise:upstream:outlier', onOutlier);
      await client.close();
      await gw?.close();
      await bad.close();
      await good.close();
    }
  });
});

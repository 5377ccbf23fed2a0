import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { startOneUpstreamGateway, type TestGateway } from '../helpers/gateway.js';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { seededRandom } from '../helpers/seeded.js';
import { onHeads, startRawServer, tick, type RawServer } from '../helpers/scripted-upstream.js';
import { until } from '../helpers/until.js';

/**
 * Stall hunt (session 14): a request pipelined behind one whose answer is a long stream
 * (server-sent events, a byte every 100 ms). RFC 9112 §9.3.2: the answers go in the order of
 * the requests, so the second answer cannot be written before the stream ends. Safe requests
 * may be processed in parallel (connection-order.ts starts a safe one at once, an unsafe one
 * only when nothing runs before it); either way the second must not hold upstream work or an
 * admission slot of its cluster for as long as the stream lasts:
 *
 * - a safe second request to an upstream that never answers is timed by its response
 *   timeout (its upstream connection is let go of);
 * - a safe second request answered at once has its answer buffered until its turn, and its
 *   admission slot is given back (a request on another connection still gets a slot);
 * - an unsafe second request does not start (nothing reaches the upstream).
 * And nothing of the second answer reaches the client before the stream ends.
 */

const SLACK_MS = 2500;
const MAX_EVENTS = 400; // the stream ends by itself after 40 s: every loop bounded

/** Upstream connections by the request path that came on them. */
const upstreamBy = new Map<string, Socket>();
let upstream: RawServer;

before(async () => {
  upstream = await startRawServer((s) =>
    onHeads(s, (_head, path) => {
      upstreamBy.set(path, s);
      if (path.startsWith('/sse')) {
        s.write('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n');
        tick(s, 100, (n) => (n >= MAX_EVENTS ? undefined : '1\r\n:\r\n'), '0\r\n\r\n');
      } else if (path.startsWith('/small')) {
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nsmall');
      }
      // /hang: read, never answered
    }),
  );
});

after(() => upstream.close());

/** A request on a fresh connection; its status (bounded). */
async function statusOf(port: number, path: string, ctx: string): Promise<number> {
  const c = new RawConn(port);
  try {
    await c.write(`GET ${path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n`);
    await c.waitFor((t) => parseHead(t) !== undefined, 3000, `${ctx}: the answer to ${path}`);
    return parseHead(c.text)!.status;
  } finally {
    c.destroy();
  }
}

for (const front of ['node', 'net'] as const) {
  describe(`front ${front}: a request pipelined behind an event stream`, () => {
    const rand = seededRandom();
    const responseMs = 300 + rand.int(400);
    let gw: TestGateway;
    before(async () => {
      // The stream takes one slot; the second request's slot is the other.
      gw = await startOneUpstreamGateway(upstream.port, { listener: { front }, cluster: { timeouts: { response: `${responseMs}ms`, idle: '5s' }, limits: { maxConcurrent: 2, maxQueued: 0 } } });
    });
    after(() => gw.close());

    const kinds = ['hang', 'small', 'post'] as const;
    for (const kind of kinds) {
      test(`second request: ${kind === 'hang' ? 'a GET the upstream never answers' : kind === 'small' ? 'a GET answered at once' : 'a POST'} (seeded)`, { timeout: 30_000 }, async () => {
        const id = `${front}-${kind}-${rand.seed}-${rand.int(1e9)}`;
        const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}), front ${front}, response timeout ${responseMs} ms, second request ${kind}`;
        const second =
          kind === 'post'
            ? `POST /small/${id} HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nabc`
            : `GET /${kind}/${id} HTTP/1.1\r\nHost: app.test\r\n\r\n`;
        const c = new RawConn(gw.port);
        try {
          await c.write(`GET /sse/${id} HTTP/1.1\r\nHost: app.test\r\nAccept: text/event-stream\r\n\r\n${second}`);
          await c.waitFor((t) => parseHead(t) !== undefined, 3000, `${ctx}: the stream's head`);
          assert.equal(parseHead(c.text)!.status, 200, `${ctx}: ${c.text.slice(0, 300)}`);
          const secondPath = kind === 'post' ? `/small/${id}` : `/${kind}/${id}`;
          if (kind === 'post') {
            // Unsafe: it waits for the stream to end; nothing of it goes upstream.
            await new Promise((r) => setTimeout(r, responseMs + 200)); // a fixed wait (the response timeout passes): time for a wrong start to show
            assert.ok(!upstreamBy.has(secondPath), `${ctx}: the POST was sent upstream while the request before it was still answered`);
          } else {
            assert.ok(await until(() => upstreamBy.has(secondPath), 3000), `${ctx}: the safe second request did not reach the upstream`);
            const up = upstreamBy.get(secondPath)!;
            if (kind === 'hang') {
              // Timed by its response timeout: the upstream connection is let go of.
              const t0 = performance.now();
              assert.ok(await until(() => up.destroyed, responseMs + SLACK_MS), `${ctx}: the upstream connection of the second request is still held ${Math.round(performance.now() - t0)} ms later (response timeout ${responseMs} ms)`);
            }
          }
          // Its admission slot is not held while its answer waits for its turn: the stream's alone is taken.
          const admission = gw.gw.ctx.clusters.get('up')!.admission!;
          const t1 = performance.now();
          assert.ok(await until(() => admission.inflight <= 1, SLACK_MS), `${ctx}: ${admission.inflight} admission slots still taken ${Math.round(performance.now() - t1)} ms after the second request's upstream part ended (its answer waits for its turn behind the stream)`);
          const other = await statusOf(gw.port, `/small/other-${id}`, ctx);
          assert.equal(other, 200, `${ctx}: a request on another connection got ${other} while the stream runs and the second request's answer waits for its turn: the second request holds its admission slot (maxConcurrent 2: the stream's and the second's)`);
          // Answers in order: nothing but the stream so far.
          const h = parseHead(c.text)!;
          assert.ok(!/HTTP\/1\.1 \d{3} /.test(c.text.slice(h.end)), `${ctx}: a second answer overtook the stream: ${JSON.stringify(c.text.slice(h.end, h.end + 300))}`);
          assert.ok(!c.ended, `${ctx}: the connection closed while the stream runs`);
        } finally {
          c.destroy();
        }
      });
    }
  });
}

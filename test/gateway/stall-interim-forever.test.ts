import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startOneUpstreamGateway, type TestGateway } from '../helpers/gateway.js';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { seededRandom } from '../helpers/seeded.js';
import { onFirstHead, startRawServer, tick, type RawServer } from '../helpers/scripted-upstream.js';

/**
 * Stall hunt (session 14): an upstream that answers interim responses (103 Early Hints, an
 * unsolicited 102 Processing) one after another and never a final status. Each 1xx went to
 * Attempt.#interim, which restarted the try's wait for the head in full
 * (ResponseTimer.restart), so an upstream sending a 1xx more often than the response timeout
 * held the request, its client, its upstream connection and its admission slot for ever:
 * the response timeout ("time to wait for response headers") never ran out.
 *
 * The client must get its 504 http_response_timeout within the response timeout plus slack,
 * and the upstream connection must be let go of.
 */

const SLACK_MS = 2500;
/** The test upstream stops by itself after this many interim answers (every loop bounded). */
const MAX_INTERIM = 200;

const INTERIM: Record<string, string> = {
  '103': 'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n',
  '102': 'HTTP/1.1 102 Processing\r\n\r\n',
};

let upstream: RawServer;
/** Interim kind and period by request path: /interim/<kind>/<ms>. */
before(async () => {
  upstream = await startRawServer((s) =>
    onFirstHead(s, (head) => {
      const m = /^GET \/interim\/(\w+)\/(\d+) /.exec(head);
      if (m === null) return;
      const kinds = m[1] === 'mixed' ? ['103', '102'] : [m[1]!];
      tick(s, Number(m[2]), (n) => (n >= MAX_INTERIM ? undefined : INTERIM[kinds[n % kinds.length]!]!));
    }),
  );
});

after(() => upstream.close());

for (const front of ['node', 'net'] as const) {
  describe(`front ${front}: an upstream that answers 1xx for ever and never a final status`, () => {
    const rand = seededRandom();
    const responseMs = 300 + rand.int(500);
    let gw: TestGateway;
    before(async () => {
      gw = await startOneUpstreamGateway(upstream.port, { listener: { front }, cluster: { timeouts: { response: `${responseMs}ms` } } });
    });
    after(() => gw.close());

    test('the response timeout is not restarted by each interim answer (seeded kinds and periods)', { timeout: 60_000 }, async () => {
      // An upgrade request (WebSocket) waits for its 101 the same way (UpgradeExchange.onHeaders).
      const cases = ['103', '102', 'mixed', rand.pick(['103', '102', 'mixed'])].flatMap((kind) => [false, true].map((upgrade) => ({ kind, upgrade, period: 40 + rand.int(Math.floor(responseMs / 2)) })));
      await Promise.all(
        cases.map(async ({ kind, upgrade, period }) => {
          const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}), front ${front}: response timeout ${responseMs} ms, a ${kind} interim answer every ${period} ms${upgrade ? ', an upgrade request' : ''}`;
          const c = new RawConn(gw.port);
          try {
            const t0 = performance.now();
            const up = upgrade ? 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' : '';
            await c.write(`GET /interim/${kind}/${period} HTTP/1.1\r\nHost: app.test\r\n${up}\r\n`);
            const final = (t: string): boolean => {
              // Skip the interim heads relayed (103s): the first head with a final status.
              for (let from = 0; ; ) {
                const h = parseHead(t, from);
                if (h === undefined) return false;
                if (h.status >= 200) return true;
                from = h.end;
              }
            };
            try {
              await c.waitFor((t, ended) => ended || final(t), responseMs + SLACK_MS, 'a final answer');
            } catch {
              assert.fail(`${ctx}: no final answer ${Math.round(performance.now() - t0)} ms after the request (the interim answers keep restarting the wait for the head)`);
            }
            let from = 0;
            let h = parseHead(c.text, from);
            while (h !== undefined && h.status < 200) h = parseHead(c.text, (from = h.end));
            assert.ok(h !== undefined, `${ctx}: the connection closed without a final answer: ${JSON.stringify(c.text.slice(0, 300))}`);
            assert.equal(h.status, 504, `${ctx}: ${c.text.slice(from, from + 400)}`);
            assert.match(h.get('proxy-status') ?? '', /http_response_timeout/, `${ctx}: ${c.text.slice(from, from + 400)}`);
          } finally {
            c.destroy();
          }
        }),
      );
      // The upstream connections of the timed-out tries are let go of.
      const t1 = performance.now();
      while (upstream.sockets.size > 0 && performance.now() - t1 < SLACK_MS) await new Promise((r) => setTimeout(r, 25));
      assert.equal(upstream.sockets.size, 0, `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}), front ${front}: ${upstream.sockets.size} upstream connections still open ${SLACK_MS} ms after the 504s`);
    });
  });
}

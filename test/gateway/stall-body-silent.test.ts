import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startOneUpstreamGateway, type TestGateway } from '../helpers/gateway.js';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { seededRandom } from '../helpers/seeded.js';
import { startRawServer, type RawServer } from '../helpers/scripted-upstream.js';

/**
 * Stall hunt (session 14): a client that announces a body (Content-Length) and then sends it
 * very slowly or stops, to an upstream that waits for the whole body before it answers.
 * With `Expect: 100-continue` the upstream's 100 is relayed first and the client then sends
 * nothing (or only part).
 *
 * What bounds it is the listener's clientBodyTimeout (the gap between body bytes) and
 * clientBodyMinRate (BodyTimer): the try's wait for the head is extended while the body is
 * still going up (ResponseTimer #stillSending), so the response timeout does not. After a
 * relayed 100 the client's time starts at once (ClientBodyStream.startTiming). The client
 * must get its 408 request_timeout within the gap plus slack, and the upstream connection
 * must be let go of.
 */

const SLACK_MS = 2500;

let upstream: RawServer;

/** Reads a head; with Expect, answers 100 at once; answers 200 only once the whole body came. */
before(async () => {
  upstream = await startRawServer((s) => {
    let buf = Buffer.alloc(0);
    let want = -1;
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (want < 0) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        want = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        buf = buf.subarray(end + 4);
        if (/\r\nexpect: *100-continue/i.test(head)) s.write('HTTP/1.1 100 Continue\r\n\r\n');
      }
      if (buf.length >= want) s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
    });
  });
});

after(() => upstream.close());

for (const front of ['node', 'net'] as const) {
  describe(`front ${front}: a request body that stops or trickles`, () => {
    const rand = seededRandom();
    const gapMs = 300 + rand.int(400);
    let gw: TestGateway;
    before(async () => {
      gw = await startOneUpstreamGateway(upstream.port, { listener: { front, clientBodyTimeout: `${gapMs}ms`, clientBodyMinRate: 500 }, cluster: { timeouts: { response: '200ms' } } });
    });
    after(() => gw.close());

    test('408 within the body timeout, the upstream let go of (seeded: Expect or not, bytes sent, trickle)', { timeout: 60_000 }, async () => {
      const cases: Array<{ expect: boolean; sent: number; trickleMs: number }> = [];
      for (const expect of [false, true]) {
        cases.push({ expect, sent: 0, trickleMs: 0 });
        cases.push({ expect, sent: 1 + rand.int(100_000), trickleMs: 0 });
        // A byte every trickleMs beats the gap; the minimum rate (500 B/s) cuts it.
        cases.push({ expect, sent: 0, trickleMs: 50 + rand.int(Math.floor(gapMs / 3)) });
      }
      await Promise.all(
        cases.map(async ({ expect, sent, trickleMs }) => {
          const length = 200_000;
          const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}), front ${front}: clientBodyTimeout ${gapMs} ms, ${expect ? 'Expect: 100-continue, ' : ''}Content-Length ${length}, ${sent} bytes sent${trickleMs > 0 ? `, then a byte every ${trickleMs} ms` : ', then silence'}`;
          const c = new RawConn(gw.port);
          let trickle: NodeJS.Timeout | undefined;
          try {
            await c.write(`PUT /upload HTTP/1.1\r\nHost: app.test\r\nContent-Type: application/octet-stream\r\nContent-Length: ${length}\r\n${expect ? 'Expect: 100-continue\r\n' : ''}\r\n`);
            if (expect) {
              await c.waitFor((t) => t.startsWith('HTTP/1.1 100'), 3000, `${ctx}: the relayed 100 Continue`);
              c.clear();
            }
            if (sent > 0) await c.write(Buffer.alloc(sent, 0x62));
            const t0 = performance.now();
            if (trickleMs > 0) {
              let n = 0;
              trickle = setInterval(() => {
                if (c.ended || n++ > 400) return clearInterval(trickle);
                c.socket.write('b', () => {});
              }, trickleMs);
            }
            try {
              await c.waitFor((t, ended) => ended || parseHead(t) !== undefined, gapMs + SLACK_MS + (trickleMs > 0 ? 1000 : 0), 'an answer');
            } catch {
              assert.fail(`${ctx}: no answer ${Math.round(performance.now() - t0)} ms after the client went slow`);
            }
            const h = parseHead(c.text);
            assert.ok(h !== undefined, `${ctx}: the connection closed without an answer`);
            assert.equal(h.status, 408, `${ctx}: ${c.text.slice(0, 400)}`);
            assert.match(h.get('proxy-status') ?? '', /http_request_error/, `${ctx}: ${c.text.slice(0, 400)}`);
          } finally {
            clearInterval(trickle);
            c.destroy();
          }
        }),
      );
      const t1 = performance.now();
      while (upstream.sockets.size > 0 && performance.now() - t1 < SLACK_MS) await new Promise((r) => setTimeout(r, 25));
      assert.equal(upstream.sockets.size, 0, `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}), front ${front}: ${upstream.sockets.size} upstream connections still open after the 408s`);
    });
  });
}

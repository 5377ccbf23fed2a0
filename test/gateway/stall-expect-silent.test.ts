import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startOneUpstreamGateway, type TestGateway } from '../helpers/gateway.js';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { seededRandom } from '../helpers/seeded.js';
import { startRawServer, type RawServer } from '../helpers/scripted-upstream.js';

/**
 * Stall hunt (session 13): a request with `Expect: 100-continue` to an upstream that reads
 * the head and then says nothing (no 100, no final answer: hung, or waiting for a body it
 * never asked for). The client waits for the 100, as RFC 9110 §10.1.1 asks.
 *
 * The try's wait for the head (ResponseTimer, headers phase) is extended while the request
 * body is still being sent (`#stillSending`: bytes moved, or the buffer towards the upstream
 * is not full). Attempt.uploading() returns the body relay whenever it has not ended, so
 * here — nothing moves, and the relay's buffer is empty because the client sends nothing —
 * the wait is extended at every deadline, for ever. The client's body timer does not run
 * either (deferred until the 100 or a first byte). The forward proxy's relay does not count
 * an upload the destination has not asked for (ForwardRelay.uploading: `!this.#awaiting`);
 * the gateway's does.
 *
 * The client must get an answer (a 504 http_response_timeout) within the response timeout
 * plus slack.
 */

const SLACK_MS = 3000;

let upstream: RawServer;

before(async () => {
  upstream = await startRawServer((s) => s.on('data', () => {})); // reads the head (and anything else), answers nothing
});

after(() => upstream.close());

for (const front of ['node', 'net'] as const) {
  describe(`front ${front}: Expect: 100-continue to an upstream that never answers`, () => {
    const rand = seededRandom();
    const responseMs = 300 + rand.int(700);
    let gw: TestGateway;
    before(async () => {
      gw = await startOneUpstreamGateway(upstream.port, { listener: { front }, cluster: { timeouts: { response: `${responseMs}ms` } } });
    });
    after(() => gw.close());

    test('the client waiting for the 100 gets a 504 at the response timeout (seeded)', { timeout: 60_000 }, async () => {
      const lengths = [1, 16384, 65536, 1 + rand.int(4 << 20)];
      await Promise.all(
        lengths.map(async (length) => {
          const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}), front ${front}: response timeout ${responseMs} ms, Content-Length ${length}`;
          const c = new RawConn(gw.port);
          try {
            const t0 = performance.now();
            await c.write(`PUT /upload HTTP/1.1\r\nHost: app.test\r\nContent-Type: application/octet-stream\r\nContent-Length: ${length}\r\nExpect: 100-continue\r\n\r\n`);
            let text: string;
            try {
              text = await c.waitFor((t, ended) => ended || parseHead(t) !== undefined, responseMs + SLACK_MS, 'an answer');
            } catch {
              assert.fail(`${ctx}: no answer ${Math.round(performance.now() - t0)} ms after the request head (the client is waiting for a 100 that never comes)`);
            }
            const h = parseHead(text);
            assert.ok(h !== undefined, `${ctx}: the connection closed without an answer`);
            assert.notEqual(h.status, 100, `${ctx}: a 100 nobody sent`);
            assert.equal(h.status, 504, `${ctx}: ${text.slice(0, 300)}`);
          } finally {
            c.destroy();
          }
        }),
      );
    });
  });
}

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { seededRandom } from '../helpers/seeded.js';
import { onFirstHead, startRawServer, type RawServer } from '../helpers/scripted-upstream.js';

/**
 * Stall hunt (session 13): a request whose answer is complete before its body is (the
 * upstream answers at the head and never reads the body: a 413, a redirect, an early 200).
 * The answer ends, the front reads and drops the rest of the body so the next request can
 * be parsed (the net front's `#finished` → `req.resume()`, Node's `req._dump()`).
 *
 * Node's front arms the keep-alive timeout when the answer finishes (resOnFinish →
 * socket.setTimeout(keepAliveTimeout)), so a client that then goes silent is closed. The net
 * front (src/gateway/net-front.ts) armed nothing in that state (until session 14: `#finished`
 * armed T_IDLE only when the connection was `idle`, which it is not while `#body` is set, and
 * `#bodyDone` armed nothing when the dropped body completed), so a client that stopped
 * mid-body, or that sent the whole body and then idled, held the connection for ever. Now
 * T_DUMP times the dropping like Node's socket timeout.
 *
 * Every wait here is bounded: the connection must be closed within CLOSE_WITHIN ms of the
 * client going silent (the listener's keep-alive, head and body timeouts are 300–500 ms).
 */

const CLOSE_WITHIN = 5000;

let upstream: RawServer;

/** Answers every request head at once with a complete `200 ok`, and never reads a body (bytes are dropped). */
before(async () => {
  upstream = await startRawServer((s) => onFirstHead(s, () => s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')));
});

after(() => upstream.close());

for (const front of ['node', 'net'] as const) {
  describe(`front ${front}: an answer complete before the request body`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startTestGateway({
        listeners: [{ address: '127.0.0.1', port: 0, front, keepAliveTimeout: '300ms', requestHeaderTimeout: '500ms', clientBodyTimeout: '500ms' }],
        clusters: { up: { endpoints: [upstream.url], outlierDetection: { enabled: false } } },
        routes: [{ cluster: 'up', retry: { tries: 1 } }],
      } as never);
    });
    after(() => gw.close());

    /** POST with `length` announced and `first` bytes sent; resolves once the whole `200 ok` is read. */
    async function postAndRead(length: number, first: number, ctx: string): Promise<RawConn> {
      const c = new RawConn(gw.port);
      await c.write(`POST /early HTTP/1.1\r\nHost: app.test\r\nContent-Type: application/octet-stream\r\nContent-Length: ${length}\r\n\r\n`);
      if (first > 0) await c.write(Buffer.alloc(first, 0x61));
      await c.waitFor((t) => {
        const h = parseHead(t);
        return h !== undefined && t.length >= h.end + 2;
      }, 5000, `${ctx}: the answer`);
      assert.equal(parseHead(c.text)!.status, 200, `${ctx}: ${c.text.slice(0, 300)}`);
      return c;
    }

    async function closedWithin(c: RawConn, ctx: string): Promise<void> {
      const t0 = performance.now();
      try {
        await c.closed(CLOSE_WITHIN);
      } catch {
        assert.fail(`${ctx}: the gateway still held the connection ${Math.round(performance.now() - t0)} ms after the client went silent (keep-alive 300 ms, head 500 ms, body 500 ms)`);
      } finally {
        c.destroy();
      }
    }

    test('a client that stops mid-body after the answer is not held for ever (seeded)', { timeout: 60_000 }, async () => {
      const rand = seededRandom();
      const lengths = [1000, 16384, 65536, 1 << 20];
      await Promise.all(
        lengths.map(async (length) => {
          const first = 1 + rand.int(Math.min(length - 1, 8192));
          const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}), front ${front}: Content-Length ${length}, ${first} bytes, then silence`;
          const c = await postAndRead(length, first, ctx);
          await closedWithin(c, ctx);
        }),
      );
    });

    test('a client that sends the rest of its body after the answer, then idles, is closed at the keep-alive timeout (seeded)', { timeout: 60_000 }, async () => {
      const rand = seededRandom();
      const lengths = [1000, 16384, 65536, 1 << 20];
      await Promise.all(
        lengths.map(async (length) => {
          const first = 1 + rand.int(Math.min(length - 1, 8192));
          const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}), front ${front}: Content-Length ${length}, ${first} bytes, the answer, the other ${length - first}, then idle`;
          const c = await postAndRead(length, first, ctx);
          // Not awaited: a front that stops reading the dropped body (or closes) must not block the test.
          c.socket.write(Buffer.alloc(length - first, 0x61), () => {});
          await closedWithin(c, ctx);
        }),
      );
    });
  });
}

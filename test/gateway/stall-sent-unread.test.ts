import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { startOneUpstreamGateway, type LogLine, type TestGateway } from '../helpers/gateway.js';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { seededRandom } from '../helpers/seeded.js';
import { onHeads, startRawServer, type RawServer } from '../helpers/scripted-upstream.js';
import { until as untilEvery } from '../helpers/until.js';

/**
 * Stall hunt (session 14): a streamed answer whose last bytes the gateway has accepted from
 * the upstream and written with `res.end()`, while the client has stopped reading. The
 * client's socket buffers (the kernel's) are full, and a few KiB (under the 16 KiB mark at
 * which `write()` returns false) wait in the gateway's own socket buffer. `write()` never said
 * "full", so the try's ResponseTimer never paused and never armed the send timeout, and
 * `onComplete` stopped it. Node finishes the response only when those bytes leave, so no
 * keep-alive timer starts either (node:http arms it at 'finish'; the listener sets no
 * requestTimeout, and server.timeout is 0). The net front likewise waits for the write's
 * callback. The connection, the request's in-flight count (the graceful drain waits for it),
 * its admission slot and its record were held for as long as the client liked.
 *
 * The listener's sendTimeout ("longest time a client may leave a response unread") must
 * apply: within the send timeout plus slack the request ends (its access-log line is written)
 * and the connection is closed.
 *
 * How the state is reached: the test upstream sends the body in 8 KiB chunks, each only once
 * the gateway has handed the one before to the client's socket, until the gateway's side of
 * the client connection has bytes it could not write (the kernel's buffers are full); then it
 * ends the body. Every loop is bounded in chunks and time.
 */

const SEND_MS = 400;
const SLACK_MS = 3000;
const CHUNK = 8 * 1024;
const MAX_CHUNKS = 8192; // 64 MiB: far beyond the loopback socket buffers
const FILL_WITHIN_MS = 20_000;

/** The upstream connections, by the request path that came on them. */
const upstreamBy = new Map<string, Socket>();
let upstream: RawServer;

before(async () => {
  upstream = await startRawServer((s) =>
    onHeads(s, (_head, path) => {
      if (path.startsWith('/small')) {
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        return;
      }
      upstreamBy.set(path, s);
      s.write('HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n');
    }),
  );
});

after(() => upstream.close());

/** The gateway's side of a client connection (in this process). */
function gatewaySide(gwPort: number, client: Socket): Socket {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  for (const h of handles) if (h instanceof Socket && h.localPort === gwPort && h.remotePort === client.localPort) return h;
  throw new Error(`no gateway socket for client port ${client.localPort}`);
}

/** Polled every millisecond: the fill loop waits on each chunk. */
const until = (ok: () => boolean, ms: number): Promise<boolean> => untilEvery(ok, ms, 1);

for (const front of ['node', 'net'] as const) {
  describe(`front ${front}: a whole answer written, its last bytes stuck in the socket buffer of a client that stopped reading`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startOneUpstreamGateway(upstream.port, { listener: { front, sendTimeout: `${SEND_MS}ms`, keepAliveTimeout: '300ms' } });
    });
    after(() => gw.close());

    test('the send timeout ends the request and closes the connection (seeded: pipelined next request or not)', { timeout: 90_000 }, async () => {
      const rand = seededRandom();
      const cases = [false, true, rand.next() < 0.5];
      for (const [i, pipelined] of cases.entries()) {
        const path = `/fill/${front}/${rand.seed}/${i}`;
        const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}), front ${front}, case ${i}${pipelined ? ' (a second request pipelined behind it)' : ''}`;
        const c = new RawConn(gw.port);
        try {
          await c.write(`GET ${path} HTTP/1.1\r\nHost: app.test\r\n\r\n`);
          assert.ok(await until(() => upstreamBy.has(path), 5000), `${ctx}: the request did not reach the upstream`);
          const up = upstreamBy.get(path)!;
          up.write('2\r\nhi\r\n'); // the head goes out with the first body bytes
          await c.waitFor((t) => parseHead(t) !== undefined, 5000, `${ctx}: the answer's head`);
          const id = parseHead(c.text)!.get('x-request-id');
          assert.ok(id !== undefined, `${ctx}: no request id in ${c.text.slice(0, 300)}`);
          c.socket.pause(); // the client reads nothing more
          if (pipelined) await c.write('GET /small HTTP/1.1\r\nHost: app.test\r\n\r\n');
          const gs = gatewaySide(gw.port, c.socket);
          // Fill the client's socket buffers, a chunk at a time, until the gateway keeps bytes of its own.
          const t0 = performance.now();
          let chunks = 0;
          const chunk = Buffer.alloc(CHUNK, 0x66);
          while (gs.writableLength === 0) {
            assert.ok(chunks < MAX_CHUNKS && performance.now() - t0 < FILL_WITHIN_MS, `${ctx}: the gateway's socket buffer did not fill after ${chunks} chunks`);
            const before = gs.bytesWritten;
            up.write(`${CHUNK.toString(16)}\r\n`);
            up.write(chunk);
            up.write('\r\n');
            chunks++;
            assert.ok(await until(() => gs.destroyed || gs.bytesWritten >= before + CHUNK, 5000), `${ctx}: chunk ${chunks} was not passed on to the client's socket`);
            assert.ok(!gs.destroyed, `${ctx}: the gateway closed the connection while the client's buffers filled (chunk ${chunks})`);
          }
          const left = gs.writableLength;
          assert.ok(left < 16 * 1024, `${ctx}: ${left} bytes left in the gateway's buffer: write() would have said "full" (the send timeout's own case, not this one)`);
          up.write('0\r\n\r\n'); // the body ends: the gateway ends the answer with end()
          const t1 = performance.now();
          let line: LogLine | undefined;
          try {
            line = await gw.logFor(id, SEND_MS + SLACK_MS);
          } catch {
            assert.fail(`${ctx}: the answer was ended ${Math.round(performance.now() - t1)} ms ago with ${left} bytes (${chunks} chunks sent) still in the gateway's socket buffer, the client reading nothing (send timeout ${SEND_MS} ms), and the request is still held: no access-log line for ${id} (in flight: ${gw.gw.ctx.inflight})`);
          }
          assert.ok(await until(() => gs.destroyed, SLACK_MS), `${ctx}: the request ended (${JSON.stringify(line)}) but the connection is still open`);
          assert.equal(line!.endedBy, 'client', `${ctx}: ${JSON.stringify(line)}`);
          assert.ok(await until(() => gw.gw.ctx.inflight === 0, SLACK_MS), `${ctx}: ${gw.gw.ctx.inflight} requests still in flight`);
        } finally {
          c.destroy();
        }
      }
    });
  });
}

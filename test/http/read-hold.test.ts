import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { headBegun, heldHead, holdReading, releaseReading } from '../../src/http/read-hold.js';
import { RawConn } from '../helpers/raw-conn.js';
import { seededRun } from '../helpers/seeded.js';

/**
 * The head held by a connection whose reads were stopped gets one head timeout after the
 * release (read-hold.ts `headDue`), and that refusal is not taken for the gateway's own wait.
 * Finding (session 33, test/gateway/pipelining-held-head.test.ts failing under a loaded test
 * run: "54 pipelined and a head begun, never completed: a 408 after the answers", the
 * connection closed by the keep-alive timeout without one): `headDue` is a Node timer, armed
 * against the event loop's cached time, which lags `performance.now()` by however long the
 * loop turn had run before the release; `heldHead` measured the window from the release in
 * `performance.now()`, so the timer came back inside the window by that lag, and the server's
 * refusal path let the 408 pass as the gateway's wait. Nothing timed the head again.
 *
 * Here the lag is made on purpose: the release comes at the end of a loop turn busy for
 * `lag` ms (seeded), as a turn answering hundreds of pipelined requests is.
 */
test('seeded: a held head never completed gets its head timeout after the release, whatever the loop turn of the release cost', { timeout: 60_000 }, async () => {
  await seededRun('read-hold head due', async (rand) => {
    for (let round = 0; round < 4; round++) {
      const timeoutMs = 150 + Math.floor(rand() * 150);
      const lag = 30 + Math.floor(rand() * 60);
      const where = `head timeout ${timeoutMs} ms, release after a loop turn of ${lag} ms`;
      const refused: Array<{ code: string; held: boolean }> = [];
      let seen: () => void = () => {};
      const refusal = new Promise<void>((r) => (seen = r));
      let first: () => void = () => {};
      const answered = new Promise<void>((r) => (first = r));
      // The first request is answered; the head behind it, in the same write, never completes.
      const server = createServer({ headersTimeout: timeoutMs, requestTimeout: 0, connectionsCheckingInterval: 60_000 }, (_req, res) => {
        res.end('ok');
        res.once('finish', () => first());
      });
      let socket: Socket | undefined;
      let arrived: () => void = () => {};
      const connected = new Promise<void>((r) => (arrived = r));
      server.on('connection', (s: Socket) => {
        socket = s;
        arrived();
      });
      // As the gateway's refusal path does (gateway/server.ts): a held head's timeout is let pass.
      server.on('clientError', (err: NodeJS.ErrnoException, s: Socket) => {
        const held = heldHead(s);
        refused.push({ code: err.code ?? '', held });
        if (!held) {
          s.destroy();
          seen();
        }
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const conn = new RawConn((server.address() as AddressInfo).port);
      try {
        await connected;
        await conn.write('GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /never HTTP/1.1\r\nHost: x\r\n');
        // The read that brought both was parsed once the first request's answer is out.
        await answered;
        await connected;
        assert.ok(headBegun(socket!), `${where}: the head begun in the parser`);
        // Held, then released at the end of a loop turn that ran `lag` ms (the loop's cached time lags by as much).
        await new Promise<void>((r) => setImmediate(r));
        assert.ok(holdReading(socket!), `${where}: held`);
        const end = performance.now() + lag;
        while (performance.now() < end) {
          // a busy loop turn
        }
        releaseReading(socket!);
        await Promise.race([refusal, conn.closed(timeoutMs * 4 + 2000).then(() => undefined, () => undefined)]);
        await new Promise<void>((r) => setTimeout(r, 0));
        assert.ok(
          refused.some((x) => !x.held && x.code === 'ERR_HTTP_REQUEST_TIMEOUT'),
          `${where}: no refusal of the head after the release that the server would answer (refusals: ${JSON.stringify(refused)})`,
        );
      } finally {
        conn.destroy();
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
      }
    }
  });
});

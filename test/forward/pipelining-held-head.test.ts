import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { heldHeadRound, startHoldingOrigin } from '../helpers/held-head.js';
import { RawConn } from '../helpers/raw-conn.js';
import { seededRun } from '../helpers/seeded.js';
import { GUARD_MS, LATE_MS } from '../helpers/time-bounds.js';
import { accessLines, basic, quickCheckUsers, startTestProxy, type TestProxy } from './helpers.js';

/**
 * The HTTP proxy's front: a connection the proxy stops reading (too many of its pipelined
 * requests wait, http/read-hold.ts) is not answered 408, nor closed, for the head it holds,
 * however long the hold outlasts the head timeout (`timeouts.handshake`; the wait for a later
 * head, `clientKeepAlive + handshake`). The proxy's own wait is not the client's slowness.
 * The reverse gateway's node front had that fault (test/gateway/pipelining-held-head.test.ts);
 * the forward front times heads itself (`HeadTimer`, not node:http's headersTimeout, which its
 * `requestTimeout: 0` turns off), and this guards it.
 *
 * The client's own slowness still gets its timeout: a head begun in the held bytes and never
 * completed is answered 408 `request_timeout` (and recorded) a head timeout after the answers
 * before it, as a partial head that arrives after them is (slow-head.test.ts), not closed
 * without a word as an idle connection is.
 *
 * Seeded over the number of requests pipelined past the hold, the handshake and keep-alive
 * times, and whether the held head is completed after the release or never. Synchronised on
 * events: the destination holds what may run; another client's head, begun after the held
 * connection was accepted, gets its 408 first, so the held connection's own head deadline has
 * passed too.
 *
 * The head times here are short (a probe's head must time out in each round), so nothing but
 * the heads may run against them. The first request's password check does when it is under
 * way (a promise: the first check of a proxy starts its scrypt thread), and must answer within
 * the head's time (forward/head-deadline.ts, pipeline.ts `CheckDeadline`): on a loaded machine
 * a thread's start and a scrypt run outlasted a 101 ms handshake, the first request was
 * answered 408 and its connection closed, so the partial-head test saw no answer and the held
 * round's origin was never reached (the wait for it had no bound: a hang). So each round's
 * proxy checks the credentials once first (`checkedOnce`), and the rounds' checks are answered
 * at once from its cache. And where the held head is completed, the client writes the rest of
 * it after reading every answer, while the wait for a later head (`clientKeepAlive +
 * handshake`) runs: the keep-alive time there exceeds the client's turn by more than LATE_MS.
 */

/**
 * Has the proxy on `port` check the credentials of `request` (a request with `Connection:
 * close` to an origin that answers at once) and remember them (tenants/user-directory.ts: a
 * name and password verified recently are answered at once, with no deadline). A 408 is the
 * check outlasting this request's head time: the check goes on, and is asked again (each try
 * waits for its answer), until a 200; bounded by GUARD_MS.
 */
async function checkedOnce(port: number, request: string, where: string): Promise<void> {
  const until = performance.now() + GUARD_MS;
  for (;;) {
    const c = new RawConn(port);
    try {
      await c.write(request);
      const text = await c.closed(GUARD_MS);
      if (/^HTTP\/1\.1 200 /.test(text)) return;
      assert.match(text, /^HTTP\/1\.1 408 /, `${where}: the credentials' first check answered 200, or 408 while the check ran (got ${JSON.stringify(text.slice(0, 300))})`);
    } finally {
      c.destroy();
    }
    assert.ok(performance.now() < until, `${where}: the credentials' check not remembered within ${GUARD_MS} ms`);
  }
}

/** An origin that answers every request at once, `x-n: <path>`. */
async function answeringOrigin(): Promise<{ server: Server; origin: string }> {
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'x-n': req.url!.slice(1), 'content-length': '2' });
    res.end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, origin: `127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function closeOrigin(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

describe('HTTP proxy: a head held while its connection is not read is not timed out', () => {
  test('seeded family: pipelined past the hold × handshake / keep-alive times × held head completed or never', { timeout: 120_000 }, async () => {
    const dest = await startHoldingOrigin();
    const origin = `127.0.0.1:${dest.port}`;
    const auth = basic();
    const head = (path: string): string => `GET http://${origin}/${path} HTTP/1.1\r\nHost: ${origin}\r\nProxy-Authorization: ${auth}\r\n`;
    const quick = await answeringOrigin();
    const warm = `GET http://${quick.origin}/warm HTTP/1.1\r\nHost: ${quick.origin}\r\nProxy-Authorization: ${auth}\r\nConnection: close\r\n\r\n`;
    const conns: RawConn[] = [];
    let p: TestProxy | undefined;
    try {
      await seededRun('forward held head', async (rand) => {
        for (const completes of [true, false, rand() < 0.5]) {
          const handshakeMs = 150 + Math.floor(rand() * 250);
          // A head completed after the answers is written once the client has read them all, as the
          // wait for it runs: that wait exceeds the client's turn by more than LATE_MS. One never
          // completed is answered 408 at its end: short, the round is not slower for it.
          const keepAliveMs = (completes ? LATE_MS : 0) + 150 + Math.floor(rand() * 350);
          p = await startTestProxy({ auth: { required: true, users: await quickCheckUsers() }, timeouts: { handshake: `${handshakeMs}ms`, clientKeepAlive: `${keepAliveMs}ms` } });
          try {
            await checkedOnce(p.port, warm, `handshake ${handshakeMs} ms`);
            const { text, where } = await heldHeadRound({ port: p.port, origin: dest, head, completes, context: `handshake ${handshakeMs} ms, keep-alive ${keepAliveMs} ms`, rand, conns });
            if (!completes) {
              // The head never completed is the client's slowness: a 408 after the answers, recorded.
              const last = /HTTP\/1\.1 (\d{3}) [^]*$/.exec(text.slice(text.lastIndexOf('HTTP/1.1 ')));
              assert.equal(last?.[1], '408', `${where}: the last answer is a 408 (got ${JSON.stringify(text.slice(-200))})`);
              const rid = /\r\nx-request-id: ([^\r]*)[^]*$/i.exec(text.slice(text.lastIndexOf('HTTP/1.1 ')))?.[1];
              assert.ok(rid !== undefined, `${where}: the 408 has a request id`);
              const line = accessLines(p.lines).find((l) => l.requestId === rid);
              assert.equal(line?.reason, 'request_timeout', `${where}: the 408 recorded`);
            }
          } finally {
            for (const c of conns.splice(0)) c.destroy();
            dest.dropHeld();
            await p.close();
          }
        }
      });
    } finally {
      await p?.close();
      await dest.close();
      await closeOrigin(quick.server);
    }
  });

  test('seeded: a partial head pipelined behind a complete request (no hold) gets its 408 after the answer, not a silent close', { timeout: 60_000 }, async () => {
    const dest = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'x-n': req.url!.slice(1), 'content-length': '2' });
      res.end('ok');
    });
    await new Promise<void>((r) => dest.listen(0, '127.0.0.1', r));
    const origin = `127.0.0.1:${(dest.address() as AddressInfo).port}`;
    const head = (path: string): string => `GET http://${origin}/${path} HTTP/1.1\r\nHost: ${origin}\r\nProxy-Authorization: ${basic()}\r\n`;
    try {
      await seededRun('forward pipelined partial head', async (rand) => {
        for (let round = 0; round < 3; round++) {
          const handshakeMs = 100 + Math.floor(rand() * 300);
          const keepAliveMs = 100 + Math.floor(rand() * 300);
          const complete = 1 + Math.floor(rand() * 4);
          const where = `${complete} complete and a partial head in one write, handshake ${handshakeMs} ms, keep-alive ${keepAliveMs} ms`;
          const p = await startTestProxy({ auth: { required: true, users: await quickCheckUsers() }, timeouts: { handshake: `${handshakeMs}ms`, clientKeepAlive: `${keepAliveMs}ms` } });
          let conn: RawConn | undefined;
          try {
            // The credentials checked once: the first request's check is answered at once, not raced against the short head time.
            await checkedOnce(p.port, `${head('warm')}Connection: close\r\n\r\n`, where);
            conn = new RawConn(p.port);
            let bytes = '';
            for (let i = 0; i < complete; i++) bytes += `${head(String(i))}\r\n`;
            await conn.write(bytes + head('partial').slice(0, 20 + Math.floor(rand() * 40)));
            const text = await conn.closed(GUARD_MS);
            const order = [...text.matchAll(/x-n: (\d+)/gi)].map((m) => Number(m[1]));
            assert.deepEqual(order, Array.from({ length: complete }, (_, i) => i), `${where}: every answer, in order (got ${JSON.stringify(text.slice(0, 400))})`);
            const last = text.slice(text.lastIndexOf('HTTP/1.1 '));
            assert.match(last, /^HTTP\/1\.1 408 /, `${where}: the last answer is a 408 (got ${JSON.stringify(text.slice(-200))})`);
            const rid = /\r\nx-request-id: ([^\r]*)/i.exec(last)?.[1];
            assert.equal(accessLines(p.lines).find((l) => l.requestId === rid)?.reason, 'request_timeout', `${where}: the 408 recorded`);
          } finally {
            conn?.destroy();
            await p.close();
          }
        }
      });
    } finally {
      dest.closeAllConnections();
      await new Promise<void>((r) => dest.close(() => r()));
    }
  });
});

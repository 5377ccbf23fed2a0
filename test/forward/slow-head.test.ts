import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { accessLine, basic, quickCheckUsers, readUntil, startOrigin, startTestProxy } from './helpers.js';
import { prng } from '../helpers/seeded.js';
import { EARLY_MS, GUARD_MS, LATE_MS, assertFiredOnTime } from '../helpers/time-bounds.js';

/**
 * Issue 14, finding 12 (forward part): the first request head is cut at `handshake`
 * (counted from the connection), not `handshake + clientKeepAlive`, and answered 408
 * `request_timeout` with Proxy-Status and a request id when part of it arrived; SOCKS
 * handshakes that time out are logged with the named reason.
 */


const SEED = Number(process.env.GATEWISE_SEED ?? Date.now() % 1_000_000);
/**
 * The keep-alive time of the first test: it must exceed the handshake time by more than
 * LATE_MS, so that a cut at handshake + clientKeepAlive (the defect this file guards) is
 * told apart from a cut at handshake seen late on a loaded machine.
 */
const LONG_KEEPALIVE_MS = 3 * LATE_MS;

/**
 * A connection to the proxy, and `t0`: a moment before the proxy accepted it (taken before
 * the connect), so the proxy's handshake deadline, armed at the accept, cannot start before
 * it. Measured from `t0`, a cut is never early by scheduling: delays only make it later.
 */
async function dialTimed(port: number): Promise<{ s: Socket; t0: number }> {
  const t0 = performance.now();
  const s = connect(port, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  return { s, t0 };
}

describe('slow request heads and SOCKS handshakes on the forward listener', () => {
  it(`a partial first head is cut at handshake with 408 request_timeout, for several handshake times (seed ${SEED})`, { timeout: 60_000 }, async () => {
    const rand = prng(SEED);
    for (let round = 0; round < 4; round++) {
      const h = 200 + Math.floor(rand() * 600);
      const p = await startTestProxy({ timeouts: { handshake: `${h}ms`, clientKeepAlive: `${LONG_KEEPALIVE_MS}ms` } });
      try {
        const { s, t0 } = await dialTimed(p.port);
        s.write(`GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: 127.0.0.1:1\r\nProxy-Authorization: ${basic()}\r\n`);
        // Until the proxy closes the connection (after its 408); the guard is a failure bound.
        const buf = await readUntil(s, () => false, h + LONG_KEEPALIVE_MS + GUARD_MS);
        const took = performance.now() - t0;
        s.destroy();
        const text = buf.toString('latin1');
        const where = `handshake ${h} ms, answered after ${Math.round(took)} ms: ${JSON.stringify(text.slice(0, 60))}; rerun with GATEWISE_SEED=${SEED}`;
        assert.match(text, /^HTTP\/1\.1 408 /, where);
        assert.match(text, /\r\nproxy-status: [^\r]*error=http_request_error/i, where);
        const rid = /\r\nx-request-id: ([^\r]*)/i.exec(text)?.[1];
        assert.ok(rid, `a request id: ${where}`);
        // At handshake, counted from the connection: not before it, and not at handshake +
        // clientKeepAlive (LONG_KEEPALIVE_MS later, beyond the lateness a loaded machine adds).
        assertFiredOnTime(took, h, where);
        assert.ok(took < h + LONG_KEEPALIVE_MS, where);
        const line = await accessLine(p.lines, (l) => l.requestId === rid, `the 408's record: ${where}`);
        assert.equal(line.status, 408);
        assert.equal(line.reason, 'request_timeout');
      } finally {
        await p.close();
      }
    }
  });

  it('an idle keep-alive connection is closed without an answer (by clientKeepAlive + handshake at the latest)', { timeout: 20_000 }, async () => {
    const origin = await startOrigin();
    // A quick password check: the first request's check counts within the short handshake time.
    const p = await startTestProxy({ auth: { required: true, users: await quickCheckUsers() }, timeouts: { handshake: '400ms', clientKeepAlive: '300ms' } });
    try {
      const { s } = await dialTimed(p.port);
      // Before the request: the proxy's keep-alive wait cannot start before this.
      const sent = performance.now();
      s.write(`GET http://127.0.0.1:${origin.port}/a HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
      const first = await readUntil(s, (b) => b.toString('latin1').endsWith('\r\n0\r\n\r\n'), GUARD_MS);
      assert.match(first.toString('latin1'), /^HTTP\/1\.1 200 /);
      // After the answer: the keep-alive wait started before this (a later start only shortens `took`).
      const t0 = performance.now();
      // Until the proxy closes the connection; the guard is a failure bound.
      const rest = await readUntil(s, () => false, GUARD_MS);
      const closedAt = performance.now();
      const took = closedAt - t0;
      assert.equal(rest.length, 0, `no answer on an idle connection: ${rest.toString('latin1').slice(0, 40)}`);
      assert.ok(s.destroyed || s.readableEnded, 'the proxy closed the idle connection');
      // Not before clientKeepAlive (counted from before the request, so never early by scheduling),
      // and by clientKeepAlive + handshake, give or take the lateness of a loaded machine.
      assert.ok(closedAt - sent >= 300 - EARLY_MS, `closed ${Math.round(closedAt - sent)} ms after the request, before clientKeepAlive`);
      assert.ok(took < 300 + 400 + LATE_MS, `closed after ${Math.round(took)} ms`);
      s.destroy();
    } finally {
      await p.close();
      await origin.close();
    }
  });

  it('a partial second head on a keep-alive connection gets 408 (by clientKeepAlive + handshake)', { timeout: 20_000 }, async () => {
    const origin = await startOrigin();
    // A quick password check: the first request's check counts within the short handshake time.
    const p = await startTestProxy({ auth: { required: true, users: await quickCheckUsers() }, timeouts: { handshake: '400ms', clientKeepAlive: '300ms' } });
    try {
      const { s } = await dialTimed(p.port);
      const head = `GET http://127.0.0.1:${origin.port}/a HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\n`;
      s.write(head + '\r\n');
      const first = await readUntil(s, (b) => b.toString('latin1').endsWith('\r\n0\r\n\r\n'), GUARD_MS);
      assert.match(first.toString('latin1'), /^HTTP\/1\.1 200 /);
      const t0 = performance.now();
      s.write(head);
      // Until the proxy closes the connection after its 408; the guard is a failure bound.
      const rest = (await readUntil(s, () => false, GUARD_MS)).toString('latin1');
      const took = performance.now() - t0;
      assert.match(rest, /^HTTP\/1\.1 408 /, rest.slice(0, 40));
      // By clientKeepAlive + handshake, give or take the lateness of a loaded machine.
      assert.ok(took < 300 + 400 + LATE_MS, `answered after ${Math.round(took)} ms`);
      s.destroy();
    } finally {
      await p.close();
      await origin.close();
    }
  });

  it(`a stalled SOCKS5 handshake is closed at handshake and logged as request_timeout (seed ${SEED})`, { timeout: 30_000 }, async () => {
    const rand = prng(SEED ^ 0x50c5);
    const h = 200 + Math.floor(rand() * 600);
    const p = await startTestProxy({ timeouts: { handshake: `${h}ms` } });
    try {
      const { s, t0 } = await dialTimed(p.port);
      s.write(Buffer.from([0x05, 0x02, 0x00])); // one of two method bytes
      await once(s, 'close');
      const took = performance.now() - t0;
      assertFiredOnTime(took, h, `handshake ${h} ms; rerun with GATEWISE_SEED=${SEED}`);
      const line = await accessLine(p.lines, (l) => l.protocol === 'socks5', 'the SOCKS5 record');
      assert.equal(line.error, 'http_request_error');
      assert.equal(line.reason, 'request_timeout');
      assert.equal(line.endedBy, 'client');
    } finally {
      await p.close();
    }
  });
});

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { accessLines, basic, readUntil, startOrigin, startTestProxy, waitFor } from './helpers.js';
import { prng } from '../helpers/seeded.js';

/**
 * Issue 14, finding 12 (forward part): the first request head is cut at `handshake`
 * (counted from the connection), not `handshake + clientKeepAlive`, and answered 408
 * `request_timeout` with Proxy-Status and a request id when part of it arrived; SOCKS
 * handshakes that time out are logged with the named reason.
 */


const SEED = Number(process.env.GATEWISE_SEED ?? Date.now() % 1_000_000);
/** The deadline list's resolution plus scheduling slack on a shared machine. */
const SLACK_MS = 10 + 60;

async function dialTimed(port: number): Promise<{ s: Socket; t0: number }> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  return { s, t0: performance.now() };
}

describe('slow request heads and SOCKS handshakes on the forward listener', () => {
  it(`a partial first head is cut at handshake with 408 request_timeout, for several handshake times (seed ${SEED})`, { timeout: 60_000 }, async () => {
    const rand = prng(SEED);
    for (let round = 0; round < 4; round++) {
      const h = 200 + Math.floor(rand() * 600);
      const p = await startTestProxy({ timeouts: { handshake: `${h}ms`, clientKeepAlive: '5s' } });
      try {
        const { s, t0 } = await dialTimed(p.port);
        s.write(`GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: 127.0.0.1:1\r\nProxy-Authorization: ${basic()}\r\n`);
        const buf = await readUntil(s, () => false, h + 3000);
        const took = performance.now() - t0;
        s.destroy();
        const text = buf.toString('latin1');
        const where = `handshake ${h} ms, answered after ${Math.round(took)} ms: ${JSON.stringify(text.slice(0, 60))}; rerun with GATEWISE_SEED=${SEED}`;
        assert.match(text, /^HTTP\/1\.1 408 /, where);
        assert.match(text, /\r\nproxy-status: [^\r]*error=http_request_error/i, where);
        const rid = /\r\nx-request-id: ([^\r]*)/i.exec(text)?.[1];
        assert.ok(rid, `a request id: ${where}`);
        assert.ok(took >= h - 5 && took <= h + SLACK_MS, where);
        assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.requestId === rid)), 'logged');
        const line = accessLines(p.lines).find((l) => l.requestId === rid)!;
        assert.equal(line.status, 408);
        assert.equal(line.reason, 'request_timeout');
      } finally {
        await p.close();
      }
    }
  });

  it('an idle keep-alive connection is closed without an answer (by clientKeepAlive + handshake at the latest)', { timeout: 20_000 }, async () => {
    const origin = await startOrigin();
    const p = await startTestProxy({ timeouts: { handshake: '400ms', clientKeepAlive: '300ms' } });
    try {
      const { s } = await dialTimed(p.port);
      s.write(`GET http://127.0.0.1:${origin.port}/a HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
      const first = await readUntil(s, (b) => b.toString('latin1').endsWith('\r\n0\r\n\r\n'), 3000);
      assert.match(first.toString('latin1'), /^HTTP\/1\.1 200 /);
      const t0 = performance.now();
      const rest = await readUntil(s, () => false, 3000);
      const took = performance.now() - t0;
      assert.equal(rest.length, 0, `no answer on an idle connection: ${rest.toString('latin1').slice(0, 40)}`);
      assert.ok(took < 300 + 400 + SLACK_MS, `closed after ${Math.round(took)} ms`);
      s.destroy();
    } finally {
      await p.close();
      await origin.close();
    }
  });

  it('a partial second head on a keep-alive connection gets 408 (by clientKeepAlive + handshake)', { timeout: 20_000 }, async () => {
    const origin = await startOrigin();
    const p = await startTestProxy({ timeouts: { handshake: '400ms', clientKeepAlive: '300ms' } });
    try {
      const { s } = await dialTimed(p.port);
      const head = `GET http://127.0.0.1:${origin.port}/a HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\n`;
      s.write(head + '\r\n');
      const first = await readUntil(s, (b) => b.toString('latin1').endsWith('\r\n0\r\n\r\n'), 3000);
      assert.match(first.toString('latin1'), /^HTTP\/1\.1 200 /);
      const t0 = performance.now();
      s.write(head);
      const rest = (await readUntil(s, () => false, 3000)).toString('latin1');
      const took = performance.now() - t0;
      assert.match(rest, /^HTTP\/1\.1 408 /, rest.slice(0, 40));
      assert.ok(took < 300 + 400 + SLACK_MS, `answered after ${Math.round(took)} ms`);
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
      assert.ok(took >= h - 5 && took <= h + SLACK_MS, `handshake ${h} ms, closed after ${Math.round(took)} ms; rerun with GATEWISE_SEED=${SEED}`);
      assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.protocol === 'socks5')), 'logged');
      const line = accessLines(p.lines).find((l) => l.protocol === 'socks5')!;
      assert.equal(line.error, 'http_request_error');
      assert.equal(line.reason, 'request_timeout');
      assert.equal(line.endedBy, 'client');
    } finally {
      await p.close();
    }
  });
});

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startLab, type Lab } from '../../src/lab/index.js';
import { accessLine, accessLines, basic, dial, rawExchange, readUntil, startTestProxy, type TestProxy } from './helpers.js';
import { readLate } from '../helpers/late-reader.js';
import { GUARD_MS, assertFiredOnTime } from '../helpers/time-bounds.js';

/**
 * The HTTP proxy's waits on a destination (absolute-form, the ForwardRelay): the response
 * head within `responseHeaders`, body bytes no further apart than `responseBodyIdle`, and
 * neither counting delays that are not the destination's (a slow upload, a client that
 * does not read).
 */

let lab: Lab;
let p: TestProxy;

before(async () => {
  lab = await startLab();
  p = await startTestProxy({ timeouts: { responseHeaders: '600ms', responseBodyIdle: '600ms' } });
});

after(async () => {
  await p?.close();
  await lab?.close();
});

function head(path: string, extra = ''): string {
  return `GET ${lab.url}${path} HTTP/1.1\r\nHost: 127.0.0.1:${lab.port}\r\nProxy-Authorization: ${basic()}\r\n${extra}\r\n`;
}

/** The access line that satisfies `pred`, waited for as the log's lines land. */
function lineFor(pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  return accessLine(p.lines, pred);
}

describe('HTTP proxy response timeouts (head 600 ms, body idle 600 ms)', () => {
  it('a destination that never answers: 504 http_response_timeout after ~600 ms, in the log', async () => {
    // Before the connection: the proxy's response timer cannot start earlier.
    const t0 = performance.now();
    const text = await rawExchange(p.port, head('/hang', 'Connection: close\r\n'), GUARD_MS);
    const ms = performance.now() - t0;
    assert.match(text, /^HTTP\/1\.1 504 /);
    const ps = /\r\nproxy-status: ([^\r]*)/i.exec(text)?.[1] ?? '';
    assert.match(ps, /error=http_response_timeout/);
    assertFiredOnTime(ms, 600, 'the response-head timeout');
    const rid = /\r\nx-request-id: ([^\r]*)/i.exec(text)?.[1];
    const line = await lineFor((l) => l.requestId === rid);
    assert.equal(line.status, 504);
    assert.equal(line.error, 'http_response_timeout');
  });

  it('a body that stops mid-way: the client connection is cut (never a body that looks complete), connection_read_timeout', async () => {
    const before = accessLines(p.lines).length;
    const s = await dial(p.port);
    s.on('error', () => {});
    // Before the request: the proxy's body-idle timer, armed at the last body byte, cannot start earlier.
    const t0 = performance.now();
    s.write(head('/stall-body'));
    // Until the proxy cuts the connection; the guard is a failure bound.
    const buf = await readUntil(s, () => false, GUARD_MS);
    const ms = performance.now() - t0;
    const text = buf.toString('latin1');
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.match(text, /\r\ncontent-length: 1000\r\n/i);
    assert.ok(buf.length - text.indexOf('\r\n\r\n') - 4 < 1000, 'the body is short');
    assert.ok(s.destroyed || s.readableEnded, 'the proxy closed the connection');
    assertFiredOnTime(ms, 600, 'the body-idle timeout');
    const line = await lineFor((l) => accessLines(p.lines).indexOf(l) >= before && l.destination === `127.0.0.1:${lab.port}`);
    assert.equal(line.status, 200);
    assert.equal(line.endedBy, 'upstream');
    assert.equal(line.error, 'connection_read_timeout');
  });

  // The body lasts 1.5 s, longer than the 600 ms body-idle timeout: arriving whole proves the
  // wait is per gap, not for the whole body. The gaps are 100 ms (they were 300 ms): a gap seen
  // by the proxy is the lab's timer plus any stall of the process, and when a stall outlasts
  // (timeout − gap) both timers are due in the same turn and the proxy's fires before the
  // piece is read; 500 ms of margin rather than 300 keeps a loaded machine from tripping it.
  it('a body streamed in pieces 100 ms apart for 1.5 s (longer than the 600 ms idle timeout) arrives whole', async () => {
    const text = await rawExchange(p.port, head('/chunked?pieces=15&delay=100', 'Connection: close\r\n'), GUARD_MS);
    assert.match(text, /^HTTP\/1\.1 200 /);
    for (let i = 1; i <= 15; i++) assert.ok(text.includes(`piece ${i}\n`), `piece ${i}`);
    assert.match(text, /\r\n0\r\n\r\n$/, 'the chunked body is terminated');
  });

  it('a client that reads nothing for 1.5 s (backpressure) still gets all 64 MiB', { timeout: 60_000 }, async () => {
    const n = 64 * 1024 * 1024;
    const { head: text, bodyBytes } = await readLate(await dial(p.port), head(`/bytes?n=${n}`, 'Connection: close\r\n'), 1500);
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.equal(bodyBytes, n);
  });

  it('an upload sent in pieces 250 ms apart for 1.25 s is answered, not timed out', async () => {
    const s = await dial(p.port);
    s.on('error', () => {});
    const reply = readUntil(s, () => false, GUARD_MS);
    s.write(`POST ${lab.url}/upload HTTP/1.1\r\nHost: 127.0.0.1:${lab.port}\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\nContent-Length: 5120\r\n\r\n`);
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 250));
      s.write(Buffer.alloc(1024, 0x61));
    }
    const text = (await reply).toString('latin1');
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.match(text, /"bytes":5120/);
  });

  it('a client that leaves before the destination answers is logged as 499 ended by the client, not as a proxy failure', async () => {
    // A destination that reads the request and never answers, and tells when it has the
    // request and when the proxy let go of its connection: the test leaves on the first event
    // (it slept 100 ms before, and a destination answering 400 ms later raced that sleep on a
    // loaded machine) and checks the log after the second, by which the relay has settled.
    let gotRequest!: (c: Socket) => void;
    const arrived = new Promise<Socket>((resolve) => (gotRequest = resolve));
    const dest = createServer((c) => {
      c.on('error', () => {});
      c.once('data', () => gotRequest(c));
    });
    dest.listen(0, '127.0.0.1');
    await once(dest, 'listening');
    const port = (dest.address() as AddressInfo).port;
    try {
      const s = await dial(p.port);
      s.on('error', () => {});
      s.write(`GET http://127.0.0.1:${port}/left HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\n\r\n`);
      const upstream = await arrived;
      const released = once(upstream, 'close');
      s.destroy();
      const line = await lineFor((l) => l.destination === `127.0.0.1:${port}`);
      assert.equal(line.status, 499);
      assert.equal(line.endedBy, 'client');
      assert.equal(line.error, undefined);
      await released;
      const own = accessLines(p.lines).filter((l) => l.destination === `127.0.0.1:${port}`);
      assert.equal(own.length, 1, `one record: ${JSON.stringify(own)}`);
      assert.ok(!accessLines(p.lines).some((l) => l.error === 'proxy_internal_error'), JSON.stringify(accessLines(p.lines).filter((l) => l.error === 'proxy_internal_error')));
    } finally {
      dest.close();
    }
  });
});

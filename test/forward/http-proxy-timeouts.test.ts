import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startLab, type Lab } from '../../src/lab/index.js';
import { accessLines, basic, dial, rawExchange, readUntil, startTestProxy, waitFor, type TestProxy } from './helpers.js';
import { readLate } from '../helpers/late-reader.js';

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

async function lineFor(pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  assert.ok(await waitFor(() => accessLines(p.lines).some(pred)), 'an access log line');
  return accessLines(p.lines).find(pred)!;
}

describe('HTTP proxy response timeouts (head 600 ms, body idle 600 ms)', () => {
  it('a destination that never answers: 504 http_response_timeout after ~600 ms, in the log', async () => {
    const t0 = performance.now();
    const text = await rawExchange(p.port, head('/hang', 'Connection: close\r\n'), 5000);
    const ms = performance.now() - t0;
    assert.match(text, /^HTTP\/1\.1 504 /);
    const ps = /\r\nproxy-status: ([^\r]*)/i.exec(text)?.[1] ?? '';
    assert.match(ps, /error=http_response_timeout/);
    assert.ok(ms >= 550 && ms < 3000, `answered after ${Math.round(ms)} ms`);
    const rid = /\r\nx-request-id: ([^\r]*)/i.exec(text)?.[1];
    const line = await lineFor((l) => l.requestId === rid);
    assert.equal(line.status, 504);
    assert.equal(line.error, 'http_response_timeout');
  });

  it('a body that stops mid-way: the client connection is cut (never a body that looks complete), connection_read_timeout', async () => {
    const before = accessLines(p.lines).length;
    const s = await dial(p.port);
    s.on('error', () => {});
    s.write(head('/stall-body'));
    const t0 = performance.now();
    const buf = await readUntil(s, () => false, 5000);
    const ms = performance.now() - t0;
    const text = buf.toString('latin1');
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.match(text, /\r\ncontent-length: 1000\r\n/i);
    assert.ok(buf.length - text.indexOf('\r\n\r\n') - 4 < 1000, 'the body is short');
    assert.ok(s.destroyed || s.readableEnded, 'the proxy closed the connection');
    assert.ok(ms >= 550 && ms < 3000, `cut after ${Math.round(ms)} ms`);
    const line = await lineFor((l) => accessLines(p.lines).indexOf(l) >= before && l.destination === `127.0.0.1:${lab.port}`);
    assert.equal(line.status, 200);
    assert.equal(line.endedBy, 'upstream');
    assert.equal(line.error, 'connection_read_timeout');
  });

  it('a body streamed in pieces 300 ms apart for 1.5 s arrives whole', async () => {
    const text = await rawExchange(p.port, head('/chunked?pieces=6&delay=300', 'Connection: close\r\n'), 5000);
    assert.match(text, /^HTTP\/1\.1 200 /);
    for (let i = 1; i <= 6; i++) assert.ok(text.includes(`piece ${i}\n`), `piece ${i}`);
    assert.match(text, /\r\n0\r\n\r\n$/, 'the chunked body is terminated');
  });

  it('a client that reads nothing for 1.5 s (backpressure) still gets all 64 MiB', { timeout: 20_000 }, async () => {
    const n = 64 * 1024 * 1024;
    const { head: text, bodyBytes } = await readLate(await dial(p.port), head(`/bytes?n=${n}`, 'Connection: close\r\n'), 1500);
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.equal(bodyBytes, n);
  });

  it('an upload sent in pieces 250 ms apart for 1.25 s is answered, not timed out', async () => {
    const s = await dial(p.port);
    s.on('error', () => {});
    const reply = readUntil(s, () => false, 6000);
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
    const s = await dial(p.port);
    s.on('error', () => {});
    s.write(head('/slow-headers?ms=400&x=left', 'Connection: close\r\n'));
    await new Promise((r) => setTimeout(r, 100));
    s.destroy();
    const line = await lineFor((l) => typeof l.destination === 'string' && l.status === 499);
    assert.equal(line.endedBy, 'client');
    assert.equal(line.error, undefined);
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(!accessLines(p.lines).some((l) => l.error === 'proxy_internal_error'), JSON.stringify(accessLines(p.lines).filter((l) => l.error === 'proxy_internal_error')));
  });
});

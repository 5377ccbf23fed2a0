import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { accessLines, basic, dial, readUntil, startOrigin, startTestProxy, waitFor, type Origin, type TestProxy } from './helpers.js';
import { seededRun, between } from '../helpers/seeded.js';

/**
 * Adversarial review (framing): a CONNECT with a non-zero Content-Length or with
 * Transfer-Encoding was answered 200 and the bytes after its head relayed as tunnel data,
 * while a hop in front that honours the field frames them as the CONNECT's body (RFC 9110
 * §9.3.6: a CONNECT has no content). Refused 400 `http_request_error`, closed, recorded once,
 * the destination never dialled. `Content-Length: 0` frames nothing and is accepted.
 */

let p: TestProxy;
let origin: Origin;

before(async () => {
  p = await startTestProxy();
  origin = await startOrigin();
});

after(async () => {
  await p?.close();
  await origin?.close();
});

/** Send `bytes` on a fresh connection; everything read until the proxy closes it (a failure guard bounds the wait). */
async function untilClosed(bytes: string): Promise<string> {
  const s = await dial(p.port);
  s.on('error', () => {});
  s.write(bytes);
  const buf = await readUntil(s, () => false, undefined, 'the proxy to close the connection');
  s.destroy();
  return buf.toString('latin1');
}

const cases = (rand: () => number): Array<{ field: string; body: string }> => {
  const out: Array<{ field: string; body: string }> = [];
  const names = ['Content-Length', 'content-length', 'CONTENT-LENGTH', 'Content-length'];
  const tes = ['chunked', 'gzip, chunked', 'identity', 'Chunked'];
  const teNames = ['Transfer-Encoding', 'transfer-encoding', 'TRANSFER-ENCODING'];
  for (let i = 0; i < 4; i++) {
    const n = between(rand, 1, 64);
    out.push({ field: `${names[between(rand, 0, names.length - 1)]}: ${n}`, body: 'x'.repeat(rand() < 0.5 ? n : 0) });
  }
  for (let i = 0; i < 4; i++) {
    const te = tes[between(rand, 0, tes.length - 1)]!;
    out.push({ field: `${teNames[between(rand, 0, teNames.length - 1)]}: ${te}`, body: te.endsWith('hunked') && rand() < 0.5 ? '5\r\nhello\r\n0\r\n\r\n' : '' });
  }
  return out;
};

describe('a CONNECT with content framing', () => {
  it('is refused 400 with Proxy-Status and a request id, closed, recorded once, the destination never dialled (seeded family)', { timeout: 120_000 }, async () => {
    await seededRun('connect-framing', async (rand) => {
      const family = cases(rand);
      const before = accessLines(p.lines).length;
      for (const [i, c] of family.entries()) {
        const version = rand() < 0.5 ? '1.1' : '1.0';
        const head = `CONNECT 127.0.0.1:${origin.port} HTTP/${version}\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\n${c.field}\r\n\r\n`;
        const res = await untilClosed(head + c.body);
        const where = `case ${i}: ${JSON.stringify(c)} HTTP/${version}; got ${JSON.stringify(res.slice(0, 300))}`;
        assert.match(res, /^HTTP\/1\.1 400 /, where);
        assert.match(res, /\r\nproxy-status: [^\r]*error=http_request_error/i, where);
        assert.match(res, /\r\nx-request-id: \S+/i, where);
        assert.ok(await waitFor(() => accessLines(p.lines).length >= before + i + 1), `the record of ${where}`);
      }
      assert.equal(origin.connections, 0, 'the destination was dialled');
      const lines = accessLines(p.lines).slice(before);
      assert.equal(lines.length, family.length, JSON.stringify(lines));
      for (const l of lines) {
        assert.equal(l.status, 400, JSON.stringify(l));
        assert.equal(l.error, 'http_request_error', JSON.stringify(l));
      }
    });
  });

  it('Content-Length: 0 frames nothing: the tunnel opens', async () => {
    const s = await dial(p.port);
    s.on('error', () => {});
    s.write(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\nContent-Length: 0\r\n\r\n`);
    const head = await readUntil(s, (b) => b.includes('\r\n\r\n'), undefined, 'the answer to the CONNECT');
    assert.match(head.toString('latin1'), /^HTTP\/1\.1 200 /);
    s.write(`GET /through HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    const res = await readUntil(s, () => false, undefined, 'the origin to answer through the tunnel and close');
    assert.match(res.toString('latin1'), /^HTTP\/1\.1 200 /);
    s.destroy();
  });
});

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { accessLines, basic, completeResponse, dial, readUntil, refusedPort, startTestProxy, waitFor, type TestProxy } from './helpers.js';

/**
 * Issue 14, finding 9 (forward part): `Expect: 100-continue` on absolute-form requests is
 * the destination's to answer (RFC 9110 §10.1.1): the proxy forwards the expectation,
 * relays the destination's 100 or its final answer, and never says 100 itself, so a
 * client whose destination is down gets the 502 without uploading its body.
 */

interface Seen {
  expect: string | undefined;
  body: string;
}

let p: TestProxy;
let origin: Server;
let originPort = 0;
const seen: Seen[] = [];

before(async () => {
  // The destination decides on the head: /refuse answers 413 without reading the body,
  // anything else asks for it (100) and echoes it.
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const entry: Seen = { expect: req.headers.expect, body: '' };
    seen.push(entry);
    if (req.url === '/refuse') {
      res.writeHead(413, { 'content-length': '7', connection: 'close' });
      res.end('too big');
      return;
    }
    res.writeContinue();
    req.setEncoding('latin1');
    req.on('data', (d: string) => (entry.body += d));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(entry.body.length) });
      res.end(entry.body);
    });
  };
  origin = createServer(onRequest);
  origin.on('checkContinue', onRequest);
  origin.listen(0, '127.0.0.1');
  await once(origin, 'listening');
  originPort = (origin.address() as AddressInfo).port;
  p = await startTestProxy();
});

after(async () => {
  await p?.close();
  origin?.closeAllConnections();
  await new Promise<void>((r) => origin?.close(() => r()));
});

/**
 * A strict client: sends the head with `Expect: 100-continue`, and the body only after a
 * 100. Returns the heads and bodies it got, and whether it sent the body.
 */
async function expectingClient(port: number, path: string, body: string): Promise<{ interim: string | undefined; final: string; sentBody: boolean }> {
  const s = await dial(p.port);
  s.on('error', () => {});
  s.write(`POST http://127.0.0.1:${port}${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nProxy-Authorization: ${basic()}\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`);
  let buf = await readUntil(s, (b) => b.includes('\r\n\r\n'), 5000);
  let text = buf.toString('latin1');
  let interim: string | undefined;
  let sentBody = false;
  if (/^HTTP\/1\.1 100 /.test(text)) {
    const end = text.indexOf('\r\n\r\n') + 4;
    interim = text.slice(0, end);
    s.write(body);
    sentBody = true;
    const rest = text.slice(end);
    buf = await readUntil(s, (b) => completeResponse(rest + b.toString('latin1')), 5000);
    text = rest + buf.toString('latin1');
  } else if (!completeResponse(text)) {
    text += (await readUntil(s, (b) => completeResponse(text + b.toString('latin1')), 5000)).toString('latin1');
  }
  s.destroy();
  return { interim, final: text, sentBody };
}

describe('Expect: 100-continue through the HTTP proxy', () => {
  it("the expectation reaches the destination, whose 100 is relayed; then the body and its answer", async () => {
    seen.length = 0;
    const r = await expectingClient(originPort, '/echo', 'hello');
    assert.ok(r.interim, `a 100 before the final answer: ${JSON.stringify(r.final.slice(0, 60))}`);
    assert.match(r.final, /^HTTP\/1\.1 200 /);
    assert.ok(r.final.endsWith('\r\n\r\nhello'), JSON.stringify(r.final));
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.expect, '100-continue', 'the destination got the expectation');
    assert.equal(seen[0]!.body, 'hello');
  });

  it("a destination that refuses on the head: its final answer reaches the client, which never sends the body", async () => {
    seen.length = 0;
    const r = await expectingClient(originPort, '/refuse', 'hello');
    assert.equal(r.interim, undefined, 'no 100 from the proxy');
    assert.equal(r.sentBody, false);
    assert.match(r.final, /^HTTP\/1\.1 413 /, JSON.stringify(r.final.slice(0, 60)));
    assert.equal(seen[0]?.expect, '100-continue');
  });

  it('a destination that is down: 502 connection_refused, and the client never uploads its body', async () => {
    const port = await refusedPort();
    const r = await expectingClient(port, '/x', 'hello');
    assert.equal(r.interim, undefined, `no 100 from the proxy: ${JSON.stringify(r.final.slice(0, 40))}`);
    assert.equal(r.sentBody, false);
    assert.match(r.final, /^HTTP\/1\.1 502 /);
    assert.match(r.final, /\r\nproxy-status: [^\r]*error=connection_refused/i);
    const rid = /\r\nx-request-id: ([^\r]*)/i.exec(r.final)?.[1];
    assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.requestId === rid)));
    assert.equal(accessLines(p.lines).find((l) => l.requestId === rid)!.error, 'connection_refused');
  });

  it('a client that sends its body without waiting for the 100 is served as well', async () => {
    seen.length = 0;
    const s = await dial(p.port);
    s.on('error', () => {});
    s.write(`POST http://127.0.0.1:${originPort}/echo HTTP/1.1\r\nHost: 127.0.0.1:${originPort}\r\nProxy-Authorization: ${basic()}\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nhello`);
    const text = (await readUntil(s, (b) => b.toString('latin1').endsWith('\r\n\r\nhello'), 5000)).toString('latin1');
    s.destroy();
    assert.match(text, /^HTTP\/1\.1 100 [^\r]*\r\n\r\nHTTP\/1\.1 200 /, JSON.stringify(text.slice(0, 60)));
    assert.equal(seen[0]?.body, 'hello');
  });

  it('a destination that never answers the head: 504 http_response_timeout at responseHeaders', async () => {
    const hang = createServer(() => {});
    hang.on('checkContinue', () => {});
    hang.listen(0, '127.0.0.1');
    await once(hang, 'listening');
    const q = await startTestProxy({ timeouts: { responseHeaders: '300ms' } });
    try {
      const s = await dial(q.port);
      s.on('error', () => {});
      const port = (hang.address() as AddressInfo).port;
      const t0 = performance.now();
      s.write(`POST http://127.0.0.1:${port}/ HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nProxy-Authorization: ${basic()}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n`);
      const text = (await readUntil(s, (b) => completeResponse(b.toString('latin1')), 5000)).toString('latin1');
      const took = performance.now() - t0;
      s.destroy();
      assert.match(text, /^HTTP\/1\.1 504 /, JSON.stringify(text.slice(0, 40)));
      assert.match(text, /\r\nproxy-status: [^\r]*error=http_response_timeout/i);
      assert.ok(took >= 290 && took < 2000, `after ${Math.round(took)} ms`);
    } finally {
      await q.close();
      hang.closeAllConnections();
      hang.close();
    }
  });

  it('an unauthenticated client is answered 407 without a 100', async () => {
    const s = await dial(p.port);
    s.on('error', () => {});
    s.write(`POST http://127.0.0.1:${originPort}/echo HTTP/1.1\r\nHost: 127.0.0.1:${originPort}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n`);
    const text = (await readUntil(s, (b) => completeResponse(b.toString('latin1')), 5000)).toString('latin1');
    s.destroy();
    assert.match(text, /^HTTP\/1\.1 407 /, JSON.stringify(text.slice(0, 40)));
  });

  it('an expectation other than 100-continue is the proxy\'s own 417, named in Proxy-Status and recorded, never forwarded (Node answered a bare 417 with no record)', async () => {
    for (const expect of ['something-else', '200-ok', 'x=1']) {
      const before = seen.length;
      const linesBefore = accessLines(p.lines).length;
      const s = await dial(p.port);
      s.on('error', () => {});
      s.write(`GET http://127.0.0.1:${originPort}/echo HTTP/1.1\r\nHost: 127.0.0.1:${originPort}\r\nProxy-Authorization: ${basic()}\r\nExpect: ${expect}\r\n\r\n`);
      const text = (await readUntil(s, (b) => completeResponse(b.toString('latin1')))).toString('latin1');
      s.destroy();
      assert.match(text, /^HTTP\/1\.1 417 /, `${expect}: ${JSON.stringify(text.slice(0, 40))}`);
      assert.match(text, /\r\nproxy-status: [^\r]*error=http_request_error/i, `${expect}: ${text}`);
      assert.ok(await waitFor(() => accessLines(p.lines).length > linesBefore), `${expect}: a record`);
      const rec = accessLines(p.lines).at(-1)!;
      assert.equal(rec.status, 417, `${expect}: ${JSON.stringify(rec)}`);
      assert.equal(rec.reason, 'expectation_failed', JSON.stringify(rec));
      assert.equal(seen.length, before, `${expect}: nothing forwarded`);
    }
  });
});

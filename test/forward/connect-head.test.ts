import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parseConnectHead } from '../../src/forward/connect-head.js';
import { accessLines, rawExchange, startTestProxy, waitFor, type TestProxy } from './helpers.js';

const MAX = 16 * 1024;
const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** What Node's own parser (llhttp, strict) makes of the bytes: the CONNECT request, or 'refused'. */
async function nodeParse(server: Server, bytes: Buffer): Promise<{ url: string; headers: Record<string, unknown> } | 'refused'> {
  const port = (server.address() as AddressInfo).port;
  const sock = connect(port, '127.0.0.1');
  const got = new Promise<{ url: string; headers: Record<string, unknown> } | 'refused'>((resolve) => {
    const onConnect = (req: IncomingMessage, s: import('node:stream').Duplex): void => {
      server.off('connect', onConnect);
      s.destroy();
      resolve({ url: req.url ?? '', headers: { ...req.headers } });
    };
    server.on('connect', onConnect);
    sock.on('close', () => {
      server.off('connect', onConnect);
      resolve('refused');
    });
    sock.on('error', () => {});
  });
  sock.end(bytes);
  return got;
}

describe('CONNECT head fast path', () => {
  let server: Server;
  before(async () => {
    server = createServer({ requireHostHeader: false, joinDuplicateHeaders: false, insecureHTTPParser: false });
    server.on('clientError', (_err, s) => s.destroy());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  });
  after(() => {
    server.close();
  });

  it('parses the common head, keeps early tunnel bytes after it', () => {
    const head = 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Authorization: Basic YTpi\r\nUser-Agent: curl/8\r\n\r\n';
    const p = parseConnectHead(b(`${head}\x16\x03\x01`), MAX)!;
    assert.equal(p.url, 'example.com:443');
    assert.equal(p.headers['proxy-authorization'], 'Basic YTpi');
    assert.equal(p.headers['user-agent'], 'curl/8');
    assert.equal(p.length, head.length);
  });

  it('accepts IPv6 literals, HTTP/1.0 and trims OWS', () => {
    const p = parseConnectHead(b('CONNECT [::1]:8443 HTTP/1.0\r\nX-A: \t v  w \t\r\n\r\n'), MAX)!;
    assert.equal(p.url, '[::1]:8443');
    assert.equal(p.headers['x-a'], 'v  w');
  });

  const fallbacks: [string, string][] = [
    ['not CONNECT', 'GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['incomplete head', 'CONNECT a.com:443 HTTP/1.1\r\nHost: a.com'],
    ['obs-fold', 'CONNECT a.com:443 HTTP/1.1\r\nX-A: 1\r\n 2\r\n\r\n'],
    ['bare LF line end', 'CONNECT a.com:443 HTTP/1.1\nHost: a.com\n\n'],
    ['bare LF in a header', 'CONNECT a.com:443 HTTP/1.1\r\nHost: a.com\nX: y\r\n\r\n'],
    ['space before colon', 'CONNECT a.com:443 HTTP/1.1\r\nHost : a.com\r\n\r\n'],
    ['repeated field', 'CONNECT a.com:443 HTTP/1.1\r\nProxy-Authorization: Basic a\r\nProxy-Authorization: Basic b\r\n\r\n'],
    ['Content-Length', 'CONNECT a.com:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello'],
    ['Transfer-Encoding', 'CONNECT a.com:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n'],
    ['percent-encoded target', 'CONNECT a%2ecom:443 HTTP/1.1\r\n\r\n'],
    ['userinfo in target', 'CONNECT u@a.com:443 HTTP/1.1\r\n\r\n'],
    ['HTTP/2.0', 'CONNECT a.com:443 HTTP/2.0\r\n\r\n'],
    ['two spaces', 'CONNECT  a.com:443 HTTP/1.1\r\n\r\n'],
    ['obs-text value', 'CONNECT a.com:443 HTTP/1.1\r\nX: caf\xe9\r\n\r\n'],
    ['NUL in value', 'CONNECT a.com:443 HTTP/1.1\r\nX: a\x00b\r\n\r\n'],
    ['lowercase method', 'connect a.com:443 HTTP/1.1\r\n\r\n'],
  ];
  for (const [what, text] of fallbacks) {
    it(`leaves ${what} to the full parser`, () => {
      assert.equal(parseConnectHead(b(text), MAX), undefined);
    });
  }

  it('leaves heads larger than the limit to the full parser (which answers 431)', () => {
    const big = `CONNECT a.com:443 HTTP/1.1\r\nX-Big: ${'x'.repeat(200)}\r\n\r\n`;
    assert.ok(parseConnectHead(b(big), 1024));
    assert.equal(parseConnectHead(b(big), 100), undefined);
  });

  it('never accepts what Node’s parser refuses, and agrees with it on what both accept (1,500 mutated heads)', async () => {
    const base = b('CONNECT host.example:443 HTTP/1.1\r\nHost: host.example:443\r\nProxy-Authorization: Basic dTpw\r\nX-Trace: a b\tc\r\n\r\n');
    const alphabet = [0x00, 0x09, 0x0a, 0x0d, 0x20, 0x22, 0x2c, 0x3a, 0x3b, 0x40, 0x5b, 0x5d, 0x7f, 0x80, 0xff, 0x41, 0x61, 0x2d, 0x2f];
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    let fast = 0;
    let agreed = 0;
    for (let i = 0; i < 1500; i++) {
      const m = Buffer.from(base);
      const edits = 1 + rnd(3);
      for (let e = 0; e < edits; e++) m[8 + rnd(m.length - 12)] = alphabet[rnd(alphabet.length)]!;
      const p = parseConnectHead(m, MAX);
      if (p === undefined) continue;
      fast++;
      const node = await nodeParse(server, m);
      assert.notEqual(node, 'refused', `fast path accepted what llhttp refuses: ${JSON.stringify(m.toString('latin1'))}`);
      if (node === 'refused') continue;
      assert.equal(p.url, node.url);
      for (const [k, v] of Object.entries(p.headers)) assert.equal(v, node.headers[k], `${k} of ${JSON.stringify(m.toString('latin1'))}`);
      assert.deepEqual(Object.keys(p.headers).sort(), Object.keys(node.headers).sort());
      agreed++;
    }
    assert.ok(fast > 100, `only ${fast} mutations took the fast path`);
    assert.equal(agreed, fast);
  });
});

describe('CONNECT through the proxy: fast path and full parser give the same answers', () => {
  let p: TestProxy;
  before(async () => {
    p = await startTestProxy();
  });
  after(async () => {
    await p.close();
  });

  it('answers 407 to a fast-path CONNECT without credentials, with Proxy-Status and an access-log line', async () => {
    const r = await rawExchange(p.port, 'CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n');
    assert.match(r, /^HTTP\/1\.1 407 /);
    assert.match(r, /proxy-status: [^\r\n]*error=http_request_denied/i);
    assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.protocol === 'connect' && l.status === 407)));
  });

  it('answers 400 to a CONNECT the full parser refuses (obs-fold), with Proxy-Status', async () => {
    const r = await rawExchange(p.port, 'CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\nX-A: 1\r\n 2\r\n\r\n');
    assert.match(r, /^HTTP\/1\.1 400 /);
    assert.match(r, /proxy-status: [^\r\n]*error=http_request_error/i);
  });

  it('answers 431 to a CONNECT head over the size limit', async () => {
    const r = await rawExchange(p.port, `CONNECT 127.0.0.1:443 HTTP/1.1\r\nX-Big: ${'x'.repeat(70_000)}\r\n\r\n`);
    assert.match(r, /^HTTP\/1\.1 431 /);
  });
});

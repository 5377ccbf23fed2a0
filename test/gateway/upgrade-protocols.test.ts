import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { RawConn, parseHead } from '../helpers/raw-conn.js';

/**
 * Issue 14, finding 8: any Upgrade token was tunnelled after a 101 (`h2c`, `anything-goes`),
 * so bytes after the head reached the upstream unrouted: the precondition of h2c smuggling.
 * Only a route's `upgrades` (default websocket) are tunnelled now; a request offering
 * anything else is forwarded as plain HTTP without Upgrade and what follows its head is
 * dropped with the connection.
 */

interface Seen {
  url: string;
  headers: IncomingMessage['headers'];
  upgraded: boolean;
}

let upstream: Server;
let upUrl: string;
const seen: Seen[] = [];
/** Bytes the upstream read on switched connections (after its 101). */
let tunnelled = '';
const sockets = new Set<Duplex>();
let gw: TestGateway;

before(async () => {
  upstream = createServer((req, res) => {
    seen.push({ url: req.url!, headers: req.headers, upgraded: false });
    res.writeHead(200, { 'content-length': '5' });
    res.end('plain');
  });
  // An upstream that switches to whatever it is asked: the gateway must not let it.
  upstream.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    seen.push({ url: req.url!, headers: req.headers, upgraded: true });
    sockets.add(socket);
    socket.on('error', () => {});
    tunnelled += head.toString('latin1');
    socket.on('data', (d: Buffer) => (tunnelled += d.toString('latin1')));
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${req.headers.upgrade}\r\n\r\n`);
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  gw = await startTestGateway({
    clusters: { up: { endpoints: [upUrl], outlierDetection: { enabled: false } } },
    routes: [
      { match: { pathPrefix: '/h2c-ok' }, cluster: 'up', upgrades: ['h2c'] },
      { cluster: 'up' },
    ],
  });
});

after(async () => {
  await gw?.close();
  for (const s of sockets) s.destroy();
  upstream.closeAllConnections();
  await new Promise<void>((r) => upstream.close(() => r()));
});

const SMUGGLED = 'GET /admin/secret HTTP/1.1\r\nHost: internal\r\n\r\n';

async function offer(path: string, protocol: string): Promise<{ text: string; status: number }> {
  const conn = new RawConn(gw.port);
  await conn.write(
    `GET ${path} HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: ${protocol}\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n` + SMUGGLED,
  );
  const text = await conn.waitFor((t, ended) => ended || /^HTTP\/1\.1 101[^]*\r\n\r\n/.test(t), 5000, 'an answer');
  conn.destroy();
  return { text, status: parseHead(text)?.status ?? 0 };
}

describe('Upgrade protocols', () => {
  test('h2c and other unlisted protocols are not tunnelled: plain HTTP upstream, no smuggled bytes', { timeout: 20_000 }, async () => {
    for (const protocol of ['h2c', 'H2C', 'anything-goes', 'h2c/1.0', 'TLS/1.2', 'h2c, anything-goes']) {
      const n0 = seen.length;
      tunnelled = '';
      const r = await offer(`/x?p=${encodeURIComponent(protocol)}`, protocol);
      assert.equal(r.status, 200, `${protocol}: ${r.text.slice(0, 200)}`);
      assert.match(r.text, /\r\n\r\nplain$/, `${protocol}: the plain answer`);
      assert.equal(seen.length, n0 + 1, `${protocol}: one request upstream`);
      const got = seen.at(-1)!;
      assert.equal(got.upgraded, false, `${protocol}: switched protocols upstream`);
      assert.equal(got.headers.upgrade, undefined, `${protocol}: Upgrade forwarded`);
      assert.equal(got.headers['http2-settings'], undefined, `${protocol}: HTTP2-Settings forwarded`);
      assert.equal(tunnelled, '', `${protocol}: bytes after the head reached the upstream`);
      assert.ok(!seen.some((s) => s.url === '/admin/secret'), `${protocol}: the smuggled request reached the upstream`);
    }
  });

  test('a route that lists h2c tunnels it; websocket in a list with others is kept alone', { timeout: 10_000 }, async () => {
    tunnelled = '';
    const r = await offer('/h2c-ok', 'h2c');
    assert.equal(r.status, 101, r.text.slice(0, 200));
    const ws = await offer('/ws', 'h2c, websocket');
    assert.equal(ws.status, 101, ws.text.slice(0, 200));
    assert.equal(seen.at(-1)!.headers.upgrade, 'websocket');
  });
});

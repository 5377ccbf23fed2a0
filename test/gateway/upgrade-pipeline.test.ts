import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { request } from 'undici';
import { RawConn, parseHead, type Head } from '../helpers/raw-conn.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

/**
 * Upgrades go through the same pipeline as any request: cluster admission (the slot is
 * given back at the upstream's final head), outlier records, and the in-flight count that
 * graceful drain waits for.
 */

let upstream: Server;
let upstreamUrl: string;
const sockets = new Set<Socket>();
/** Plain requests to /hold wait here until the test answers them. */
const held: ServerResponse[] = [];
let onHeld: (() => void) | undefined;

const UPGRADE = (path: string): string =>
  `GET ${path} HTTP/1.1\r\nHost: up.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;

before(async () => {
  upstream = createServer((req, res) => {
    if (req.url === '/hold') {
      held.push(res);
      onHeld?.();
      return;
    }
    res.end('ok');
  });
  upstream.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  upstream.on('upgrade', (req, socket: Socket) => {
    if (req.url === '/garble') {
      socket.end('THIS IS NOT HTTP\r\n\r\n');
      return;
    }
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.pipe(socket); // echo
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
});

after(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => upstream.close(() => r()));
});

/** Send an upgrade request on a new connection and read the answer's head. */
async function upgrade(port: number, path: string): Promise<{ conn: RawConn; head: Head }> {
  const conn = new RawConn(port);
  await conn.write(UPGRADE(path));
  const text = await conn.waitFor((t) => t.includes('\r\n\r\n'), 3000, 'the answer head');
  return { conn, head: parseHead(text)! };
}

describe('upgrades like any request', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway({
      clusters: { up: { endpoints: [upstreamUrl], limits: { maxConcurrent: 1, maxQueued: 0 }, outlierDetection: { enabled: false } } },
      routes: [{ cluster: 'up' }],
    });
  });
  after(() => gw.close());

  test('an upgrade needs an admission slot: 503 connection_limit_reached while a request holds the only one', { timeout: 10_000 }, async () => {
    const gotHeld = new Promise<void>((r) => (onHeld = r));
    const pending = request(`${gw.url}/hold`, { headers: { host: 'up.test' } });
    await gotHeld;
    const { conn, head } = await upgrade(gw.port, '/ws');
    assert.equal(head.status, 503);
    assert.match(head.get('proxy-status') ?? '', /error=connection_limit_reached/);
    assert.ok(head.get('x-request-id'));
    conn.socket.destroy();
    held.shift()!.end('released');
    const res = await pending;
    assert.equal(await res.body.text(), 'released');
  });

  test('the slot is given back at 101: two tunnels open at once under a limit of 1, both counted in flight until closed', { timeout: 10_000 }, async () => {
    const a = await upgrade(gw.port, '/ws');
    const b = await upgrade(gw.port, '/ws');
    assert.equal(a.head.status, 101);
    assert.equal(b.head.status, 101);
    assert.equal(gw.gw.ctx.inflight, 2, 'open tunnels are in flight (graceful drain waits for them)');
    // The tunnel works: the upstream echoes.
    await b.conn.write('ping');
    await b.conn.waitFor((t) => t.endsWith('ping'));
    const ids = [a.head.get('x-request-id')!, b.head.get('x-request-id')!];
    a.conn.socket.destroy();
    b.conn.socket.destroy();
    for (const id of ids) {
      const line = await gw.logFor(id);
      assert.equal(line.status, 101);
    }
    assert.equal(gw.gw.ctx.inflight, 0);
    // And a plain request gets the slot again.
    const res = await request(`${gw.url}/`, { headers: { host: 'up.test' } });
    assert.equal(res.statusCode, 200);
    await res.body.text();
  });
});

describe('upgrades and passive health', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway({
      clusters: { up: { endpoints: [upstreamUrl], outlierDetection: { enabled: true, consecutiveGatewayFailures: 2, maxEjectedPercent: 100 } } },
      routes: [{ cluster: 'up' }],
    });
  });
  after(() => gw.close());

  test('an upstream that garbles upgrades counts as failing: ejected after consecutiveGatewayFailures', { timeout: 10_000 }, async () => {
    for (let i = 0; i < 2; i++) {
      const { conn, head } = await upgrade(gw.port, '/garble');
      assert.equal(head.status, 502, `garbled upgrade ${i + 1}`);
      assert.match(head.get('proxy-status') ?? '', /error=http_protocol_error/);
      conn.socket.destroy();
    }
    const { conn, head } = await upgrade(gw.port, '/ws');
    assert.equal(head.status, 503, 'the endpoint was ejected');
    assert.match(head.get('proxy-status') ?? '', /error=destination_unavailable/);
    conn.socket.destroy();
  });
});

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { openTcp } from '../../src/egress/open-tcp.js';

/**
 * openTcp (issue 17): the tunnel's upstream connection made without an options object for
 * Node's Socket constructor must behave as `net.connect({ noDelay: true, allowHalfOpen: true })`:
 * half-close kept open for writing, Nagle off, the same errors.
 */

let server: Server;
let port = 0;
const accepted: Socket[] = [];

before(async () => {
  server = createServer({ allowHalfOpen: true }, (s) => {
    accepted.push(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as { port: number }).port;
});

after(async () => {
  for (const s of accepted) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe('openTcp', () => {
  it('keeps writing after the peer half-closes, with Nagle off', async () => {
    const sock = openTcp({ host: '127.0.0.1', port });
    await once(sock, 'connect');
    const kNoDelay = Object.getOwnPropertySymbols(sock).find((s) => s.description === 'kSetNoDelay');
    assert.ok(kNoDelay, 'Node keeps the socket\'s Nagle setting under kSetNoDelay');
    assert.equal((sock as unknown as Record<symbol, unknown>)[kNoDelay], true);
    while (accepted.length === 0) await new Promise((r) => setImmediate(r));
    const peer = accepted.shift()!;
    const got: Buffer[] = [];
    peer.on('data', (d: Buffer) => got.push(d));
    peer.end('bye');
    sock.resume();
    await once(sock, 'end');
    assert.equal(sock.writable, true, 'half-open: still writable after the peer ended');
    sock.end('still here');
    await once(peer, 'end');
    assert.equal(Buffer.concat(got).toString(), 'still here');
    sock.destroy();
  });

  it('reports a refused connection as net.connect does', async () => {
    const closed = createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const deadPort = (closed.address() as { port: number }).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const sock = openTcp({ host: '127.0.0.1', port: deadPort, family: 4 });
    const [err] = (await once(sock, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNREFUSED');
  });
});

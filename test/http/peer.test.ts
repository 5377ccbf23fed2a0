import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { peerAddress } from '../../src/http/peer.js';

/** peerAddress: what `remoteAddress` says, on IPv4, IPv6 and a socket already closed. */

async function accepted(host: string): Promise<{ server: Socket; client: Socket; close(): Promise<void> }> {
  let take: (s: Socket) => void = () => {};
  const got = new Promise<Socket>((r) => (take = r));
  const srv = createServer((s) => take(s));
  await new Promise<void>((r) => srv.listen(0, host, r));
  const client = connect((srv.address() as AddressInfo).port, host);
  client.on('error', () => {});
  const server = await got;
  server.on('error', () => {});
  return {
    server,
    client,
    close: async () => {
      client.destroy();
      server.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

for (const host of ['127.0.0.1', '::1']) {
  test(`the same address as remoteAddress (${host}), twice in a row; undefined once the socket is gone`, async () => {
    const c = await accepted(host);
    try {
      const a = peerAddress(c.server);
      assert.equal(a, host);
      assert.equal(peerAddress(c.server), a);
      assert.equal(c.server.remoteAddress, a);
      // The client's own address from the other side: another socket, the same reused object.
      assert.equal(peerAddress(c.client), host);
      c.server.destroy();
      await new Promise((r) => c.server.once('close', r));
      assert.equal(peerAddress(c.server), c.server.remoteAddress);
    } finally {
      await c.close();
    }
  });
}

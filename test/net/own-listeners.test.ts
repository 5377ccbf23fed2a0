import { test } from 'node:test';
import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { once } from 'node:events';
import { markOwnForwardPeer, ownListenerAt, reserveOwnListener, viaOwnForward } from '../../src/net/own-listeners.js';
import { canonicalAddress } from '../../src/net/ip-canonical.js';

// The registries the forward proxy's destination rules and dials, and the gateway, ask (test/observe/admin-via-forward.test.ts and test/gateway/trust-via-forward.test.ts drive them end to end).

test('a listener on one address is reached at that address and port only (any spelling of it); released, at none', () => {
  const release = reserveOwnListener('127.0.0.1', 61001);
  try {
    assert.equal(ownListenerAt('127.0.0.1', 61001), true);
    assert.equal(ownListenerAt(canonicalAddress('::ffff:7f00:1')!.address, 61001), true);
    assert.equal(ownListenerAt('127.0.0.2', 61001), false);
    assert.equal(ownListenerAt('127.0.0.1', 61002), false);
  } finally {
    release();
  }
  assert.equal(ownListenerAt('127.0.0.1', 61001), false);
  const v6 = reserveOwnListener('::1', 61003);
  assert.equal(ownListenerAt(canonicalAddress('::1')!.address, 61003), true);
  v6();
  assert.equal(ownListenerAt(canonicalAddress('::1')!.address, 61003), false);
});

test('a listener on the unspecified address is reached at every loopback address and every address of this host, at its port', () => {
  for (const any of ['0.0.0.0', '::']) {
    const release = reserveOwnListener(any, 61004);
    try {
      for (const a of ['127.0.0.1', '127.9.8.7', '0:0:0:0:0:0:0:1']) assert.equal(ownListenerAt(a, 61004), true, `${any}: ${a}`);
      for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) assert.equal(ownListenerAt(canonicalAddress(i.address)!.address, 61004), true, `${any}: ${i.address}`);
      assert.equal(ownListenerAt('192.0.2.1', 61004), false, 'TEST-NET-1 is no address of this host');
      assert.equal(ownListenerAt('127.0.0.1', 61005), false);
    } finally {
      release();
    }
  }
});

test('two reservations of one address and port: released once, still reserved', () => {
  const a = reserveOwnListener('127.0.0.1', 61006);
  const b = reserveOwnListener('127.0.0.1', 61006);
  a();
  a();
  assert.equal(ownListenerAt('127.0.0.1', 61006), true);
  b();
  assert.equal(ownListenerAt('127.0.0.1', 61006), false);
});

test('the two kinds are apart: a gateway listener is not the admin\'s, nor the other way', () => {
  const gw = reserveOwnListener('127.0.0.1', 61007, 'gateway');
  const admin = reserveOwnListener('127.0.0.1', 61008);
  try {
    assert.equal(ownListenerAt('127.0.0.1', 61007, 'gateway'), true);
    assert.equal(ownListenerAt('::ffff:127.0.0.1', 61007, 'gateway'), true, 'any spelling');
    assert.equal(ownListenerAt('127.0.0.1', 61007), false, 'the destination rules refuse only the admin listener');
    assert.equal(ownListenerAt('127.0.0.1', 61008, 'gateway'), false);
  } finally {
    gw();
    admin();
  }
  assert.equal(ownListenerAt('127.0.0.1', 61007, 'gateway'), false);
});

test('a marked forward connection is known to the accepting side by its two ends, in any spelling, until it closes; an unmarked one never', async () => {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const accepted: Socket[] = [];
  server.on('connection', (s) => accepted.push(s));
  const open = async (): Promise<[Socket, Socket]> => {
    const got = once(server, 'connection');
    const c = connect(port, '127.0.0.1');
    await once(c, 'connect');
    return [c, ((await got) as [Socket])[0]];
  };
  try {
    const [marked, markedPeer] = await open();
    const [plain, plainPeer] = await open();
    markOwnForwardPeer(marked);
    assert.equal(viaOwnForward(markedPeer), true);
    assert.equal(viaOwnForward({ remoteAddress: `::ffff:${markedPeer.remoteAddress}`, remotePort: markedPeer.remotePort, localAddress: markedPeer.localAddress, localPort: markedPeer.localPort }), true, 'the IPv4-mapped spelling of the same end');
    assert.equal(viaOwnForward(plainPeer), false);
    assert.equal(viaOwnForward(undefined), false);
    const closed = once(marked, 'close');
    marked.destroy();
    await closed;
    assert.equal(viaOwnForward(markedPeer), false, 'the mark ends with its socket');
    plain.destroy();
  } finally {
    for (const s of accepted) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

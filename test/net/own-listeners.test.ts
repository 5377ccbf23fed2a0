import { test } from 'node:test';
import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { ownListenerAt, reserveOwnListener } from '../../src/net/own-listeners.js';
import { canonicalAddress } from '../../src/net/ip-canonical.js';

// No socket: the registry the forward proxy's destination rules ask (test/observe/admin-via-forward.test.ts drives it end to end).

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

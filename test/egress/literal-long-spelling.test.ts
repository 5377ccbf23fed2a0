import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { literalAddress } from '../../src/egress/index.js';
import { tableResolver } from '../forward/helpers.js';
import { socksGet, startPoolProxy, startUpstreamGatewise, whoAmI, PASSWORD, USER, type PoolProxy, type WhoAmI } from './helpers.js';

/**
 * Adversarial review, session 35: the inet_aton(3) reader gave up on names longer than 64
 * characters, but inet_aton (and getaddrinfo's numeric pass) takes any number of leading
 * zeros: `000…0177.0.0.2` is 127.0.0.2. A SOCKS5 client naming such a spelling as a domain
 * had it sent to an upstream proxy exit unjudged, and an upstream that resolves with
 * getaddrinfo reached the address a cidr rule denies. Every spelling here decodes to
 * 127.0.0.2 (checked with the C library's inet_aton); the upstream's resolver is a table
 * standing for getaddrinfo, so nothing but loopback is ever asked or dialled.
 */
const DENIED = '127.0.0.2';
const LONG = ['0'.repeat(70) + '177.0.0.2', '0x' + '0'.repeat(70) + '7f000002', '127.0.0.' + '0'.repeat(70) + '2', '0'.repeat(200) + '177.' + '0'.repeat(40) + '2'];

describe('long inet_aton spellings of a denied address', () => {
  let secret: WhoAmI;
  let up: PoolProxy;
  before(async () => {
    secret = await whoAmI(DENIED);
    up = await startUpstreamGatewise('up', tableResolver(Object.fromEntries(LONG.map((n) => [n, [DENIED]]))));
  });
  after(async () => {
    await up.close();
    await secret.close();
  });

  it('are read as the address they spell, at any length a name may have', () => {
    for (const n of LONG) assert.deepEqual(literalAddress(n), { address: DENIED, family: 4 }, `${n.length} chars`);
    assert.equal(literalAddress('0'.repeat(300) + '177.0.0.2'), undefined, 'longer than any name: not an address');
  });

  it('are refused before a SOCKS5 upstream exit is asked for them', async () => {
    const p = await startPoolProxy({
      rules: { deny: [{ cidrs: [`${DENIED}/32`] }] },
      egress: { pools: { s: { proxies: [`socks5://${USER}:${PASSWORD}@127.0.0.1:${up.port}`] } }, defaultPool: 's' },
    });
    try {
      for (const host of LONG) {
        await assert.rejects(socksGet(p.port, host, secret.port), /NotAllowed/, `${host.length} chars`);
      }
      assert.deepEqual(secret.seen, [], 'the denied address was reached through the upstream');
    } finally {
      await p.close();
    }
  });
});

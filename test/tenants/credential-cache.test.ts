import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import { describe, it } from 'node:test';
import { CredentialCache, OneShotHmac, oneShot } from '../../src/tenants/credential-cache.js';
import { between, seededRun } from '../helpers/seeded.js';

/** A random string of code points from ASCII, Latin-1, the BMP and the astral planes (NUL included). */
function randomText(rand: () => number): string {
  let s = '';
  const n = between(rand, 0, 80);
  for (let i = 0; i < n; i++) {
    const kind = rand();
    const cp = kind < 0.5 ? between(rand, 0, 0x7f) : kind < 0.7 ? between(rand, 0x80, 0xff) : kind < 0.9 ? between(rand, 0x100, 0xd7ff) : between(rand, 0x10000, 0x10ffff);
    s += String.fromCodePoint(cp);
  }
  return s;
}

describe('credential cache keys', () => {
  it('OneShotHmac gives the HMAC-SHA256 createHmac gives, over random keys and messages', { skip: oneShot === undefined ? 'crypto.hash is absent on this Node (before 20.12): the cache uses createHmac itself' : false }, async () => {
    await seededRun('OneShotHmac against createHmac', (rand) => {
      for (let i = 0; i < 500; i++) {
        const key = Buffer.from(Array.from({ length: between(rand, 0, 64) }, () => between(rand, 0, 255)));
        const h = new OneShotHmac(key, oneShot!);
        for (let j = 0; j < 4; j++) {
          const m = randomText(rand);
          assert.equal(h.digest(m), crypto.createHmac('sha256', key).update(m).digest('binary'), `key ${key.toString('hex')}, message ${JSON.stringify(m)}`);
        }
      }
    });
  });

  it('a key longer than the hash block is refused, not digested wrongly', { skip: oneShot === undefined ? 'crypto.hash is absent on this Node' : false }, () => {
    assert.throws(() => new OneShotHmac(Buffer.alloc(65), oneShot!), RangeError);
  });

  it('CredentialCache.key: the same pair gives the same key, another pair another, and the key holds no password', () => {
    const k = CredentialCache.key('alice', 'secret-password');
    assert.equal(k.length, 32);
    assert.equal(CredentialCache.key('alice', 'secret-password'), k);
    assert.notEqual(CredentialCache.key('alice', 'secret-passwore'), k);
    assert.notEqual(CredentialCache.key('alicf', 'secret-password'), k);
    assert.ok(!k.includes('secret'));
  });

  it('CredentialCache.key: pairs that join to the same text stay apart (a NUL in a name or password)', async () => {
    // RFC 1929 (SOCKS5) names and passwords are any bytes, NUL included: user "a" with password
    // "b\0c" and user "a\0b" with password "c" must not share a cached check.
    await seededRun('credential keys of split pairs', (rand) => {
      for (let i = 0; i < 200; i++) {
        const parts = Array.from({ length: between(rand, 3, 5) }, () => randomText(rand).slice(0, between(rand, 0, 12)));
        const joined = parts.join('\0');
        const cut = between(rand, 0, parts.length - 3);
        const user1 = parts.slice(0, cut + 1).join('\0');
        const pass1 = parts.slice(cut + 1).join('\0');
        const user2 = parts.slice(0, cut + 2).join('\0');
        const pass2 = parts.slice(cut + 2).join('\0');
        assert.equal(`${user1}\0${pass1}`, joined);
        assert.equal(`${user2}\0${pass2}`, joined);
        assert.notEqual(CredentialCache.key(user1, pass1), CredentialCache.key(user2, pass2), `${JSON.stringify(user1)}/${JSON.stringify(pass1)} vs ${JSON.stringify(user2)}/${JSON.stringify(pass2)}`);
      }
    });
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DestinationRules, isPrivateAddress } from '../../src/forward/index.js';
import { seededRandom, type Rand } from '../helpers/seeded.js';

/**
 * The IPv4 address an IPv6 one carries on its way to an IPv4 host, judged by the destination
 * rules (unit level: these addresses are not loopback, nothing is sent to them).
 *
 * Probe of session 38 (socks2):
 * - RFC 6052 §2.2 lets a local-use NAT64 prefix inside 64:ff9b:1::/48 (RFC 8215) be a /48, /56,
 *   /64 or /96; only the /48 layout (and a /96 with bits 48-95 zero) was decoded, so with
 *   allowPrivate a deny cidr of the IPv4 address let its /56 and /64 spellings (and a /96 whose
 *   prefix bits are not zero) through.
 * - Teredo (RFC 4380, 2001::/32) carries the client's IPv4 address, obfuscated (XOR 0xffffffff),
 *   in its last 32 bits: traffic to the Teredo address goes to that IPv4 host; it was not decoded.
 * - A deny rule's `hosts` pattern that is an IP literal matched the address in its inet_aton and
 *   IPv4-mapped spellings, but not in the NAT64, 6to4, SIIT or Teredo ones, which the deny cidrs
 *   do judge by the IPv4 address they carry.
 */

type Quad = [number, number, number, number];

function randomV4(rand: Rand): Quad {
  return [1 + rand.int(223), rand.int(256), rand.int(256), rand.int(256)];
}

const h = (n: number): string => n.toString(16);

/** The IPv6 spellings carrying `q`, one per layout, with seeded free bits (prefix bits an operator picks, Teredo's server, flags, port). */
function layouts(q: Quad, rand: Rand): Record<string, string> {
  const [a, b, c, d] = q;
  const free16 = (): string => h(rand.int(0x10000));
  const opByte = rand.int(256);
  return {
    // RFC 6052 §2.2 inside 64:ff9b:1::/48: the u-octet (bits 64-71) is zero in every layout.
    'local-use /48': `64:ff9b:1:${h((a << 8) | b)}:${h(c)}:${h(d << 8)}::`,
    'local-use /56': `64:ff9b:1:${h((opByte << 8) | a)}:${h(b)}:${h((c << 8) | d)}::`,
    'local-use /64': `64:ff9b:1:${free16()}:${h(a)}:${h((b << 8) | c)}:${h(d << 8)}:0`,
    'local-use /96': `64:ff9b:1:${free16()}:${h(rand.int(256))}:${free16()}:${h((a << 8) | b)}:${h((c << 8) | d)}`,
    // RFC 4380 §4: 2001:0:<server IPv4>:<flags>:<port ^ 0xffff>:<client IPv4 ^ 0xffffffff>.
    teredo: `2001:0:${free16()}:${free16()}:${free16()}:${free16()}:${h(0xffff ^ ((a << 8) | b))}:${h(0xffff ^ ((c << 8) | d))}`,
  };
}

describe('the IPv4 address an IPv6 one carries (RFC 6052 local-use layouts, Teredo)', () => {
  it('a deny cidr holds for every RFC 6052 layout of the local-use prefix and for Teredo\'s client address (seeded IPv4s per layout)', () => {
    const rand = seededRandom();
    for (let i = 0; i < 60; i++) {
      const q = randomV4(rand);
      const v4 = q.join('.');
      const rules = new DestinationRules({ allowPrivate: true, defaultAction: 'allow', deny: [{ cidrs: [`${v4}/32`] }] });
      const other = randomV4(rand);
      for (const [layout, addr] of Object.entries(layouts(q, rand))) {
        const at = `${layout}: ${addr} carries ${v4} (seed ${rand.seed}: replay with GATEWISE_SEED=${rand.seed})`;
        assert.equal(rules.checkAddress(null, 'x', 80, addr)?.type, 'destination_ip_prohibited', at);
        const o = layouts(other, rand)[layout]!;
        if (other.join('.') !== v4) assert.equal(rules.checkAddress(null, 'x', 80, o), undefined, `${layout}: ${o} carries ${other.join('.')}, not ${v4} (seed ${rand.seed})`);
      }
    }
  });

  it('Teredo carrying a private client address is private; one carrying a public one is not (seeded)', () => {
    const rand = seededRandom();
    for (let i = 0; i < 40; i++) {
      const priv: Quad = rand.int(2) === 0 ? [127, rand.int(256), rand.int(256), 1 + rand.int(254)] : [169, 254, 169, 254];
      const pub: Quad = [8, 8, rand.int(256), rand.int(256)];
      const at = `seed ${rand.seed}`;
      assert.equal(isPrivateAddress(layouts(priv, rand).teredo!), true, `${layouts(priv, rand).teredo} (${priv.join('.')}), ${at}`);
      assert.equal(isPrivateAddress(layouts(pub, rand).teredo!), false, `${layouts(pub, rand).teredo} (${pub.join('.')}), ${at}`);
    }
  });

  it('a deny rule\'s IP host pattern holds for the IPv6 spellings that carry it (NAT64, local-use, 6to4, SIIT, Teredo), as deny cidrs do; an allow host pattern opens none of them (seeded)', () => {
    const rand = seededRandom();
    const denyHost = new DestinationRules({ allowPrivate: true, defaultAction: 'allow', deny: [{ hosts: ['127.0.0.2'] }] });
    const perUser = new DestinationRules({ allowPrivate: true, defaultAction: 'allow' }, [{ name: 'alice', deny: [{ hosts: ['127.0.0.2'], ports: [80] }] }]);
    const allowHost = new DestinationRules({ allowPrivate: true, defaultAction: 'deny', allow: [{ hosts: ['127.0.0.2'] }] });
    const q: Quad = [127, 0, 0, 2];
    const spellings = (): string[] => [
      '64:ff9b::7f00:2',
      '64:ff9b::127.0.0.2',
      `2002:7f00:2::${h(1 + rand.int(0xfffe))}`,
      '::ffff:0:7f00:2',
      ...Object.values(layouts(q, rand)),
    ];
    for (let i = 0; i < 20; i++) {
      for (const s of spellings()) {
        const at = `${s} (seed ${rand.seed}: replay with GATEWISE_SEED=${rand.seed})`;
        // The name stage (a client naming the literal) and the address stage (the dialer's guard) alike.
        assert.equal(denyHost.checkName(null, s, 80)?.type, 'http_request_denied', `name stage: ${at}`);
        assert.equal(denyHost.checkName(null, `[${s.toUpperCase()}]`, 80)?.type, 'http_request_denied', `name stage, bracketed: ${at}`);
        assert.equal(denyHost.checkAddress(null, s, 80, s)?.type, 'http_request_denied', `address stage: ${at}`);
        assert.equal(perUser.checkName('alice', s, 80)?.type, 'http_request_denied', `per user: ${at}`);
        assert.equal(perUser.checkName('alice', s, 81), undefined, `per user, another port: ${at}`);
        assert.equal(perUser.checkName('bob', s, 80), undefined, `another user: ${at}`);
        assert.equal(allowHost.checkAddress(null, s, 80, s)?.type, 'http_request_denied', `an allow host pattern opens no carried spelling: ${at}`);
      }
      const other = `64:ff9b::7f00:${h(3 + rand.int(250))}`;
      assert.equal(denyHost.checkName(null, other, 80), undefined, other);
      assert.equal(denyHost.checkAddress(null, other, 80, other), undefined, other);
    }
    // The literal itself still matches, as before.
    assert.equal(denyHost.checkName(null, '127.0.0.2', 80)?.type, 'http_request_denied');
    assert.equal(allowHost.checkAddress(null, '127.0.0.2', 80, '127.0.0.2'), undefined);
  });
});

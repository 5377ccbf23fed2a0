import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DestinationRules, canonicalAddress, isPrivateAddress, socks5ReplyFor, SOCKS5_REPLY } from '../../src/forward/index.js';
import { Failure } from '../../src/failure/index.js';
import { seededRandom } from '../helpers/seeded.js';

describe('destination rules', () => {
  it('knows private, loopback, link-local and metadata addresses in every spelling', () => {
    for (const a of ['10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '127.0.0.1', '127.255.0.9', '169.254.169.254', '100.64.0.1', '100.100.100.200', '0.0.0.0', '::1', '0:0:0:0:0:0:0:1', 'fc00::1', 'fd00:ec2::254', 'fe80::1', 'fe80::1%eth0', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.0.0.1', '::ffff:a9fe:a9fe', '0:0:0:0:0:ffff:c0a8:0101', '::', '224.0.0.1', '255.255.255.255']) {
      assert.equal(isPrivateAddress(a), true, a);
    }
    for (const a of ['8.8.8.8', '172.32.0.1', '100.128.0.1', '2001:4860:4860::8888', '::ffff:8.8.8.8', '192.0.2.1']) {
      assert.equal(isPrivateAddress(a), false, a);
    }
    assert.deepEqual(canonicalAddress('::ffff:7f00:1'), { address: '127.0.0.1', family: 4 });
    assert.deepEqual(canonicalAddress('[::1]'), { address: '0:0:0:0:0:0:0:1', family: 6 });
    assert.equal(canonicalAddress('example.com'), undefined);
  });

  it('judges an IPv6 address that carries an IPv4 one (NAT64 64:ff9b::/96, 6to4 2002::/16, SIIT) by the IPv4 address, in any spelling (seeded)', () => {
    // Adversarial review, session 30: with allowPrivate false, 64:ff9b::a9fe:a9fe (169.254.169.254
    // through NAT64), 2002:7f00:1:: and ::ffff:0:7f00:1 were allowed.
    const seed = Number(process.env.GATEWISE_SEED ?? Date.now() % 1_000_000);
    let a = seed >>> 0;
    const rand = (): number => ((a = (a * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const int = (n: number): number => Math.floor(rand() * n);
    const def = new DestinationRules({ allowPrivate: false, defaultAction: 'allow' });
    const privates = [() => `10.${int(256)}.${int(256)}.${int(256)}`, () => `127.${int(256)}.${int(256)}.${1 + int(254)}`, () => '169.254.169.254', () => `192.168.${int(256)}.${int(256)}`, () => `172.${16 + int(16)}.${int(256)}.${int(256)}`, () => `100.${64 + int(64)}.${int(256)}.${int(256)}`];
    const publics = [() => `8.8.${int(256)}.${int(256)}`, () => `93.184.${int(256)}.${int(256)}`, () => `203.0.113.${int(256)}`];
    const hex = (v4: string): [string, string] => {
      const q = v4.split('.').map(Number) as [number, number, number, number];
      return [((q[0] << 8) | q[1]).toString(16), ((q[2] << 8) | q[3]).toString(16)];
    };
    const spell = (v4: string): string => {
      const [hi, lo] = hex(v4);
      switch (int(5)) {
        case 0: return `64:ff9b::${hi}:${lo}`;
        case 1: return `64:ff9b::${v4}`;
        case 2: return `0064:FF9B:0:0:0:0:${hi.toUpperCase()}:${lo}`;
        case 3: return `2002:${hi}:${lo}::${(1 + int(0xfffe)).toString(16)}`;
        default: return `::ffff:0:${hi}:${lo}`;
      }
    };
    for (let i = 0; i < 200; i++) {
      const priv = privates[int(privates.length)]!();
      const p6 = spell(priv);
      assert.equal(def.checkAddress(null, 'x', 80, p6)?.type, 'destination_ip_prohibited', `${p6} (${priv}), seed ${seed}`);
      const pub = publics[int(publics.length)]!();
      const q6 = spell(pub);
      // 203.0.113.0/24 is documentation space, not in the private list: allowed like its IPv4 form.
      assert.equal(def.checkAddress(null, 'x', 80, q6), undefined, `${q6} (${pub}), seed ${seed}`);
    }
    assert.equal(isPrivateAddress('100::1'), true, 'discard-only');
  });

  it('a deny cidr on IPv4 holds for the IPv6 spellings that carry that address (NAT64, local-use NAT64, 6to4, SIIT), for everyone and per user; an allow cidr does not open them (seeded)', () => {
    // Adversarial probe (SOCKS5 face): the private ranges judged these spellings by the IPv4
    // address they carry (session 30), but a deny rule's cidrs did not: with allowPrivate, a deny
    // of 127.0.0.2/32 let 64:ff9b::7f00:2 through (on a host with NAT64 that reaches the IPv4
    // address). Review of session 37: the local-use prefix 64:ff9b:1::/48 (RFC 8215) was not
    // decoded, and with allowPrivate a deny of 169.254.169.254/32 let 64:ff9b:1:a9fe:a9:fe00:: through.
    // Unit level only: these addresses are not loopback, nothing is sent to them.
    const rand = seededRandom();
    const metadata = new DestinationRules({ allowPrivate: true, defaultAction: 'allow', deny: [{ cidrs: ['169.254.169.254/32'] }] });
    assert.equal(metadata.checkAddress(null, 'x', 80, '64:ff9b:1:a9fe:a9:fe00::')?.type, 'destination_ip_prohibited');
    const spell = (v4: string): string => {
      const q = v4.split('.').map(Number) as [number, number, number, number];
      const hi = ((q[0] << 8) | q[1]).toString(16);
      const lo = ((q[2] << 8) | q[3]).toString(16);
      switch (rand.int(7)) {
        case 0: return `64:ff9b::${hi}:${lo}`;
        case 1: return `64:ff9b::${v4}`;
        case 2: return `0064:FF9B:0:0:0:0:${hi.toUpperCase()}:${lo}`;
        case 3: return `2002:${hi}:${lo}::${(1 + rand.int(0xfffe)).toString(16)}`;
        // Local-use NAT64 64:ff9b:1::/48 (RFC 8215) in RFC 6052 §2.2's /48 layout: the IPv4 bits split around the u-octet (bits 64-71).
        case 4: return `64:ff9b:1:${hi}:${q[2].toString(16)}:${(q[3] << 8).toString(16)}::`;
        // ... and a /96 inside it (64:ff9b:1::/96).
        case 5: return `64:ff9b:1::${hi}:${lo}`;
        default: return `::ffff:0:${hi}:${lo}`;
      }
    };
    const global = new DestinationRules({ allowPrivate: true, defaultAction: 'allow', deny: [{ cidrs: ['127.0.0.2/32'] }] });
    const perUser = new DestinationRules({ allowPrivate: true, defaultAction: 'allow' }, [{ name: 'alice', deny: [{ cidrs: ['127.0.0.2/32'] }] }]);
    const allowOnly = new DestinationRules({ allowPrivate: true, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }] });
    for (let i = 0; i < 100; i++) {
      const denied = spell('127.0.0.2');
      const other = spell(`127.0.0.${3 + rand.int(250)}`);
      const at = `${denied}, seed ${rand.seed}`;
      assert.equal(global.checkAddress(null, 'x', 80, denied)?.type, 'destination_ip_prohibited', at);
      assert.equal(perUser.checkAddress('alice', 'x', 80, denied)?.type, 'destination_ip_prohibited', at);
      assert.equal(perUser.checkAddress('bob', 'x', 80, denied), undefined, at);
      assert.equal(global.checkAddress(null, 'x', 80, other), undefined, `${other}, seed ${rand.seed}`);
      assert.equal(allowOnly.checkAddress(null, 'x', 80, other)?.type, 'http_request_denied', `allow cidrs open no carried spelling: ${other}, seed ${rand.seed}`);
    }
  });

  it('denies private addresses by default; allowPrivate or a covering allow cidr opens them', () => {
    const def = new DestinationRules({ allowPrivate: false, defaultAction: 'allow' });
    assert.equal(def.checkAddress(null, 'localhost', 80, '127.0.0.1')?.type, 'destination_ip_prohibited');
    assert.equal(def.checkAddress(null, 'x', 80, '::ffff:127.0.0.1')?.type, 'destination_ip_prohibited');
    assert.equal(def.checkAddress(null, 'x', 80, '93.184.216.34'), undefined);
    const open = new DestinationRules({ allowPrivate: true, defaultAction: 'allow' });
    assert.equal(open.checkAddress(null, 'x', 80, '10.0.0.1'), undefined);
    const loop = new DestinationRules({ allowPrivate: false, defaultAction: 'allow', allow: [{ cidrs: ['127.0.0.0/8'] }] });
    assert.equal(loop.checkAddress(null, 'x', 80, '127.0.0.1'), undefined);
    assert.equal(loop.checkAddress(null, 'x', 80, '10.0.0.1')?.type, 'destination_ip_prohibited');
    const byName = new DestinationRules({ allowPrivate: false, defaultAction: 'allow', allow: [{ hosts: ['*.internal.test'] }] });
    assert.equal(byName.checkAddress(null, 'db.internal.test', 80, '10.0.0.1')?.type, 'destination_ip_prohibited', 'a host allow rule does not open private ranges');
  });

  it('applies host, cidr and port selectors, per user first', () => {
    const rules = new DestinationRules(
      { allowPrivate: false, defaultAction: 'allow', deny: [{ hosts: ['*.example.com'] }, { cidrs: ['203.0.113.0/24'] }, { ports: [25] }] },
      [{ name: 'ops', allow: [{ hosts: ['mail.example.com'], ports: [25] }] }, { name: 'kid', deny: [{ hosts: ['*'] }] }],
    );
    assert.equal(rules.checkName(null, 'www.example.com', 443)?.type, 'http_request_denied');
    assert.equal(rules.checkName(null, 'example.com', 443), undefined, '*.example.com does not match the apex');
    assert.equal(rules.checkName(null, 'WWW.Example.COM.', 443)?.type, 'http_request_denied', 'case and trailing dot ignored');
    assert.equal(rules.checkAddress(null, 'ok.test', 443, '203.0.113.9')?.type, 'destination_ip_prohibited');
    assert.equal(rules.checkName(null, 'ok.test', 25)?.type, 'http_request_denied');
    assert.equal(rules.checkName('ops', 'mail.example.com', 25), undefined, "the user's allow wins over global denies");
    assert.equal(rules.checkAddress('ops', 'mail.example.com', 25, '198.51.100.1'), undefined);
    assert.equal(rules.checkName('kid', 'anything.test', 443)?.type, 'http_request_denied');
    assert.equal(rules.hasOwnRules('ops'), true);
    assert.equal(rules.hasOwnRules(null), false);
    const allowList = new DestinationRules({ allowPrivate: false, defaultAction: 'deny', allow: [{ hosts: ['api.test'], ports: ['443-444'] }] });
    assert.equal(allowList.checkAddress(null, 'api.test', 444, '198.51.100.1'), undefined);
    assert.equal(allowList.checkAddress(null, 'api.test', 80, '198.51.100.1')?.type, 'http_request_denied');
  });

  it('maps every failure to one SOCKS5 reply code from one table', () => {
    const code = (type: ConstructorParameters<typeof Failure>[0]['type']): number => socks5ReplyFor(new Failure({ type, phase: 'connect' }));
    assert.equal(code('destination_ip_prohibited'), SOCKS5_REPLY.notAllowed);
    assert.equal(code('http_request_denied'), SOCKS5_REPLY.notAllowed);
    assert.equal(code('destination_ip_unroutable'), SOCKS5_REPLY.networkUnreachable);
    assert.equal(code('dns_error'), SOCKS5_REPLY.hostUnreachable);
    assert.equal(code('dns_timeout'), SOCKS5_REPLY.hostUnreachable);
    assert.equal(code('connection_timeout'), SOCKS5_REPLY.hostUnreachable);
    assert.equal(code('connection_refused'), SOCKS5_REPLY.connectionRefused);
    assert.equal(code('proxy_internal_error'), SOCKS5_REPLY.generalFailure);
    assert.equal(code('tls_protocol_error'), SOCKS5_REPLY.generalFailure);
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { PASSWORD, USER, accessLine, basic, dial, rawExchange, readUntil, startOrigin, startTestProxy, tableResolver, type Origin, type TestProxy } from './helpers.js';
import { associate } from '../helpers/socks-udp.js';

/**
 * Adversarial probe of the SOCKS5 front (RFC 1928, RFC 1929) with raw sockets: guards for
 * what was found right. Every destination is loopback; the proxy denies 127.0.0.2/32 and
 * allows only 127.0.0.1/32 (default deny), and the refused spellings all decode to 127.0.0.2,
 * where a second origin listens to prove nothing reached it.
 */

const DENIED = '127.0.0.2';

function port2(port: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(port);
  return b;
}

function auth(user = USER, password = PASSWORD): Buffer {
  const u = Buffer.from(user, 'latin1');
  const p = Buffer.from(password, 'latin1');
  return Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([p.length]), p]);
}

const GREETING = Buffer.from([5, 2, 0, 2]);

function request(atyp: number, addr: Buffer, port: number, cmd = 1): Buffer {
  return Buffer.concat([Buffer.from([5, cmd, 0, atyp]), addr, port2(port)]);
}

function name(n: string): Buffer {
  const b = Buffer.from(n, 'latin1');
  return Buffer.concat([Buffer.from([b.length]), b]);
}

/** Send `bytes`, read until the proxy closes; every byte it answered. */
async function answerThenClose(port: number, bytes: Buffer): Promise<Buffer> {
  const s = await dial(port);
  s.on('error', () => {});
  s.write(bytes);
  const out = await readUntil(s, () => false, undefined, 'the proxy closing the connection');
  s.destroy();
  return out;
}

describe('SOCKS5 frames under an adversarial client', () => {
  let origin: Origin;
  let deniedOrigin: Origin;
  let p: TestProxy;

  before(async () => {
    origin = await startOrigin('127.0.0.1');
    deniedOrigin = await startOrigin(DENIED);
    p = await startTestProxy(
      { rules: { allowPrivate: true, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.1/32'] }], deny: [{ cidrs: [`${DENIED}/32`] }] } },
      { resolver: tableResolver({ 'origin.test': ['127.0.0.1'], 'rebind.test': [DENIED], 'mixed.test': [DENIED, '127.0.0.1'] }) },
    );
  });
  after(async () => {
    await p.close();
    await origin.close();
    await deniedOrigin.close();
  });

  it('relays pipelined data behind a request cut into random fragments (seeded)', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let i = 0; i < 25; i++) {
        const addr = rand.int(2) === 0 ? request(3, name('origin.test'), origin.port) : request(1, Buffer.from([127, 0, 0, 1]), origin.port);
        const bytes = Buffer.concat([GREETING, auth(), addr, Buffer.from(`GET /frag${i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)]);
        const s = await dial(p.port);
        s.setNoDelay(true);
        s.on('error', () => {});
        for (let at = 0; at < bytes.length; ) {
          const n = 1 + rand.int(8);
          s.write(bytes.subarray(at, at + n));
          at += n;
          if (rand.int(2) === 1) await new Promise((r) => setImmediate(r));
        }
        const out = await readUntil(s, (b) => b.includes(`"/frag${i}"`), undefined, `the origin's answer to /frag${i}`);
        s.destroy();
        assert.deepEqual([...out.subarray(0, 4)], [5, 2, 1, 0], 'method 2, then auth success');
        assert.equal(out[5], 0, 'reply succeeded');
      }
    });
  });

  it('answers each malformed stage with its own bytes and closes', async () => {
    // Greeting: NMETHODS 0, or no acceptable method (only "none" and GSSAPI while auth is required): 05 FF.
    assert.deepEqual([...(await answerThenClose(p.port, Buffer.from([5, 0])))], [5, 0xff]);
    assert.deepEqual([...(await answerThenClose(p.port, Buffer.from([5, 2, 0, 1])))], [5, 0xff]);
    // RFC 1929: wrong sub-negotiation version; empty user name; 255-byte name and password (wrong): 01 01.
    for (const a of [Buffer.from([2, 1, 0x61, 1, 0x62]), auth('', PASSWORD), auth(USER, ''), auth('a'.repeat(255), 'b'.repeat(255))]) {
      assert.deepEqual([...(await answerThenClose(p.port, Buffer.concat([GREETING, a])))], [5, 2, 1, 1]);
    }
    const replyOf = async (req: Buffer): Promise<number> => {
      const out = await answerThenClose(p.port, Buffer.concat([GREETING, auth(), req]));
      assert.deepEqual([...out.subarray(0, 4)], [5, 2, 1, 0]);
      return out[5]!;
    };
    // Domain names: empty, NUL, non-ASCII, a zone id or '%': general failure.
    for (const n of ['', 'a\0b', 'caf\xe9.test', 'a%25b', 'fe80::1%lo']) assert.equal(await replyOf(request(3, name(n), origin.port)), 0x01, JSON.stringify(n));
    assert.equal(await replyOf(Buffer.from([5, 1, 0, 9, 127, 0, 0, 1, 0, 80])), 0x08, 'unknown ATYP');
    assert.equal(await replyOf(request(1, Buffer.from([127, 0, 0, 1]), origin.port, 2)), 0x07, 'BIND');
    assert.equal(await replyOf(Buffer.from([4, 1, 0, 1, 127, 0, 0, 1, 0, 80])), 0x01, 'request VER 4');
  });

  it('refuses the denied address in every spelling, as CONNECT does; the rule is judged on the resolved address', async () => {
    const dport = deniedOrigin.port;
    const mapped = Buffer.from('00000000000000000000ffff7f000002', 'hex');
    const compat = Buffer.from('0000000000000000000000007f000002', 'hex');
    // inet_aton forms checked to decode to 127.0.0.2 (no leading zeros: octal would change them).
    const names = ['127.0.0.2', '127.0.0.2.', '0x7f.0.0.2', '2130706434', '127.2', '::ffff:127.0.0.2', '::FFFF:7F00:2', 'rebind.test', 'REBIND.TEST'];
    const socks: Array<[string, Buffer]> = [
      ['ATYP 1', request(1, Buffer.from([127, 0, 0, 2]), dport)],
      ['ATYP 4 mapped', request(4, mapped, dport)],
      ['ATYP 4 compatible', request(4, compat, dport)],
      ...names.map((n): [string, Buffer] => [n, request(3, name(n), dport)]),
    ];
    for (const [what, req] of socks) {
      const out = await answerThenClose(p.port, Buffer.concat([GREETING, auth(), req]));
      assert.equal(out[5], 0x02, `SOCKS5 ${what}: ${out.toString('hex')}`);
    }
    for (const n of names) {
      const authority = n.includes(':') ? `[${n}]:${dport}` : `${n}:${dport}`;
      const res = await rawExchange(p.port, `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
      // The same failure type as the SOCKS5 refusal (0x02): its status comes from the taxonomy table.
      assert.match(res, /^HTTP\/1\.1 502 [^]*proxy-status: [^\r]*destination_ip_prohibited/i, `CONNECT ${authority}: ${res.slice(0, 200)}`);
    }
    assert.equal(deniedOrigin.connections, 0, 'the denied origin saw a connection');
    // A name with a denied and an allowed address goes to the allowed one only.
    const out = await answerThenClose(p.port, Buffer.concat([GREETING, auth(), request(3, name('mixed.test'), origin.port), Buffer.from('GET /mixed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')]));
    assert.equal(out[5], 0x00);
    assert.match(out.toString('latin1'), /"\/mixed"/);
    assert.equal(deniedOrigin.connections, 0);
  });

  it('applies a user\'s tunnel limit over SOCKS5 as over CONNECT: the same failure, each in its protocol', async () => {
    const q = await startTestProxy({ limits: { maxTunnelsPerUser: 1 }, rules: { allowPrivate: true, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.1/32'] }] } });
    const held = await dial(q.port);
    held.on('error', () => {});
    try {
      held.write(Buffer.concat([GREETING, auth(), request(1, Buffer.from([127, 0, 0, 1]), origin.port)]));
      const granted = await readUntil(held, (b) => b.length >= 4 + 10, undefined, 'the first tunnel\'s reply');
      assert.equal(granted[5], 0x00);
      const second = await answerThenClose(q.port, Buffer.concat([GREETING, auth(), request(1, Buffer.from([127, 0, 0, 1]), origin.port)]));
      assert.equal(second[5], 0x01, 'SOCKS5 tunnel over the limit: general failure');
      await assert.rejects(associate(q.port, { user: USER, password: PASSWORD }), /Failure/, 'a UDP association counts as a tunnel');
      const res = await rawExchange(q.port, `CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
      assert.match(res, /^HTTP\/1\.1 503 [^]*connection_limit_reached/i, res.slice(0, 200));
      const socksLine = await accessLine(q.lines, (l) => l.protocol === 'socks5' && l.reply === 0x01, 'the refused SOCKS5 tunnel');
      const connectLine = await accessLine(q.lines, (l) => l.protocol === 'connect' && l.status === 503, 'the refused CONNECT');
      assert.equal(socksLine.error, 'connection_limit_reached');
      assert.equal(connectLine.error, socksLine.error);
    } finally {
      held.destroy();
      await q.close();
    }
  });
});

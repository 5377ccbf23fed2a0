import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ERROR_TYPES, parseProxyStatus } from '../../src/failure/index.js';
import { dnsServerResolver } from '../../src/forward/index.js';
import { startLabDnsServer, type LabDnsServer } from '../../src/lab/index.js';
import { localhostSpellings } from '../helpers/localhost-spellings.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { PASSWORD, USER, accessLine, basic, dial, rawExchange, readUntil, startOrigin, startTestProxy, type Origin, type TestProxy } from './helpers.js';

/**
 * RFC 6761 §6.3: `localhost` and every name under `.localhost` is loopback, and a resolver
 * answers it without asking DNS (browsers and curl do). The proxy sent such a destination to
 * its DNS servers, which may answer NXDOMAIN (the lab's DNS here: every name is NXDOMAIN) or
 * a foreign address. Now it resolves to 127.0.0.1 and ::1 itself, and the destination rules
 * still judge those addresses: a deny of 127.0.0.0/8 denies `localhost` in every spelling.
 * Seeded over spellings (case, trailing dot, subdomains) on the HTTP proxy, CONNECT, SOCKS5
 * and SOCKS4a.
 */

const rand = seededRandom();
const NAMES = localhostSpellings(rand, 4);

let dns: LabDnsServer;
let origin: Origin;
let allowing: TestProxy;
let denying: TestProxy;

before(async () => {
  dns = await startLabDnsServer({ records: {} });
  origin = await startOrigin();
  const resolver = dnsServerResolver([`127.0.0.1:${dns.port}`], { timeoutMs: 5000, tries: 1 });
  // Only 127.0.0.0/8 may be reached (::1 is not: the test's traffic stays on 127.0.0.1).
  allowing = await startTestProxy({ rules: { allowPrivate: false, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }] } } as never, { resolver });
  // The same, with a deny of 127.0.0.0/8 (deny wins over allow): nothing may be reached.
  denying = await startTestProxy({ rules: { allowPrivate: false, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }], deny: [{ cidrs: ['127.0.0.0/8'] }] } } as never, { resolver });
});

after(async () => {
  await allowing?.close();
  await denying?.close();
  await origin?.close();
  await dns?.close();
});

function head(text: string): { status: number; proxyStatus: string; body: string } {
  const end = text.indexOf('\r\n\r\n');
  const proxyStatus = /\r\nproxy-status: ([^\r]*)/i.exec(text.slice(0, end))?.[1] ?? '';
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]), proxyStatus, body: text.slice(end + 4) };
}

function socks5Connect(host: string, port: number): Buffer {
  const pb = Buffer.alloc(2);
  pb.writeUInt16BE(port);
  return Buffer.concat([Buffer.from([5, 1, 2, 1, USER.length]), Buffer.from(USER), Buffer.from([PASSWORD.length]), Buffer.from(PASSWORD), Buffer.from([5, 1, 0, 3, host.length]), Buffer.from(host), pb]);
}

function socks4aConnect(host: string, port: number): Buffer {
  const h = Buffer.from([4, 1, 0, 0, 0, 0, 0, 1]);
  h.writeUInt16BE(port, 2);
  return Buffer.concat([h, Buffer.from(`${USER}:${PASSWORD}`), Buffer.from([0]), Buffer.from(host), Buffer.from([0])]);
}

async function socksReply(p: TestProxy, bytes: Buffer, enough: (b: Buffer) => boolean): Promise<Buffer> {
  const s = await dial(p.port);
  s.on('error', () => {});
  s.write(bytes);
  try {
    return await readUntil(s, enough, undefined, 'the SOCKS reply');
  } finally {
    s.destroy();
  }
}

const http = (p: TestProxy, name: string): Promise<string> =>
  rawExchange(p.port, `GET http://${name}:${origin.port}/lh HTTP/1.1\r\nHost: ${name}:${origin.port}\r\nProxy-Authorization: ${basic()}\r\nAccept: application/problem+json\r\nConnection: close\r\n\r\n`, 15_000);
const connectTunnel = (p: TestProxy, name: string): Promise<string> =>
  rawExchange(p.port, `CONNECT ${name}:${origin.port} HTTP/1.1\r\nHost: ${name}:${origin.port}\r\nProxy-Authorization: ${basic()}\r\nAccept: application/problem+json\r\n\r\n`, 15_000);

describe(`localhost names on the forward face, resolved without DNS (seed ${rand.seed}: ${NAMES.join(' ')})`, () => {
  for (const name of NAMES) {
    it(`${JSON.stringify(name)} reaches 127.0.0.1 on the HTTP proxy, CONNECT, SOCKS5 and SOCKS4a`, async () => {
      await withSeed(rand, async () => {
        const a = head(await http(allowing, name));
        assert.equal(a.status, 200, `HTTP proxy to ${name}: ${a.status} ${a.proxyStatus} ${a.body.slice(0, 300)}`);
        assert.match(a.body, /"\/lh"/);
        const c = head(await connectTunnel(allowing, name));
        assert.equal(c.status, 200, `CONNECT ${name}: ${c.status} ${c.proxyStatus} ${c.body.slice(0, 300)}`);
        const s5 = await socksReply(allowing, socks5Connect(name, origin.port), (b) => b.length >= 4 + 10);
        // Method choice (5 2), password status (1 0), then the CONNECT reply: its code is byte 5.
        assert.deepEqual([...s5.subarray(0, 4)], [5, 2, 1, 0], s5.toString('hex'));
        assert.equal(s5[5], 0, `SOCKS5 to ${name}: reply ${s5.toString('hex')}`);
        const s4 = await socksReply(allowing, socks4aConnect(name, origin.port), (b) => b.length >= 8);
        assert.equal(s4[1], 0x5a, `SOCKS4a to ${name}: reply ${s4.toString('hex')}`);
      });
    });

    it(`${JSON.stringify(name)} is denied by a deny of 127.0.0.0/8 on the HTTP proxy, CONNECT, SOCKS5 and SOCKS4a`, async () => {
      await withSeed(rand, async () => {
        const before = origin.connections;
        for (const [kind, text] of [['HTTP proxy', await http(denying, name)], ['CONNECT', await connectTunnel(denying, name)]] as const) {
          const a = head(text);
          const ours = parseProxyStatus(a.proxyStatus).at(-1);
          assert.equal(ours?.params.error, 'destination_ip_prohibited', `${kind} ${name}: ${a.status} ${a.proxyStatus} ${a.body.slice(0, 300)}`);
          assert.equal(a.status, ERROR_TYPES.destination_ip_prohibited.status, `${kind} ${name}`);
        }
        // The lines say the destination normalised (lower case): the first of each protocol after this point is this one's.
        const n = denying.lines.length;
        const after = (l: Record<string, unknown>): boolean => denying.lines.indexOf(l) >= n;
        const s5 = await socksReply(denying, socks5Connect(name, origin.port), (b) => b.length >= 4 + 10);
        assert.equal(s5[5], 2, `SOCKS5 to ${name}: not allowed by the ruleset, got ${s5.toString('hex')}`);
        const line = await accessLine(denying.lines, (l) => after(l) && l.protocol === 'socks5', `the SOCKS5 line of ${name}`);
        assert.equal(line.error, 'destination_ip_prohibited', JSON.stringify(line));
        assert.match(String(line.detail), /address 127\.0\.0\.1 of .* is denied by a rule/, JSON.stringify(line));
        const s4 = await socksReply(denying, socks4aConnect(name, origin.port), (b) => b.length >= 8);
        assert.equal(s4[1], 0x5b, `SOCKS4a to ${name}: ${s4.toString('hex')}`);
        const line4 = await accessLine(denying.lines, (l) => after(l) && l.protocol === 'socks4', `the SOCKS4a line of ${name}`);
        assert.equal(line4.error, 'destination_ip_prohibited', JSON.stringify(line4));
        assert.equal(line4.reply, 91, JSON.stringify(line4));
        assert.equal(origin.connections, before, 'nothing reached the origin');
      });
    });
  }
});

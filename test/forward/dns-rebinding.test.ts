import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { dnsServerResolver } from '../../src/forward/index.js';
import { PASSWORD, USER, basic, dial, readUntil, startTestProxy, userHashes, type TestProxy } from './helpers.js';
import { socks5NameBytes } from './front-clients.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * DNS rebinding (SSRF audit): a name that resolves to an allowed address when it is judged and
 * to a denied one when it is dialled. A DNS server on 127.0.0.1 answers the name with a seeded
 * sequence of 127.0.0.1 (allowed) and 127.0.0.2 (denied to the user by a cidr rule), TTL 0,
 * one answer per query; a server listens on the same port at both addresses. The proxy must
 * dial the address it judged: the 127.0.0.2 server never sees a connection, whichever front
 * (absolute-form HTTP, CONNECT, SOCKS5 by name, SOCKS4a) and whatever the sequence, while the
 * name is asked again for every request (the answers do change under it) and both outcomes
 * happen. The proxy resolves through this server alone (`dnsServerResolver`); its rules allow
 * loopback only, so nothing else is dialled.
 */
const NAME = 'rebind.test';

interface DnsServer {
  port: number;
  /** A queries answered so far. */
  asked: number;
  close(): void;
}

/** The question's name and type of a DNS query, and where the question ends. */
function question(msg: Buffer): { name: string; type: number; end: number } | undefined {
  const labels: string[] = [];
  let p = 12;
  for (let guard = 0; guard < 128 && p < msg.length; guard++) {
    const n = msg[p]!;
    if (n === 0) {
      if (p + 5 > msg.length) return undefined;
      return { name: labels.join('.').toLowerCase(), type: msg.readUInt16BE(p + 1), end: p + 5 };
    }
    if (n > 63 || p + 1 + n > msg.length) return undefined;
    labels.push(msg.toString('latin1', p + 1, p + 1 + n));
    p += 1 + n;
  }
  return undefined;
}

/** A DNS server for NAME: each A query answered with the next address of `answers` (cycled), AAAA with none, TTL 0. */
async function rebindingDns(answers: readonly string[]): Promise<DnsServer> {
  const sock: UdpSocket = createSocket('udp4');
  const st: DnsServer = { port: 0, asked: 0, close: () => sock.close() };
  sock.on('message', (msg, from) => {
    const q = question(msg);
    if (q === undefined || msg.length < 12) return;
    const head = Buffer.alloc(12);
    msg.copy(head, 0, 0, 2); // the id
    const known = q.name === NAME;
    const a = known && q.type === 1 ? answers[st.asked++ % answers.length]! : undefined;
    head.writeUInt16BE(known ? 0x8180 : 0x8183, 2); // a response, recursion available; NXDOMAIN for any other name
    head.writeUInt16BE(1, 4);
    head.writeUInt16BE(a === undefined ? 0 : 1, 6);
    const parts = [head, msg.subarray(12, q.end)];
    if (a !== undefined) {
      const rr = Buffer.alloc(16);
      rr.writeUInt16BE(0xc00c, 0); // the question's name
      rr.writeUInt16BE(1, 2); // A
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(0, 6); // TTL 0: never reused
      rr.writeUInt16BE(4, 10);
      a.split('.').forEach((o, i) => (rr[12 + i] = Number(o)));
      parts.push(rr);
    }
    sock.send(Buffer.concat(parts), from.port, from.address);
  });
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  st.port = sock.address().port;
  return st;
}

interface Destination {
  server: Server;
  accepted: number;
}

/** A server that answers every request on a connection with `who` and closes it. */
async function destination(host: string, port: number, who: string): Promise<Destination> {
  const d: Destination = { server: createServer(), accepted: 0 };
  d.server.on('connection', (s: Socket) => {
    d.accepted++;
    s.on('error', () => {});
    s.once('data', () => s.end(`HTTP/1.1 200 OK\r\ncontent-length: ${who.length}\r\nconnection: close\r\n\r\n${who}`));
  });
  d.server.listen(port, host);
  await once(d.server, 'listening');
  return d;
}

/** The same free port on 127.0.0.1 and 127.0.0.2 (a few tries: the second address's port may be taken). */
async function pair(): Promise<[Destination, Destination]> {
  let last: unknown;
  for (let i = 0; i < 10; i++) {
    const allowed = await destination('127.0.0.1', 0, 'allowed');
    try {
      const denied = await destination('127.0.0.2', (allowed.server.address() as AddressInfo).port, 'denied');
      return [allowed, denied];
    } catch (err) {
      last = err;
      allowed.server.close();
    }
  }
  throw last;
}

type Front = 'http' | 'connect' | 'socks5' | 'socks4a';
const FRONTS: readonly Front[] = ['http', 'connect', 'socks5', 'socks4a'];

/** One request to NAME:port through `front`: 'allowed' (the 127.0.0.1 server answered), or 'refused'. */
async function attempt(proxyPort: number, front: Front, port: number): Promise<'allowed' | 'refused'> {
  const s = await dial(proxyPort);
  s.on('error', () => {});
  try {
    const get = `GET / HTTP/1.1\r\nhost: ${NAME}:${port}\r\n\r\n`;
    if (front === 'http') {
      s.write(`GET http://${NAME}:${port}/ HTTP/1.1\r\nhost: ${NAME}:${port}\r\nproxy-authorization: ${basic()}\r\nconnection: close\r\n\r\n`);
      const r = (await readUntil(s, () => false, undefined, 'the answer to the absolute-form GET')).toString('latin1');
      if (r.startsWith('HTTP/1.1 200 ') && r.endsWith('allowed')) return 'allowed';
      assert.match(r, /^HTTP\/1\.1 502 [^]*proxy-status: [^\r]*error=destination_ip_prohibited/i, `absolute-form: ${r.slice(0, 300)}`);
      return 'refused';
    }
    if (front === 'connect') {
      s.write(`CONNECT ${NAME}:${port} HTTP/1.1\r\nhost: ${NAME}:${port}\r\nproxy-authorization: ${basic()}\r\n\r\n`);
      const head = (await readUntil(s, (b) => b.includes('\r\n\r\n'), undefined, 'the CONNECT answer')).toString('latin1');
      if (!head.startsWith('HTTP/1.1 200 ')) {
        assert.match(head, /^HTTP\/1\.1 502 [^]*proxy-status: [^\r]*error=destination_ip_prohibited/i, `CONNECT: ${head.slice(0, 300)}`);
        return 'refused';
      }
    } else if (front === 'socks5') {
      s.write(socks5NameBytes(NAME, port));
      const r = await readUntil(s, (b) => b.length >= 4 + 10, undefined, 'the SOCKS5 reply');
      if (r[5] !== 0) {
        assert.equal(r[5], 0x02, 'SOCKS5: refused as not allowed by the ruleset');
        return 'refused';
      }
      s.unshift(r.subarray(4 + 10));
    } else {
      const head = Buffer.from([4, 1, port >> 8, port & 0xff, 0, 0, 0, 1]);
      s.write(Buffer.concat([head, Buffer.from(`${USER}:${PASSWORD}\0${NAME}\0`, 'latin1')]));
      const r = await readUntil(s, (b) => b.length >= 8, undefined, 'the SOCKS4 reply');
      if (r[1] !== 0x5a) {
        assert.equal(r[1], 0x5b, 'SOCKS4a: rejected');
        return 'refused';
      }
      s.unshift(r.subarray(8));
    }
    s.write(get);
    const body = (await readUntil(s, () => false, undefined, `the answer through the ${front} tunnel`)).toString('latin1');
    assert.ok(body.endsWith('allowed'), `${front}: the tunnel reached ${JSON.stringify(body.slice(-40))}`);
    return 'allowed';
  } finally {
    s.destroy();
  }
}

describe('DNS rebinding: the proxy dials the address it judged', () => {
  let allowed: Destination;
  let denied: Destination;
  before(async () => {
    [allowed, denied] = await pair();
  });
  after(() => {
    allowed.server.close();
    denied.server.close();
  });

  for (let round = 0; round < 3; round++) {
    it(`a seeded answer sequence, every front (round ${round + 1})`, async () => {
      await seededRun('dns rebinding', async (rand) => {
        // Both addresses in the sequence, in a seeded order and mix (alternating, runs, one-offs).
        const answers = ['127.0.0.1', '127.0.0.2'];
        for (let n = between(rand, 0, 6); n > 0; n--) answers.push(rand() < 0.5 ? '127.0.0.1' : '127.0.0.2');
        for (let i = answers.length - 1; i > 0; i--) {
          const j = between(rand, 0, i);
          [answers[i], answers[j]] = [answers[j]!, answers[i]!];
        }
        const dns = await rebindingDns(answers);
        const [h1, h2] = await userHashes();
        let proxy: TestProxy | undefined;
        try {
          proxy = await startTestProxy(
            {
              auth: { required: true, users: [{ name: USER, password: h1, deny: [{ cidrs: ['127.0.0.2/32'] }], allow: [{ cidrs: ['127.0.0.1/32'] }] }, { name: 'bob', password: h2 }] },
              rules: { allowPrivate: false, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8', '::1/128'] }], connectPorts: ['1-65535'], httpPorts: ['1-65535'] },
              timeouts: { connect: '2s', dns: '2s', handshake: '3s' },
            },
            { resolver: dnsServerResolver([`127.0.0.1:${dns.port}`], { timeoutMs: 1000, tries: 2 }) },
          );
          const port = (allowed.server.address() as AddressInfo).port;
          const seen = { allowed: 0, refused: 0 };
          const tries = between(rand, 12, 20);
          for (let i = 0; i < tries; i++) {
            const front = FRONTS[between(rand, 0, FRONTS.length - 1)]!;
            const askedBefore = dns.asked;
            seen[await attempt(proxy.port, front, port)]++;
            assert.ok(dns.asked > askedBefore, `request ${i} (${front}) was not resolved afresh (answers ${answers.join(' ')})`);
          }
          assert.equal(denied.accepted, 0, `the denied address was dialled (answers ${answers.join(' ')})`);
          assert.ok(seen.allowed > 0 && seen.refused > 0, `both outcomes over ${tries} requests (answers ${answers.join(' ')}): ${JSON.stringify(seen)}`);
        } finally {
          await proxy?.close();
          dns.close();
        }
      });
    });
  }
});

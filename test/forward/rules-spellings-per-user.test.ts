import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { PASSWORD, USER, basic, dial, readUntil, startTestProxy, userHashes, type TestProxy } from './helpers.js';
import { socks5NameBytes } from './front-clients.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * SSRF audit: a user's own cidr rule (alice: deny 127.0.0.2/32, allow 127.0.0.1/32; for
 * everyone: loopback only, default deny) judges every spelling of an address alike on every
 * front: absolute-form HTTP and CONNECT (inet_aton forms as the WHATWG URL parser reads them,
 * bracketed IPv4-mapped IPv6), SOCKS5 by name (ATYP 3) and by address (ATYP 1 and 4), SOCKS4
 * and SOCKS4a. A seeded family of spellings of 127.0.0.2 is refused and the server there never
 * sees a connection; the same family of spellings of 127.0.0.1 reaches the server there (the
 * control: the spellings are read as addresses, not refused as malformed). Both servers listen
 * on one port number, so a spelling read as the wrong address would show.
 */

type Front = 'http' | 'connect' | 'socks5-name' | 'socks5-address' | 'socks4a' | 'socks4';

/** An inet_aton(3) spelling of `o`: 1–4 parts, each decimal, octal (leading zeros) or hex (either case), sometimes a trailing dot. */
function atonSpelling(rand: () => number, o: readonly number[]): string {
  const parts = between(rand, 1, 4);
  let rest = 0;
  for (const b of o.slice(parts - 1)) rest = rest * 256 + b;
  const nums = [...o.slice(0, parts - 1), rest];
  const spell = (n: number): string => {
    const k = between(rand, 0, 2);
    if (k === 0) return String(n);
    if (k === 1) return '0'.repeat(between(rand, 1, 3)) + n.toString(8);
    const hex = '0'.repeat(between(rand, 0, 2)) + n.toString(16);
    return (rand() < 0.5 ? '0x' : '0X') + [...hex].map((c) => (rand() < 0.5 ? c.toUpperCase() : c)).join('');
  };
  return nums.map(spell).join('.') + (rand() < 0.25 ? '.' : '');
}

/** An IPv4-mapped IPv6 spelling of `o` (compressed or not, hex or dotted tail, either case). */
function mappedSpelling(rand: () => number, o: readonly number[]): string {
  const hi = ((o[0]! << 8) | o[1]!).toString(16);
  const lo = ((o[2]! << 8) | o[3]!).toString(16);
  const dotted = o.join('.');
  const forms = [`::ffff:${dotted}`, `::ffff:${hi}:${lo}`, `0:0:0:0:0:ffff:${hi}:${lo}`, `0000:0000:0000:0000:0000:ffff:${dotted}`, `::0:ffff:${hi}:${lo}`, `0::ffff:${dotted}`];
  const f = forms[between(rand, 0, forms.length - 1)]!;
  return [...f].map((c) => (rand() < 0.5 ? c.toUpperCase() : c)).join('');
}

function socks5AddressBytes(o: readonly number[], v6: boolean, port: number): Buffer {
  const u = Buffer.from(USER);
  const p = Buffer.from(PASSWORD);
  const addr = v6 ? Buffer.from([4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...o]) : Buffer.from([1, ...o]);
  const pb = Buffer.from([port >> 8, port & 0xff]);
  return Buffer.concat([Buffer.from([5, 1, 2, 1, u.length]), u, Buffer.from([p.length]), p, Buffer.from([5, 1, 0]), addr, pb]);
}

interface Destination {
  server: Server;
  accepted: number;
}

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

/** One request through `front` to `host` (a spelling; `o` the octets it spells, for the address fronts): 'allowed' when the 127.0.0.1 server answered, 'refused' when the proxy refused it. */
async function attempt(proxyPort: number, front: Front, host: string, o: readonly number[], v6: boolean, port: number): Promise<'allowed' | 'refused'> {
  const s = await dial(proxyPort);
  s.on('error', () => {});
  const authority = v6 ? `[${host}]:${port}` : `${host}:${port}`;
  try {
    if (front === 'http') {
      s.write(`GET http://${authority}/ HTTP/1.1\r\nhost: ${authority}\r\nproxy-authorization: ${basic()}\r\nconnection: close\r\n\r\n`);
      const r = (await readUntil(s, () => false, undefined, `the answer to GET http://${authority}/`)).toString('latin1');
      if (r.startsWith('HTTP/1.1 200 ')) {
        assert.ok(r.endsWith('allowed'), `GET http://${authority}/ reached ${JSON.stringify(r.slice(-20))}`);
        return 'allowed';
      }
      assert.match(r, /^HTTP\/1\.1 502 [^]*proxy-status: [^\r]*error=destination_ip_prohibited/i, `GET http://${authority}/: ${r.slice(0, 300)}`);
      return 'refused';
    }
    if (front === 'connect') {
      s.write(`CONNECT ${authority} HTTP/1.1\r\nhost: ${authority}\r\nproxy-authorization: ${basic()}\r\n\r\n`);
      const head = (await readUntil(s, (b) => b.includes('\r\n\r\n'), undefined, `the answer to CONNECT ${authority}`)).toString('latin1');
      if (!head.startsWith('HTTP/1.1 200 ')) {
        assert.match(head, /^HTTP\/1\.1 502 [^]*proxy-status: [^\r]*error=destination_ip_prohibited/i, `CONNECT ${authority}: ${head.slice(0, 300)}`);
        return 'refused';
      }
    } else if (front === 'socks5-name' || front === 'socks5-address') {
      s.write(front === 'socks5-name' ? socks5NameBytes(host, port) : socks5AddressBytes(o, v6, port));
      // Method and auth replies (2 + 2 bytes), then VER REP RSV ATYP BND.ADDR BND.PORT.
      const r = await readUntil(s, (b) => b.length >= 4 + 10 && (b[7] !== 4 || b.length >= 4 + 22), undefined, `the SOCKS5 reply for ${host}`);
      if (r[5] !== 0) {
        assert.equal(r[5], 0x02, `SOCKS5 ${front} ${host}: refused as not allowed`);
        return 'refused';
      }
    } else {
      const head = Buffer.from([4, 1, port >> 8, port & 0xff, ...(front === 'socks4' ? o : [0, 0, 0, 1])]);
      const tail = front === 'socks4' ? '' : `${host}\0`;
      s.write(Buffer.concat([head, Buffer.from(`${USER}:${PASSWORD}\0${tail}`, 'latin1')]));
      const r = await readUntil(s, (b) => b.length >= 8, undefined, `the SOCKS4 reply for ${host}`);
      if (r[1] !== 0x5a) {
        assert.equal(r[1], 0x5b, `${front} ${host}: rejected`);
        return 'refused';
      }
    }
    s.write(`GET / HTTP/1.1\r\nhost: x\r\n\r\n`);
    const body = (await readUntil(s, () => false, undefined, `the answer through the ${front} tunnel to ${host}`)).toString('latin1');
    assert.ok(body.endsWith('allowed'), `${front} ${host}: the tunnel reached ${JSON.stringify(body.slice(-20))}`);
    return 'allowed';
  } finally {
    s.destroy();
  }
}

describe("a user's cidr rules judge every spelling of an address alike on every front", () => {
  let allowed: Destination;
  let denied: Destination;
  let proxy: TestProxy;
  before(async () => {
    let last: unknown;
    for (let i = 0; i < 10 && denied === undefined; i++) {
      allowed = await destination('127.0.0.1', 0, 'allowed');
      try {
        denied = await destination('127.0.0.2', (allowed.server.address() as AddressInfo).port, 'denied');
      } catch (err) {
        last = err;
        allowed.server.close();
      }
    }
    if (denied === undefined) throw last;
    const [h1, h2] = await userHashes();
    proxy = await startTestProxy({
      auth: { required: true, users: [{ name: USER, password: h1, deny: [{ cidrs: ['127.0.0.2/32'] }], allow: [{ cidrs: ['127.0.0.1/32'] }] }, { name: 'bob', password: h2 }] },
      rules: { allowPrivate: false, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8', '::1/128'] }], connectPorts: ['1-65535'], httpPorts: ['1-65535'] },
    });
  });
  after(async () => {
    await proxy?.close();
    allowed?.server.close();
    denied?.server.close();
  });

  for (const [target, o] of [['127.0.0.2', [127, 0, 0, 2]], ['127.0.0.1', [127, 0, 0, 1]]] as const) {
    it(`seeded spellings of ${target}, every front`, async () => {
      await seededRun(`spellings of ${target}`, async (rand) => {
        const port = (allowed.server.address() as AddressInfo).port;
        const want = target === '127.0.0.2' ? 'refused' : 'allowed';
        const fronts: Front[] = ['http', 'connect', 'socks5-name', 'socks5-address', 'socks4a', 'socks4'];
        const acceptedBefore = allowed.accepted;
        let tried = 0;
        for (let i = 0; i < 24; i++) {
          const front = fronts[i % fronts.length]!;
          const v6 = front !== 'socks4' && front !== 'socks4a' && rand() < 0.35;
          const host = front === 'socks4' ? target : v6 ? mappedSpelling(rand, o) : atonSpelling(rand, o);
          const got = await attempt(proxy.port, front, host, o, v6, port);
          assert.equal(got, want, `${front} ${host}`);
          tried++;
        }
        assert.equal(denied.accepted, 0, 'a spelling of 127.0.0.2 reached it');
        if (want === 'allowed') assert.equal(allowed.accepted - acceptedBefore, tried, 'every spelling of 127.0.0.1 reached it');
      });
    });
  }
});

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { ProxyAgent, request } from 'undici';
import { forwardSchema } from '../../src/config/forward.js';
import { PortSet, type PortSpec } from '../../src/forward/rules/port-set.js';
import { accessLine, basic, rawExchange, run, startTestProxy, tableResolver, type TestProxy } from './helpers.js';
import { GUARD_MS } from '../helpers/time-bounds.js';
import { seededRandom, withSeed, type Rand } from '../helpers/seeded.js';

/**
 * `forward.rules.httpPorts`: the ports an absolute-form request (`GET http://host:port/`) may be
 * sent to, as `connectPorts` is for CONNECT. Without it the HTTP proxy front relayed plain HTTP
 * to any port: a cross-protocol relay for SMTP (25), Redis (6379), memcached (11211), whose
 * text protocols read an HTTP request's lines as commands. A refused request is answered as a
 * CONNECT to a port outside connectPorts is (403, Proxy-Status error=http_request_denied),
 * recorded, and nothing is dialled: the destination's listener counts no connection, and a
 * name is never even resolved.
 */

/** An HTTP listener on loopback that counts the connections it accepts. */
interface Counting {
  host: string;
  port: number;
  connections: number;
  requests: Array<{ url: string; host: string | undefined }>;
  close(): Promise<void>;
}

async function counting(host: string, port = 0, answer?: (res: import('node:http').ServerResponse) => void): Promise<Counting> {
  const c: Counting = { host, port, connections: 0, requests: [], close: async () => {} };
  const server: Server = createServer((req, res) => {
    c.requests.push({ url: req.url ?? '', host: req.headers.host });
    req.resume();
    if (answer) return answer(res);
    const body = `reached ${c.port}`;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(body.length) });
    res.end(body);
  });
  server.on('connection', () => c.connections++);
  server.listen(port, host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([e]) => Promise.reject(e as Error))]);
  c.port = (server.address() as AddressInfo).port;
  c.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return c;
}

/** A listener on `port` of a loopback address: 127.0.0.1 when free, else one of a few seeded 127.x.y.z (bounded). */
async function countingOnPort(rand: Rand, port: number): Promise<Counting> {
  const hosts = ['127.0.0.1', ...Array.from({ length: 4 }, () => `127.${1 + rand.int(250)}.${rand.int(256)}.${1 + rand.int(250)}`)];
  let last: unknown;
  for (const h of hosts) {
    try {
      return await counting(h, port);
    } catch (err) {
      last = err;
    }
  }
  throw new Error(`no loopback address had port ${port} free: ${String(last)}`);
}

const authority = (host: string, port: number): string => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);
const proxyStatus = (res: string): string => /\r\nproxy-status: ([^\r]*)/i.exec(res)?.[1] ?? '';
const statusOf = (res: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(res)?.[1] ?? 0);

type Client = 'raw' | 'curl' | 'undici';

/** One absolute-form GET through the proxy by `client`; its status and (raw only) Proxy-Status. */
async function proxiedGet(p: TestProxy, client: Client, url: string, hostHeader?: string): Promise<{ status: number; proxyStatus: string; body: string }> {
  if (client === 'raw') {
    const u = new URL(url);
    const res = await rawExchange(p.port, `GET ${url} HTTP/1.1\r\nHost: ${hostHeader ?? u.host}\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\n\r\n`, GUARD_MS);
    return { status: statusOf(res), proxyStatus: proxyStatus(res), body: res.slice(res.indexOf('\r\n\r\n') + 4) };
  }
  if (client === 'curl') {
    const r = await run('curl', ['-sS', '-g', '--max-time', '30', '-x', p.authUrl, '-D', '-', ...(hostHeader ? ['-H', `Host: ${hostHeader}`] : []), url]);
    assert.equal(r.code, 0, r.stderr);
    const head = r.stdout.slice(0, r.stdout.indexOf('\r\n\r\n'));
    return { status: statusOf(r.stdout), proxyStatus: proxyStatus(head + '\r\n'), body: r.stdout.slice(head.length + 4) };
  }
  const agent = new ProxyAgent({ uri: p.url, token: basic(), proxyTunnel: false });
  try {
    const res = await request(url, { dispatcher: agent, ...(hostHeader ? { headers: { host: hostHeader } } : {}) });
    const body = await res.body.text();
    const ps = res.headers['proxy-status'];
    return { status: res.statusCode, proxyStatus: Array.isArray(ps) ? ps.join(', ') : (ps ?? ''), body };
  } finally {
    await agent.close();
  }
}

/** Port specs (numbers and "lo-hi" strings) that hold `allowed` and not `refused`, seeded: ranges around, a list, or both. */
function specsFor(rand: Rand, allowed: number, refused: number): PortSpec[] {
  const out: PortSpec[] = [];
  const form = rand.int(3);
  if (form === 0) {
    // Everything but the refused port: its neighbours are the boundaries.
    if (refused > 1) out.push(refused - 1 === 1 ? 1 : `1-${refused - 1}`);
    if (refused < 65535) out.push(`${refused + 1}-65535`);
  } else {
    // A few random ranges with the refused port cut out, then the allowed port.
    for (let i = rand.int(4); i > 0; i--) {
      const lo = 1 + rand.int(65535);
      const hi = Math.min(65535, lo + rand.int(5000));
      if (refused < lo || refused > hi) out.push(lo === hi ? lo : `${lo}-${hi}`);
      else {
        if (lo < refused) out.push(`${lo}-${refused - 1}`);
        if (refused < hi) out.push(`${refused + 1}-${hi}`);
      }
    }
    out.push(form === 1 ? allowed : `${allowed}-${allowed}`);
  }
  // Shuffled: the order of the list means nothing.
  for (let i = out.length - 1; i > 0; i--) {
    const j = rand.int(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe('forward.rules.httpPorts: absolute-form HTTP requests only to allowed ports', () => {
  it('refuses absolute-form requests to a port outside httpPorts without dialling it, and sends those inside (seeded: ports, spec spellings, IPv4/IPv6/name, raw/curl/undici, Host header)', async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let round = 0; round < 6; round++) {
        const v6 = rand.int(3) === 0;
        const host = v6 ? '::1' : '127.0.0.1';
        const allowed = await counting(host);
        const refused = await counting(host);
        const specs = specsFor(rand, allowed.port, refused.port);
        const lookups: string[] = [];
        const table = tableResolver({ 'allowed.test': [host], 'refused.test': [host] });
        let p: TestProxy | undefined;
        try {
          p = await startTestProxy({ rules: { httpPorts: specs } }, { resolver: async (name: string) => (lookups.push(name), table(name)) });
          const byName = rand.int(3) === 0;
          const client: Client = rand.pick(['raw', 'curl', 'undici'] as const);
          const hostOf = (c: Counting, name: string): string => (byName ? `${name}:${c.port}` : authority(c.host, c.port));
          // The Host header names the allowed port while the URI names the refused one: the URI decides (RFC 9112 §3.2.2).
          const mismatched = client !== 'undici' && rand.int(2) === 0;
          const scheme = client === 'raw' && rand.int(4) === 0 ? 'https' : 'http';
          const what = `round ${round}: ${client} ${scheme} ${byName ? 'name' : host} specs ${JSON.stringify(specs)} allowed ${allowed.port} refused ${refused.port}${mismatched ? ' (Host: the allowed port)' : ''}`;

          const no = await proxiedGet(p, client, `${scheme}://${hostOf(refused, 'refused.test')}/x`, mismatched ? hostOf(allowed, 'allowed.test') : undefined);
          assert.equal(no.status, 403, `${what}: ${JSON.stringify(no)}`);
          assert.match(no.proxyStatus, /error=http_request_denied/, what);
          const line = await accessLine(p.lines, (l) => l.status === 403, `${what}: the refusal's record`);
          assert.equal(line.protocol, 'http', what);
          assert.equal(line.error, 'http_request_denied', what);
          assert.match(String(line.detail), new RegExp(`port ${refused.port}\\b`), what);
          assert.equal(line.destination, hostOf(refused, 'refused.test'), what);
          assert.deepEqual(lookups, [], `${what}: a refused name is not even resolved`);

          const yes = await proxiedGet(p, client, `http://${hostOf(allowed, 'allowed.test')}/y`, mismatched ? hostOf(refused, 'refused.test') : undefined);
          assert.equal(yes.status, 200, `${what}: ${JSON.stringify(yes)}`);
          assert.equal(yes.body, `reached ${allowed.port}`, what);
          assert.ok(allowed.connections >= 1, what);
          // The Host header sent on is the URI's authority, never the client's Host.
          assert.equal(allowed.requests.at(-1)!.host, hostOf(allowed, 'allowed.test'), what);
          assert.equal(refused.connections, 0, `${what}: the refused port was dialled`);
        } finally {
          await p?.close();
          await allowed.close();
          await refused.close();
        }
      }
    });
  });

  it('PortSet answers as the list says, for any list and port (seeded; short lists and long ones, boundaries)', async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let round = 0; round < 300; round++) {
        const ranges: Array<[number, number]> = [];
        const specs: PortSpec[] = [];
        for (let i = 1 + rand.int(rand.int(2) === 0 ? 4 : 30); i > 0; i--) {
          const lo = 1 + rand.int(65535);
          const hi = Math.min(65535, lo + (rand.int(3) === 0 ? 0 : rand.int(rand.int(2) === 0 ? 10 : 20000)));
          ranges.push([lo, hi]);
          specs.push(lo === hi && rand.int(2) === 0 ? lo : `${lo}-${hi}`);
        }
        const set = new PortSet(specs);
        const inList = (p: number): boolean => ranges.some(([lo, hi]) => p >= lo && p <= hi);
        const probes = [0, 1, 65535, 65536, ...ranges.flatMap(([lo, hi]) => [lo - 1, lo, hi, hi + 1]), ...Array.from({ length: 50 }, () => rand.int(65537))];
        for (const p of probes) assert.equal(set.has(p), inList(p), `round ${round}: port ${p}, specs ${JSON.stringify(specs)}`);
      }
    });
  });

  it('answers a refused port as CONNECT to a port outside connectPorts is answered: same status, Proxy-Status error, record fields', async () => {
    const dest = await counting('127.0.0.1');
    let p: TestProxy | undefined;
    try {
      p = await startTestProxy({ rules: { connectPorts: [443], httpPorts: [443] } });
      const a = await rawExchange(p.port, `GET http://127.0.0.1:${dest.port}/ HTTP/1.1\r\nHost: 127.0.0.1:${dest.port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`, GUARD_MS);
      const aLine = await accessLine(p.lines, (l) => l.protocol === 'http' && l.status === 403, 'the absolute-form refusal');
      const c = await rawExchange(p.port, `CONNECT 127.0.0.1:${dest.port} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic()}\r\n\r\n`, GUARD_MS);
      const cLine = await accessLine(p.lines, (l) => l.protocol === 'connect' && l.status === 403, 'the CONNECT refusal');
      assert.equal(statusOf(a), statusOf(c));
      assert.equal(statusOf(a), 403);
      assert.equal(proxyStatus(a).replace(/;details=.*$/, ''), proxyStatus(c).replace(/;details=.*$/, ''));
      const pick = (l: Record<string, unknown>): unknown[] => [l.status, l.error, l.reason, l.phase, l.refused, l.endedBy, l.destination];
      assert.deepEqual(pick(aLine), pick(cLine));
      assert.equal(dest.connections, 0);
    } finally {
      await p?.close();
      await dest.close();
    }
  });

  it('by default excludes the ports of plain-text services (25, 6379, 11211, …) and keeps 80, 443 and the high ports (seeded sweep)', async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      // Nothing but what parsing needs: the rules are all defaults.
      const set = new PortSet(forwardSchema.parse({ auth: { required: false } }).rules.httpPorts);
      for (const p of [80, 443, 1025, 8080, 8443, 32768, 65535]) assert.ok(set.has(p), `default refuses ${p}`);
      for (const p of [1, 21, 22, 23, 25, 110, 143, 465, 587, 993, 995, 1720, 2049, 5060, 6000, 6379, 6667, 11211]) assert.ok(!set.has(p), `default allows ${p}`);
      for (let i = 0; i < 200; i++) {
        const p = 1 + rand.int(1024);
        if (p !== 80 && p !== 443) assert.ok(!set.has(p), `default allows low port ${p}`);
      }
    });
  });

  it('by default refuses GET http://127.0.0.1:6379/ (or another loopback address\'s 6379 when that one is taken), http://[::1]:6379/ and http://127.0.0.1:25/ without dialling (curl, undici)', async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      const redis = await countingOnPort(rand, 6379);
      let redis6: Counting | undefined;
      try {
        redis6 = await counting('::1', 6379);
      } catch {
        // [::1]:6379 in use here (someone else's listener): not asked.
      }
      let p: TestProxy | undefined;
      try {
        p = await startTestProxy();
        // Only listeners of this test's own are named (a dial, before the fix, reached them and nothing else); port 25 has none here.
        const urls = [`http://${authority(redis.host, 6379)}/`, ...(redis6 ? ['http://[::1]:6379/'] : []), 'http://127.0.0.1:25/'];
        for (const url of urls) {
          for (const client of ['curl', 'undici'] as const) {
            const r = await proxiedGet(p, client, url);
            assert.equal(r.status, 403, `${client} ${url}: ${JSON.stringify(r)}`);
            assert.match(r.proxyStatus, /error=http_request_denied/, `${client} ${url}`);
          }
        }
        assert.equal(redis.connections, 0, 'the 6379 listener was dialled');
        assert.equal(redis6?.connections ?? 0, 0, 'the [::1]:6379 listener was dialled');
      } finally {
        await p?.close();
        await redis.close();
        await redis6?.close();
      }
    });
  });

  it('does not follow a redirect to a refused port; a client that follows it (curl -L) is refused there', async () => {
    const refused = await counting('127.0.0.1');
    const redirecting = await counting('127.0.0.1', 0, (res) => {
      res.writeHead(302, { location: `http://127.0.0.1:${refused.port}/next`, 'content-length': '0' });
      res.end();
    });
    let p: TestProxy | undefined;
    try {
      p = await startTestProxy({ rules: { httpPorts: [redirecting.port] } });
      const raw = await rawExchange(p.port, `GET http://127.0.0.1:${redirecting.port}/ HTTP/1.1\r\nHost: 127.0.0.1:${redirecting.port}\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\n\r\n`, GUARD_MS);
      assert.equal(statusOf(raw), 302, raw);
      assert.match(raw, new RegExp(`\\r\\nlocation: http://127\\.0\\.0\\.1:${refused.port}/next\\r\\n`, 'i'));
      const r = await run('curl', ['-sS', '-L', '--max-redirs', '3', '--max-time', '30', '-o', '/dev/null', '-w', '%{http_code} %{num_redirects}', '-x', p.authUrl, `http://127.0.0.1:${redirecting.port}/`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, '403 1');
      assert.equal(refused.connections, 0);
    } finally {
      await p?.close();
      await redirecting.close();
      await refused.close();
    }
  });

  it('through an upstream proxy exit: a refused port never reaches the exit; an allowed one goes through it', async () => {
    // The exit is a plain HTTP server: it answers the absolute-form request it is given, and counts connections.
    const exit = await counting('127.0.0.1');
    const dest = await counting('127.0.0.1');
    const refused = await counting('127.0.0.1');
    let p: TestProxy | undefined;
    try {
      p = await startTestProxy({
        rules: { httpPorts: [dest.port] },
        egress: { pools: { up: { proxies: [`http://127.0.0.1:${exit.port}`] } }, defaultPool: 'up' },
      });
      const no = await proxiedGet(p, 'curl', `http://127.0.0.1:${refused.port}/`);
      assert.equal(no.status, 403, JSON.stringify(no));
      assert.equal(exit.connections, 0, 'the exit was dialled for a refused port');
      const yes = await proxiedGet(p, 'curl', `http://127.0.0.1:${dest.port}/through`);
      assert.equal(yes.status, 200, JSON.stringify(yes));
      assert.equal(exit.requests.at(-1)?.url, `http://127.0.0.1:${dest.port}/through`);
      assert.equal(refused.connections, 0);
    } finally {
      await p?.close();
      await exit.close();
      await dest.close();
      await refused.close();
    }
  });

  it('the port omitted is port 80: refused when 80 is not in httpPorts, the name never resolved', async () => {
    const lookups: string[] = [];
    const table = tableResolver({ 'web.test': ['127.0.0.1'] });
    let p: TestProxy | undefined;
    try {
      p = await startTestProxy({ rules: { httpPorts: ['8000-8999'] } }, { resolver: async (n: string) => (lookups.push(n), table(n)) });
      for (const client of ['raw', 'curl', 'undici'] as const) {
        const r = await proxiedGet(p, client, 'http://web.test/');
        assert.equal(r.status, 403, `${client}: ${JSON.stringify(r)}`);
      }
      const line = await accessLine(p.lines, (l) => l.status === 403, 'the refusal');
      assert.match(String(line.detail), /port 80\b/);
      assert.equal(line.destination, 'web.test:80');
      assert.deepEqual(lookups, []);
    } finally {
      await p?.close();
    }
  });
});

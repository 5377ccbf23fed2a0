import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import type { ProxyErrorType } from '../../src/failure/index.js';
import { TLS_ALERT_IDS } from '../../src/failure/tls-alerts.js';
import { LiveTraffic } from '../../src/observe/live.js';
import { attachMetrics } from '../../src/observe/metrics.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { checkStory as storyOf, counted as countedIn, parse, type Raw } from './error-story-rig.js';
import { PASSWORD, USER, accessLine, basic, dial, rawExchange, readUntil, refusedPort, startOrigin, startTestProxy, tableResolver, type Origin, type TestProxy } from './helpers.js';

/**
 * The error story of the forward proxy's egress, for the causes the first two story probes
 * (error-story.test.ts) did not produce: every exit of a pool cooling down (HTTP proxy,
 * CONNECT, SOCKS5), an upstream TLS alert when the proxy originates TLS (absolute-form
 * https://), and a reset in the middle of a handshake (the proxy's TLS to the destination, an
 * exit's SOCKS5 and HTTP CONNECT handshakes). HTTP answers: the taxonomy's status,
 * Proxy-Status (error and its parameters), the request id, problem+json; the same type,
 * status, phase and detail in the access-log line, the request metrics and the dashboard's
 * record (LiveTraffic). SOCKS answers are a reply code; their story is the line and record.
 * Every upstream is real and on loopback: refused ports, raw TCP servers that misbehave.
 */

const rand = seededRandom();
/** Dead exits of the pool (1–3), each an HTTP or a SOCKS5 upstream proxy. */
const DEAD_EXITS = 1 + rand.int(3);
const DEAD_KINDS = Array.from({ length: DEAD_EXITS }, () => rand.pick(['http', 'socks5'] as const));
/** The pool's first cool-down, over a range: long enough to outlast the test. */
const COOLDOWN_S = 60 + rand.int(240);
/** TLS alerts an upstream sends (RFC 8446 §6), a seeded few of those OpenSSL names in its codes. */
const ALERTS = ['handshake_failure', 'bad_certificate', 'unknown_ca', 'protocol_version', 'internal_error', 'access_denied', 'decode_error', 'illegal_parameter'] as const;
const ALERT = rand.pick(ALERTS);

let origin: Origin;
let p: TestProxy;
let live: LiveTraffic;
let metrics: ReturnType<typeof attachMetrics>;
let deadPorts: number[] = [];
/** Sends one TLS alert record after reading the ClientHello. */
let alerter: TcpServer;
/** Resets after reading the first bytes (a ClientHello, a SOCKS5 greeting, a CONNECT head). */
let resetter: TcpServer;

function listen(onConn: (c: Socket) => void): Promise<TcpServer> {
  const s = createTcpServer((c) => {
    c.on('error', () => {});
    onConn(c);
  });
  s.listen(0, '127.0.0.1');
  return once(s, 'listening').then(() => s);
}

function portOf(s: TcpServer): number {
  return (s.address() as AddressInfo).port;
}

before(async () => {
  origin = await startOrigin();
  deadPorts = [];
  for (let i = 0; i < DEAD_EXITS; i++) deadPorts.push(await refusedPort());
  alerter = await listen((c) => c.once('data', () => c.end(Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, TLS_ALERT_IDS[ALERT]!]))));
  resetter = await listen((c) => c.once('data', () => c.resetAndDestroy()));
  live = new LiveTraffic({ failures: 1000 }).attach();
  metrics = attachMetrics(new Registry());
  p = await startTestProxy(
    {
      egress: {
        pools: {
          dead: {
            proxies: deadPorts.map((port, i) => `${DEAD_KINDS[i]}://127.0.0.1:${port}`),
            maxAttempts: 10,
            failure: { threshold: 1, cooldown: `${COOLDOWN_S}s`, maxCooldown: '10m' },
          },
          // An address pool ("datacenter proxies"): loopback source addresses, a destination that refuses each.
          addr: { addresses: ['127.0.0.2', '127.0.0.3'], maxAttempts: 10, failure: { threshold: 1, cooldown: `${COOLDOWN_S}s`, maxCooldown: '10m' } },
          socksreset: { proxies: [`socks5://127.0.0.1:${portOf(resetter)}`], maxAttempts: 1, failure: { threshold: 100 } },
          httpreset: { proxies: [`http://127.0.0.1:${portOf(resetter)}`], maxAttempts: 1, failure: { threshold: 100 } },
        },
        // The same pool chosen by the operator's rule, not by the client.
        routing: [{ hosts: ['ruled.gatewise.test'], pool: 'dead' }],
      },
    } as never,
    { resolver: tableResolver({ 'origin.gatewise.test': ['127.0.0.1'], 'ruled.gatewise.test': ['127.0.0.1'] }) },
  );
});

after(async () => {
  live?.detach();
  metrics?.detach();
  await p?.close();
  await origin?.close();
  alerter?.close();
  resetter?.close();
});

function ask(kind: 'http' | 'connect', hostPort: string, user: string, scheme = 'http'): Promise<string> {
  const auth = basic(user, PASSWORD);
  return kind === 'http'
    ? rawExchange(p.port, `GET ${scheme}://${hostPort}/ HTTP/1.1\r\nHost: ${hostPort}\r\nAccept: application/problem+json\r\nProxy-Authorization: ${auth}\r\nConnection: close\r\n\r\n`, 15_000)
    : rawExchange(p.port, `CONNECT ${hostPort} HTTP/1.1\r\nHost: ${hostPort}\r\nAccept: application/problem+json\r\nProxy-Authorization: ${auth}\r\n\r\n`, 15_000);
}

/** One HTTP answer's story (error-story-rig.ts): the line and our Proxy-Status member's parameters. */
function checkStory(a: Raw, type: ProxyErrorType, where: string): Promise<{ line: Record<string, unknown>; params: Record<string, unknown> }> {
  return storyOf({ p, live, seed: rand.seed }, a, type, where);
}

function counted(labels: Record<string, string>): Promise<number> {
  return countedIn(metrics, labels);
}

function socksConnect(user: string, host: string, port: number): Buffer {
  const pb = Buffer.alloc(2);
  pb.writeUInt16BE(port);
  return Buffer.concat([Buffer.from([5, 1, 2, 1, user.length]), Buffer.from(user), Buffer.from([PASSWORD.length]), Buffer.from(PASSWORD), Buffer.from([5, 1, 0, 3, host.length]), Buffer.from(host), pb]);
}

async function socks(bytes: Buffer): Promise<Buffer> {
  const s = await dial(p.port);
  s.on('error', () => {});
  s.write(bytes);
  try {
    return await readUntil(s, (b) => b.length >= 2 + 2 + 10, 10_000, 'the SOCKS reply');
  } finally {
    s.destroy();
  }
}

describe(`error story, forward egress (seed ${rand.seed}; ${DEAD_EXITS} dead exits ${DEAD_KINDS.join(',')}, cool-down ${COOLDOWN_S} s, alert ${ALERT})`, () => {
  const poolUser = `${USER}-pool-dead`;

  it('every exit of the pool cooling down: 503 destination_unavailable on the HTTP proxy, CONNECT and SOCKS5, with the pool, the wait and the same story', async () => {
    await withSeed(rand, async () => {
      const hostPort = `origin.gatewise.test:${origin.port}`;
      // The first request tries every exit: each refuses and cools down (threshold 1).
      const first = parse(await ask('http', hostPort, poolUser));
      const f = await checkStory(first, 'connection_refused', 'the request that cools every exit');
      assert.equal(f.line.pool, 'dead', JSON.stringify(f.line));
      // Exits tried before the last (none: the field is left out).
      assert.equal(f.line.exitRetries ?? 0, DEAD_EXITS - 1, JSON.stringify(f.line));
      for (const kind of ['http', 'connect'] as const) {
        const labels = { face: 'forward', error: 'destination_unavailable', status: '503', protocol: kind };
        const before = await counted(labels);
        const a = parse(await ask(kind, hostPort, poolUser));
        const { line, params } = await checkStory(a, 'destination_unavailable', `${kind}: every exit cooling down`);
        assert.equal(line.phase, 'pick', JSON.stringify(line));
        assert.equal(line.pool, 'dead', `the line names the pool: ${JSON.stringify(line)}`);
        assert.equal(line.user, USER, JSON.stringify(line));
        assert.match(String(line.detail), /every exit of pool dead is cooling down/, JSON.stringify(line));
        // The wait is said to the client: Retry-After, within the cool-down.
        const retryAfter = Number(a.headers['retry-after']);
        assert.ok(retryAfter > 0 && retryAfter <= COOLDOWN_S, `Retry-After ${a.headers['retry-after']} within ${COOLDOWN_S} s: ${JSON.stringify(a.headers)}`);
        // The client chose the pool (-pool-dead): the cause is said to them with revealDetails off.
        assert.equal(typeof params.details, 'string', `details: ${a.headers['proxy-status']}`);
        assert.equal((await counted(labels)) - before, 1, `counted under ${JSON.stringify(labels)}`);
      }
      // The pool a routing rule chose is the operator's: with revealDetails off the client gets the type and the wait, not the pool.
      const ruled = parse(await ask('http', `ruled.gatewise.test:${origin.port}`, USER));
      const r1 = await checkStory(ruled, 'destination_unavailable', 'a rule\'s pool cooling down');
      assert.equal(r1.line.pool, 'dead', JSON.stringify(r1.line));
      assert.equal(r1.params.details, undefined, `no details of the operator's pool: ${ruled.headers['proxy-status']}`);
      assert.ok(!ruled.body.includes('pool dead'), ruled.body);
      assert.ok(Number(ruled.headers['retry-after']) > 0, JSON.stringify(ruled.headers));
      const before = await counted({ face: 'forward', protocol: 'socks5', error: 'destination_unavailable' });
      const r = await socks(socksConnect(poolUser, 'origin.gatewise.test', origin.port));
      assert.deepEqual([...r.subarray(0, 4)], [5, 2, 1, 0], r.toString('hex'));
      assert.equal(r[5], 4, `reply host unreachable: ${r.toString('hex')}`);
      const line = await accessLine(p.lines, (l) => l.protocol === 'socks5' && l.error === 'destination_unavailable', 'the SOCKS5 line');
      assert.equal(line.reply, 4, JSON.stringify(line));
      assert.equal(line.phase, 'pick', JSON.stringify(line));
      assert.equal(line.pool, 'dead', JSON.stringify(line));
      assert.match(String(line.detail), /every exit of pool dead is cooling down/, JSON.stringify(line));
      const rec = live.failure(String(line.requestId));
      assert.ok(rec, JSON.stringify(line));
      assert.equal(rec.error, 'destination_unavailable');
      assert.equal(rec.phase, 'pick');
      assert.equal((await counted({ face: 'forward', protocol: 'socks5', error: 'destination_unavailable' })) - before, 1);
    });
  });

  it('every address exit cooling down for one destination: 503 destination_unavailable over CONNECT and SOCKS5, other destinations unaffected', async () => {
    await withSeed(rand, async () => {
      const dead = await refusedPort();
      const hostPort = `127.0.0.1:${dead}`;
      const user = `${USER}-pool-addr`;
      const first = parse(await ask('connect', hostPort, user));
      const f = await checkStory(first, 'connection_refused', 'the tunnel that cools both address exits for the destination');
      assert.equal(f.line.pool, 'addr', JSON.stringify(f.line));
      const a = parse(await ask(rand.pick(['http', 'connect'] as const), hostPort, user));
      const { line, params } = await checkStory(a, 'destination_unavailable', 'both address exits cooling down');
      assert.equal(line.phase, 'pick', JSON.stringify(line));
      assert.equal(line.pool, 'addr', JSON.stringify(line));
      assert.match(String(params.details), new RegExp(`every exit of pool addr is cooling down for 127\\.0\\.0\\.1`), a.headers['proxy-status']);
      assert.ok(Number(a.headers['retry-after']) > 0, JSON.stringify(a.headers));
      const pb = Buffer.alloc(2);
      pb.writeUInt16BE(dead);
      const r = await socks(Buffer.concat([Buffer.from([5, 1, 2, 1, user.length]), Buffer.from(user), Buffer.from([PASSWORD.length]), Buffer.from(PASSWORD), Buffer.from([5, 1, 0, 1, 127, 0, 0, 1]), pb]));
      assert.equal(r[5], 4, r.toString('hex'));
      const sl = await accessLine(p.lines, (l) => l.protocol === 'socks5' && l.pool === 'addr' && l.error === 'destination_unavailable', 'the SOCKS5 line');
      assert.equal(sl.phase, 'pick', JSON.stringify(sl));
      // Cooled for that destination host only (the mark is per host, every port of it): another host still goes through the pool.
      const ok = parse(await rawExchange(p.port, `GET http://origin.gatewise.test:${origin.port}/ HTTP/1.1\r\nHost: origin.gatewise.test:${origin.port}\r\nProxy-Authorization: ${basic(user, PASSWORD)}\r\nConnection: close\r\n\r\n`, 15_000));
      assert.equal(ok.status, 200, JSON.stringify(ok.headers));
    });
  });

  it(`an upstream TLS alert (${ALERT}) to the proxy's own TLS: tls_alert_received with alert-id and alert-message, phase tls`, async () => {
    await withSeed(rand, async () => {
      const a = parse(await ask('http', `127.0.0.1:${portOf(alerter)}`, USER, 'https'));
      const { line, params } = await checkStory(a, 'tls_alert_received', `TLS alert ${ALERT}`);
      assert.equal(params['alert-id'], TLS_ALERT_IDS[ALERT], a.headers['proxy-status']);
      assert.equal(params['alert-message'], ALERT, a.headers['proxy-status']);
      assert.equal(line.phase, 'tls', JSON.stringify(line));
    });
  });

  it('a reset in the middle of the proxy\'s TLS handshake with the destination: connection_terminated in phase tls', async () => {
    const a = parse(await ask('http', `127.0.0.1:${portOf(resetter)}`, USER, 'https'));
    const { line } = await checkStory(a, 'connection_terminated', 'reset mid TLS handshake');
    assert.equal(line.phase, 'tls', `the handshake the reset cut is named: ${JSON.stringify(line)}`);
  });

  for (const pool of ['socksreset', 'httpreset'] as const) {
    for (const kind of ['http', 'connect'] as const) {
      // A plain-HTTP request through an HTTP exit has no handshake: the request itself goes to the exit (absolute-form), so a reset there is in phase send.
      const handshake = !(pool === 'httpreset' && kind === 'http');
      it(`a reset ${handshake ? `in the middle of an exit's ${pool === 'socksreset' ? 'SOCKS5' : 'HTTP CONNECT'} handshake` : 'by an HTTP exit given the request'} (${kind}): connection_terminated in phase ${handshake ? 'connect' : 'send'}, the exit named`, async () => {
        const a = parse(await ask(kind, `origin.gatewise.test:${origin.port}`, `${USER}-pool-${pool}`));
        const { line } = await checkStory(a, 'connection_terminated', `${pool} ${kind}`);
        // The taxonomy has no phase for a proxy handshake: it is part of connecting through the exit.
        assert.equal(line.phase, handshake ? 'connect' : 'send', JSON.stringify(line));
        assert.equal(line.pool, pool, JSON.stringify(line));
        assert.match(String(line.exit), new RegExp(`127\\.0\\.0\\.1:${portOf(resetter)}`), JSON.stringify(line));
      });
    }
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { request as httpRequest, type RequestOptions } from 'node:http';
import { SocksClient } from 'socks';
import type { Runtime } from '../../src/cli/runtime.js';
import type { Lab } from '../../src/lab/index.js';
import { canonicalAddress } from '../../src/net/ip-canonical.js';
import { isLoopbackAddress } from '../../src/net/ip-address.js';
import { openConnectTunnel, startLoopbackForwardRuntime, MALLORY_AUTH, MALLORY_PASSWORD } from '../helpers/loopback-forward-runtime.js';
import { closedPort } from '../helpers/admin-stack.js';

// Adversarial probe (brief ownlisten): the reverse gateway trusts loopback clients by default
// (proxyStatus.trustedClients 127.0.0.0/8 and ::1: next-hop and details in Proxy-Status and
// error bodies) and an operator may list loopback in trustedProxies (a local TLS terminator:
// its X-Forwarded-For is kept). A forward user whose rules allow loopback reached this
// process's gateway listener through the proxy, so the gateway took the proxy's outgoing
// connection for a trusted local client. Reaching the gateway stays allowed (a user may use a
// local gateway), but such a connection carries a forward user and is trusted with nothing.

const PASSWORD = MALLORY_PASSWORD;
const SPOOF = '203.0.113.9';

interface Stack {
  rt: Runtime;
  lab: Lab;
  gatewayPort: number;
  proxyPort: number;
  deadPort: number;
  close(): Promise<void>;
}

async function start(): Promise<Stack> {
  const deadPort = await closedPort();
  const { rt, lab, gatewayPort, proxyPort } = await startLoopbackForwardRuntime((lab) => ({
    listeners: [{ address: '127.0.0.1', port: 0 }],
    trustedProxies: ['127.0.0.0/8'],
    clusters: { app: { endpoints: [lab.url] }, dead: { endpoints: [`http://127.0.0.1:${deadPort}`] } },
    routes: [{ name: 'dead', match: { pathPrefix: '/dead' }, cluster: 'dead' }, { name: 'app', cluster: 'app' }],
  }));
  return {
    rt,
    lab,
    gatewayPort,
    proxyPort,
    deadPort,
    async close() {
      await rt.close();
      await lab.close();
    },
  };
}

const auth = MALLORY_AUTH;

interface Answer {
  status: number;
  proxyStatus: string;
  body: string;
}

function send(opts: RequestOptions): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(opts, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, proxyStatus: String(res.headers['proxy-status'] ?? ''), body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The two requests each way asks: `/dead` (a 502 whose Proxy-Status shows topology only to a trusted client) and `/echo` with a spoofed X-Forwarded-For. */
type Way = (path: string) => Promise<Answer>;

function headers(s: Stack): Record<string, string> {
  return { host: `127.0.0.1:${s.gatewayPort}`, 'x-forwarded-for': SPOOF, connection: 'close' };
}

/** Straight to the gateway from loopback: the trusted client the checks compare with. */
function direct(s: Stack): Way {
  return (path) => send({ host: '127.0.0.1', port: s.gatewayPort, path, agent: false, headers: headers(s) });
}

/** An absolute-form request through the HTTP proxy, the gateway written as `host`. */
function absoluteForm(s: Stack, host: string): Way {
  return (path) => send({ host: '127.0.0.1', port: s.proxyPort, path: `http://${host}:${s.gatewayPort}${path}`, agent: false, headers: { ...headers(s), 'proxy-authorization': auth } });
}

/** One request over a socket already open to the gateway (a tunnel). */
function over(s: Stack, sock: Socket, path: string): Promise<Answer> {
  return send({ createConnection: () => sock, path, headers: headers(s) });
}

/** A CONNECT tunnel through the HTTP proxy to `authority`, then the request inside it. */
function connectTunnel(s: Stack, host: string): Way {
  const authority = `${host.includes(':') ? `[${host}]` : host}:${s.gatewayPort}`;
  return (path) => openConnectTunnel(s.proxyPort, authority, auth).then((sock) => over(s, sock, path));
}

/** A SOCKS5 CONNECT to `host`, then the request inside it. */
function socks5(s: Stack, host: string): Way {
  return async (path) => {
    const c = await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: s.proxyPort, type: 5, userId: 'mallory', password: PASSWORD }, destination: { host, port: s.gatewayPort }, command: 'connect', timeout: 5000 });
    return over(s, c.socket, path);
  };
}

/** What the gateway trusted the client with, seen from its answers. */
async function trustSeen(way: Way, s: Stack): Promise<{ topology: boolean; forwardedKept: boolean }> {
  const dead = await way('/dead');
  assert.equal(dead.status, 502, `/dead: ${dead.status} ${dead.body.slice(0, 200)}`);
  const topology = /details=|next-hop=/.test(dead.proxyStatus) || dead.body.includes(`:${s.deadPort}`);
  const echo = await way('/echo');
  assert.equal(echo.status, 200, `/echo: ${echo.status} ${echo.body.slice(0, 200)}`);
  const xff = String((JSON.parse(echo.body) as { headers: Record<string, string> }).headers['x-forwarded-for'] ?? '');
  return { topology, forwardedKept: xff.includes(SPOOF) };
}

test('a forward user whose rules allow loopback reaches this process\'s gateway listener through the proxy (absolute-form, CONNECT, SOCKS5; IPv4 and IPv4-mapped spellings) but is not trusted as a loopback client: no topology in Proxy-Status or the error body, and its X-Forwarded-For is replaced', { timeout: 120_000 }, async () => {
  const s = await start();
  try {
    // The control: a client on loopback is trusted with both (else this test could not see a difference).
    assert.deepEqual(await trustSeen(direct(s), s), { topology: true, forwardedKept: true }, 'a direct loopback client');
    const spellings = ['127.0.0.1', '::ffff:127.0.0.1', '::ffff:7f00:1'];
    for (const host of spellings) {
      const canon = canonicalAddress(host);
      assert.ok(canon && isLoopbackAddress(canon.address), `${host} decodes to loopback`);
    }
    const ways: Array<[string, Way]> = [];
    for (const host of spellings) {
      ways.push([`absolute-form http://${host.includes(':') ? `[${host}]` : host}`, absoluteForm(s, host.includes(':') ? `[${host}]` : host)]);
      ways.push([`CONNECT ${host}`, connectTunnel(s, host)]);
      ways.push([`SOCKS5 ${host}`, socks5(s, host)]);
    }
    const failed: string[] = [];
    for (const [name, way] of ways) {
      const seen = await trustSeen(way, s);
      if (seen.topology || seen.forwardedKept) failed.push(`${name}: ${JSON.stringify(seen)}`);
    }
    assert.deepEqual(failed, [], `trusted as a loopback client through the proxy:\n${failed.join('\n')}`);
    // And afterwards the direct loopback client is trusted still (no connection's mark outlives it).
    assert.deepEqual(await trustSeen(direct(s), s), { topology: true, forwardedKept: true }, 'a direct loopback client, after');
  } finally {
    await s.close();
  }
});

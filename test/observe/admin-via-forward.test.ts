import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { request as httpRequest } from 'node:http';
import { SocksClient } from 'socks';
import { request } from 'undici';
import type { Runtime } from '../../src/cli/runtime.js';
import type { Lab } from '../../src/lab/index.js';
import { canonicalAddress } from '../../src/net/ip-canonical.js';
import { isLoopbackAddress } from '../../src/net/ip-address.js';
import { startLoopbackForwardRuntime, MALLORY_AUTH, MALLORY_PASSWORD } from '../helpers/loopback-forward-runtime.js';

// Adversarial probe (session adminsec): a forward user whose rules allow loopback (here the
// tests' usual 127.0.0.0/8 allow rule; `allowPrivate: true` alike) reached this process's own
// admin listener through the proxy. Without admin.token a loopback caller is the operator, so
// the user read /config and drained an endpoint (and could create users or reload). The proxy
// now never dials the admin listener's address and port, whatever the rules.

const PASSWORD = MALLORY_PASSWORD;

interface Stack {
  rt: Runtime;
  lab: Lab;
  adminPort: number;
  gatewayPort: number;
  proxyPort: number;
  close(): Promise<void>;
}

async function start(): Promise<Stack> {
  const { rt, lab, gatewayPort, proxyPort } = await startLoopbackForwardRuntime((lab) => ({
    listeners: [{ port: 0 }],
    admin: { port: 0 },
    clusters: { app: { endpoints: [lab.url] } },
    routes: [{ name: 'app', cluster: 'app' }],
  }));
  return {
    rt,
    lab,
    adminPort: Number(new URL(rt.adminUrl!).port),
    gatewayPort,
    proxyPort,
    async close() {
      await rt.close();
      await lab.close();
    },
  };
}

const auth = MALLORY_AUTH;

/** One absolute-form request through the HTTP proxy. */
function viaProxy(s: Stack, method: string, target: string, headers: Record<string, string> = {}): Promise<{ status: number; proxyStatus: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: s.proxyPort, method, path: target, agent: false, headers: { host: new URL(target).host, 'proxy-authorization': auth, ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, proxyStatus: String(res.headers['proxy-status'] ?? ''), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** CONNECT through the HTTP proxy: the status line's code. */
function connectVia(s: Stack, authority: string): Promise<{ status: number; head: string }> {
  return new Promise((resolve, reject) => {
    const sock = connect(s.proxyPort, '127.0.0.1');
    let got = '';
    sock.setEncoding('latin1');
    sock.on('data', (c: string) => {
      got += c;
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.destroy();
      resolve({ status: Number(got.slice(9, 12)), head: got.slice(0, end) });
    });
    sock.on('error', reject);
    sock.on('close', () => resolve({ status: Number(got.slice(9, 12)) || 0, head: got }));
    sock.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${auth}\r\n\r\n`);
  });
}

async function draining(s: Stack): Promise<boolean> {
  const r = await request(`http://127.0.0.1:${s.adminPort}/clusters`);
  const body = (await r.body.json()) as { app: Array<{ draining: boolean }> };
  return body.app[0]!.draining;
}

test('a forward user whose rules allow loopback cannot reach the admin listener (no admin.token) through the proxy: absolute-form GET /config and POST drain, CONNECT, SOCKS5 (IPv4 and IPv4-mapped spellings) are refused destination_ip_prohibited; other loopback ports stay reachable', { timeout: 90_000 }, async () => {
  const s = await start();
  try {
    const admin = `127.0.0.1:${s.adminPort}`;
    // Reading the config, and draining the lab's endpoint, as an absolute-form request.
    const cfg = await viaProxy(s, 'GET', `http://${admin}/config`);
    assert.notEqual(cfg.status, 200, `the forward user read /config: ${cfg.body.slice(0, 200)}`);
    assert.match(cfg.proxyStatus, /error=destination_ip_prohibited/);
    const drain = await viaProxy(s, 'POST', `http://${admin}/clusters/app/drain?endpoint=${encodeURIComponent(s.lab.url)}`, { 'gatewise-admin': '1' });
    assert.notEqual(drain.status, 200, drain.body.slice(0, 200));
    assert.match(drain.proxyStatus, /error=destination_ip_prohibited/);
    assert.equal(await draining(s), false, 'the forward user drained an endpoint');
    // A CONNECT tunnel to the admin port.
    const tunnel = await connectVia(s, admin);
    assert.notEqual(tunnel.status, 200, tunnel.head);
    assert.match(tunnel.head, /error=destination_ip_prohibited/i);
    // SOCKS5, the plain and the IPv4-mapped spelling (both checked to be loopback before they are sent).
    for (const host of ['127.0.0.1', '::ffff:127.0.0.1', '::ffff:7f00:1']) {
      const canon = canonicalAddress(host);
      assert.ok(canon && isLoopbackAddress(canon.address), `${host} decodes to loopback`);
      const r = await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: s.proxyPort, type: 5, userId: 'mallory', password: PASSWORD }, destination: { host, port: s.adminPort }, command: 'connect', timeout: 5000 }).then(
        (c) => (c.socket.destroy(), 'connected'),
        (err: Error) => err.message,
      );
      assert.notEqual(r, 'connected', `SOCKS5 to ${host}:${s.adminPort} was relayed`);
    }
    // The rule is the admin listener's address and port only: the gateway's own port on loopback stays reachable through the proxy.
    const gw = await viaProxy(s, 'GET', `http://127.0.0.1:${s.gatewayPort}/`);
    assert.doesNotMatch(gw.proxyStatus, /destination_ip_prohibited/);
    // And the operator on loopback still reaches the admin listener directly.
    assert.equal((await request(`http://${admin}/config`)).statusCode, 200);
  } finally {
    await s.close();
  }
});

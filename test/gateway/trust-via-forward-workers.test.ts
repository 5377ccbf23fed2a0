import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLab } from '../../src/lab/index.js';
import { hashPassword } from '../../src/tenants/password-hash.js';
import { GatewiseProcess, processOf } from '../helpers/gatewise-process.js';
import { freePorts } from '../helpers/redis.js';
import { MALLORY_PASSWORD, openConnectTunnel } from '../helpers/loopback-forward-runtime.js';

// test/gateway/trust-via-forward.test.ts with `--workers 2`: the forward proxy marks its
// connections to this process group's own gateway listeners so the gateway trusts them with
// nothing a loopback client gets. The marks were per process: a tunnel whose connection the
// kernel handed to the other worker's gateway was taken for a trusted loopback client (its
// X-Forwarded-For kept). Now the dialling worker has every worker of the group learn the mark
// before a byte goes (the dial fails closed when the group does not confirm it in time).

const SPOOF = '203.0.113.9';

/** A CONNECT tunnel through the proxy to the gateway, one GET /echo inside it: the X-Forwarded-For the origin got and the gateway's request id. */
function throughTunnel(proxyPort: number, gatewayPort: number): Promise<{ xff: string; requestId: string }> {
  const authority = `127.0.0.1:${gatewayPort}`;
  return openConnectTunnel(proxyPort, authority).then(
    (sock) =>
      new Promise((resolve, reject) => {
        const req = httpRequest({ createConnection: () => sock, path: '/echo', headers: { host: authority, 'x-forwarded-for': SPOOF, connection: 'close' } }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => {
            try {
              assert.equal(res.statusCode, 200, body.slice(0, 200));
              const xff = String((JSON.parse(body) as { headers: Record<string, string> }).headers['x-forwarded-for'] ?? '');
              resolve({ xff, requestId: String(res.headers['x-request-id'] ?? '') });
            } catch (err) {
              reject(err);
            }
          });
        });
        req.on('error', reject);
        req.end();
      }),
  );
}

test('--workers 2: a forward user\'s tunnel to the group\'s own gateway listener is trusted with nothing, whichever worker accepts it', { timeout: 120_000 }, async () => {
  const lab = await startLab();
  const [gwPort, fwdPort] = (await freePorts(2)) as [number, number];
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-trust-workers-'));
  let p: GatewiseProcess | undefined;
  try {
    p = await GatewiseProcess.start(
      join(dir, 'gatewise.json'),
      {
        listeners: [{ address: '127.0.0.1', port: gwPort }],
        trustedProxies: ['127.0.0.0/8'],
        clusters: { app: { endpoints: [lab.url] } },
        routes: [{ name: 'app', cluster: 'app' }],
        forward: {
          listeners: [{ address: '127.0.0.1', port: fwdPort }],
          auth: { required: true, users: [{ name: 'mallory', password: await hashPassword(MALLORY_PASSWORD, { N: 1024, r: 8, p: 1 }) }] },
          rules: { defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8', '::1/128'] }], connectPorts: ['1-65535'] },
        },
      },
      { workers: 2 },
    );
    // Tunnels on fresh connections, in rounds, until both gateway workers and both forward
    // workers have served some (bounded: 12 rounds of 8); every one must have its X-Forwarded-For replaced.
    const gatewayWorkers = new Set<string>();
    let tunnels = 0;
    for (let round = 0; round < 12 && (round < 3 || gatewayWorkers.size < 2); round++) {
      const rs = await Promise.all(Array.from({ length: 8 }, () => throughTunnel(fwdPort, gwPort)));
      for (const r of rs) {
        tunnels++;
        gatewayWorkers.add(processOf(r.requestId));
        assert.ok(!r.xff.includes(SPOOF), `tunnel ${tunnels} (gateway worker ${processOf(r.requestId)}): X-Forwarded-For kept as a trusted client's: ${r.xff}`);
      }
    }
    assert.equal(gatewayWorkers.size, 2, 'both gateway workers served tunnels');
    await p.waitFor(() => new Set(p!.access().filter((l) => l.face === 'forward').map((l) => processOf(l.requestId))).size === 2, 10_000, 'forward records from both workers');
    // The control: straight from loopback, the same gateway keeps a trusted client's X-Forwarded-For.
    const direct = await new Promise<string>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: gwPort, path: '/echo', agent: false, headers: { 'x-forwarded-for': SPOOF } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(String((JSON.parse(body) as { headers: Record<string, string> }).headers['x-forwarded-for'] ?? '')));
      });
      req.on('error', reject);
      req.end();
    });
    assert.ok(direct.includes(SPOOF), `a direct loopback client is trusted: ${direct}`);
  } finally {
    await p?.stop();
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a group that does not confirm the mark: the tunnel to the own gateway listener is refused (fail closed), other destinations unaffected', { timeout: 60_000 }, async () => {
  const { startLoopbackForwardRuntime } = await import('../helpers/loopback-forward-runtime.js');
  const { shareForwardPeers } = await import('../../src/net/own-listeners.js');
  const s = await startLoopbackForwardRuntime((lab) => ({
    listeners: [{ address: '127.0.0.1', port: 0 }],
    trustedProxies: ['127.0.0.0/8'],
    clusters: { app: { endpoints: [lab.url] } },
    routes: [{ name: 'app', cluster: 'app' }],
  }));
  const asked: Array<[string, boolean]> = [];
  // The seam a worker's runtime sets: here a group that never confirms (a worker hung or gone).
  shareForwardPeers({ announce: async (end, on) => (asked.push([end, on]), false) });
  try {
    await assert.rejects(throughTunnel(s.proxyPort, s.gatewayPort), /CONNECT 127\.0\.0\.1:\d+: HTTP\/1\.1 500 [^]*proxy-status: gatewise;error=proxy_internal_error/);
    assert.ok(asked.some(([, on]) => on), 'the mark was announced to the group');
    // The forward log writes its records when its writer flushes (at most a second later): wait for the line (bounded).
    const refusal = (): Record<string, unknown> | undefined => s.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.face === 'forward' && l.status === 500);
    for (const end = Date.now() + 5000; refusal() === undefined && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
    const line = refusal();
    assert.ok(line, 'the refusal is in the forward access log');
    assert.match(String(line.detail ?? ''), /worker group did not confirm/);
    // The lab (another port) is reached as before: only the own gateway waits for the group.
    const lab = new URL(s.lab.url);
    const sock = await openConnectTunnel(s.proxyPort, lab.host);
    sock.destroy();
  } finally {
    shareForwardPeers(undefined);
    await s.rt.close();
    await s.lab.close();
  }
});

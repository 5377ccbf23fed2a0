import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'node:test';
import { request } from 'undici';
import { stringify } from 'yaml';
import { loadConfigFile } from '../../src/config/load.js';
import { startRuntime, type ReloadResult, type Runtime } from '../../src/cli/runtime.js';
import { createLogger } from '../../src/observe/access-log.js';

/**
 * A face (the reverse gateway or the forward proxy) that a reload starts is seen by the admin
 * API, the dashboard's /status and the metrics as if it had run from the start; one a reload
 * stops is gone from them (404 "not running", not an error).
 */
const TOKEN = 'reload-faces-token-0123456789';

async function origin(): Promise<{ server: Server; port: number }> {
  const server = createServer((_req, res) => res.end('origin'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

function write(file: string, content: unknown): void {
  writeFileSync(`${file}.tmp`, stringify(content));
  renameSync(`${file}.tmp`, file);
}

async function get(rt: Runtime, path: string): Promise<{ status: number; body: string }> {
  const r = await request(`${rt.adminUrl}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: r.statusCode, body: await r.body.text() };
}

async function reload(rt: Runtime): Promise<ReloadResult> {
  const r = await request(`${rt.adminUrl}/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
  return (await r.body.json()) as ReloadResult;
}

const base = { admin: { port: 0, token: TOKEN }, log: { access: false, level: 'error' } };
const gatewayPart = (originPort: number) => ({
  listeners: [{ address: '127.0.0.1', port: 0 }],
  clusters: { web: { endpoints: [`http://127.0.0.1:${originPort}`] } },
  routes: [{ name: 'main', cluster: 'web' }],
});
const forwardPart = {
  forward: {
    listeners: [{ address: '127.0.0.1', port: 0 }],
    accessLog: false,
    auth: { required: false },
    egress: { pools: { p1: { addresses: ['127.0.0.1'], strategy: 'sticky' } } },
    rules: { allowPrivate: true },
  },
};

test('a forward proxy started by a reload is in the admin API, /status and /metrics; stopped by one, it is gone (404)', { timeout: 60_000 }, async () => {
  const o = await origin();
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-faces-'));
  const file = join(dir, 'gatewise.yaml');
  write(file, { ...base, ...gatewayPart(o.port) });
  const rt = await startRuntime(await loadConfigFile(file), { configFile: file, probeUpstreams: false, logger: createLogger({ level: 'error' }) });
  try {
    assert.equal((await get(rt, '/exits')).status, 404, 'no forward proxy yet');
    assert.equal((await get(rt, '/accounts')).status, 404);
    write(file, { ...base, ...gatewayPart(o.port), ...forwardPart });
    const r = await reload(rt);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.ok && r.forward, 'started');
    const exits = await get(rt, '/exits');
    assert.equal(exits.status, 200, `GET /exits after the reload started the forward proxy: ${exits.status} ${exits.body}`);
    assert.match(exits.body, /p1/);
    assert.equal((await get(rt, '/sessions')).status, 200);
    assert.equal((await get(rt, '/users')).status, 200);
    assert.equal((await get(rt, '/accounts')).status, 200);
    const status = JSON.parse((await get(rt, '/status')).body) as { faces: { forward: boolean; reverse: boolean }; forwardListeners: unknown[]; state?: unknown };
    assert.deepEqual(status.faces, { reverse: true, forward: true });
    assert.equal(status.forwardListeners.length, 1);
    assert.match((await get(rt, '/metrics')).body, /gatewise_forward_exit_active\{pool="p1"/, 'the pool in the metrics');
    // Stopped by a reload: gone, and a clean 404 rather than an error.
    write(file, { ...base, ...gatewayPart(o.port) });
    const r2 = await reload(rt);
    assert.equal(r2.ok && r2.forward, 'stopped', JSON.stringify(r2));
    const gone = await get(rt, '/exits');
    assert.equal(gone.status, 404, `GET /exits after the reload stopped the forward proxy: ${gone.status} ${gone.body}`);
    assert.equal((await get(rt, '/users/alice')).status, 404);
    const after = JSON.parse((await get(rt, '/status')).body) as { faces: { forward: boolean } };
    assert.equal(after.faces.forward, false);
    assert.doesNotMatch((await get(rt, '/metrics')).body, /gatewise_forward_exit_active\{pool="p1"/, 'the pool gone from the metrics');
  } finally {
    await rt.close();
    o.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a reverse gateway started by a reload is in the admin API (/clusters, drain, /status)', { timeout: 60_000 }, async () => {
  const o = await origin();
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-faces-'));
  const file = join(dir, 'gatewise.yaml');
  write(file, { ...base, ...forwardPart });
  const rt = await startRuntime(await loadConfigFile(file), { configFile: file, probeUpstreams: false, logger: createLogger({ level: 'error' }) });
  try {
    assert.equal((await get(rt, '/clusters')).status, 404, 'no reverse gateway yet');
    write(file, { ...base, ...gatewayPart(o.port), ...forwardPart });
    const r = await reload(rt);
    assert.equal(r.ok && r.gateway, 'started', JSON.stringify(r));
    const clusters = await get(rt, '/clusters');
    assert.equal(clusters.status, 200, `GET /clusters after the reload started the gateway: ${clusters.status} ${clusters.body}`);
    assert.match(clusters.body, /"web"/);
    const drain = await request(`${rt.adminUrl}/clusters/web/drain?endpoint=${encodeURIComponent(`http://127.0.0.1:${o.port}`)}`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    const drainBody = await drain.body.text();
    assert.equal(drain.statusCode, 200, drainBody);
    const status = JSON.parse((await get(rt, '/status')).body) as { faces: { forward: boolean; reverse: boolean } };
    assert.deepEqual(status.faces, { reverse: true, forward: true });
  } finally {
    await rt.close();
    o.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a reload that stops the forward proxy answers at once: the tunnels it had go on draining behind it, not holding the reload (nor the ones after it) for the drain timeout', { timeout: 60_000 }, async () => {
  // A destination that echoes what the tunnel carries.
  const echo = createNetServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  const echoPort = (echo.address() as AddressInfo).port;
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-faces-'));
  const file = join(dir, 'gatewise.yaml');
  const withForward = { ...base, ...gatewayPart(echoPort), forward: { ...forwardPart.forward, rules: { allowPrivate: true, connectPorts: ['1-65535'] }, shutdown: { drainTimeout: '20s' } } };
  write(file, withForward);
  const rt = await startRuntime(await loadConfigFile(file), { configFile: file, probeUpstreams: false, logger: createLogger({ level: 'error' }) });
  const tunnel = connect(rt.forward!.addresses()[0]!.port, '127.0.0.1');
  tunnel.on('error', () => {});
  try {
    await once(tunnel, 'connect');
    tunnel.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: 127.0.0.1:${echoPort}\r\n\r\n`);
    const [head] = (await once(tunnel, 'data')) as [Buffer];
    assert.match(head.toString('latin1'), /^HTTP\/1\.1 200 /);
    write(file, { ...base, ...gatewayPart(echoPort) });
    const t0 = performance.now();
    const r = await reload(rt);
    const ms = performance.now() - t0;
    assert.equal(r.ok && r.forward, 'stopped', JSON.stringify(r));
    // The drain timeout is 20 s: a reload that waited for it would take that long.
    assert.ok(ms < 5000, `the reload answered after ${Math.round(ms)} ms`);
    // The tunnel still carries bytes: it drains on the config it started with.
    tunnel.write('ping');
    const [back] = (await once(tunnel, 'data')) as [Buffer];
    assert.equal(back.toString('latin1'), 'ping');
    // A second reload is not queued behind the drain either.
    const t1 = performance.now();
    const r2 = await reload(rt);
    assert.equal(r2.ok, true, JSON.stringify(r2));
    assert.ok(performance.now() - t1 < 5000, 'the next reload answered at once');
  } finally {
    tunnel.destroy();
    await rt.close();
    echo.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

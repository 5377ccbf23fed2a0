import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import test from 'node:test';
import { Pool, request } from 'undici';
import { stringify } from 'yaml';
import { loadConfigFile } from '../../src/config/load.js';
import { startRuntime, type ReloadResult } from '../../src/cli/runtime.js';
import { createLogger } from '../../src/observe/access-log.js';
import { hashPassword } from '../../src/tenants/password-hash.js';

const BIN = fileURLToPath(new URL('../../../bin/gatewise.js', import.meta.url));
const TOKEN = 'reload-test-token-0123456789';
const PASSWORD = 'reload-pass';

/** An origin that answers its name (GET, after `?d=MS`) or its name and the body length (POST). */
async function origin(name: string): Promise<{ server: Server; port: number }> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => {
      const d = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('d') ?? 0);
      const answer = (): void => {
        const body = req.method === 'POST' ? `${name}:${n}` : name;
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      };
      if (d > 0) setTimeout(answer, d);
      else answer();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

interface Ports {
  a: number;
  b: number;
  gw?: number;
  fwd?: number;
}

/** Two valid configs that differ in routes, clusters, plans, users and listeners, and one invalid one. */
function configs(p: Ports, hash: string): Record<'one' | 'two' | 'bad', unknown> {
  const gwPort = p.gw ?? 0;
  const fwdPort = p.fwd ?? 0;
  const base = {
    admin: { port: 0, token: TOKEN },
    log: { access: false, level: 'info' },
  };
  const fwd = (plans: Record<string, unknown>, users: unknown[], extraListener: boolean) => ({
    listeners: [{ address: '127.0.0.1', port: fwdPort }, ...(extraListener ? [{ address: '127.0.0.1', port: 0 }] : [])],
    accessLog: false,
    auth: { users },
    plans,
    // Pool p1 is the same in both configs (kept, with its sessions); p2 comes and goes.
    egress: { pools: { p1: { addresses: ['127.0.0.1'], strategy: 'sticky' }, ...(extraListener ? { p2: { addresses: ['127.0.0.1'] } } : {}) }, defaultPool: 'p1' },
    rules: { allowPrivate: true, connectPorts: ['1-65535'] },
    // A new HTTP front for new connections with each change (keep-alive ones stay on theirs).
    limits: { maxHeaderSize: extraListener ? 32768 : 16384 },
  });
  const one = {
    ...base,
    listeners: [{ address: '127.0.0.1', port: gwPort }],
    clusters: { a: { endpoints: [`http://127.0.0.1:${p.a}`] }, shared: { endpoints: [`http://127.0.0.1:${p.b}`] } },
    routes: [{ name: 'main', cluster: 'a' }],
    forward: fwd({ basic: { requestsPerSecond: 100_000 } }, [{ name: 'alice', password: hash, plan: 'basic' }], false),
  };
  const two = {
    ...base,
    // A second listener appears and goes away with each reload.
    listeners: [{ address: '127.0.0.1', port: gwPort }, { address: '127.0.0.1', port: 0 }],
    // Cluster a is removed (its in-flight requests finish), b added; shared is kept with its state.
    clusters: { b: { endpoints: [`http://127.0.0.1:${p.b}`], timeouts: { response: '20s' } }, shared: { endpoints: [`http://127.0.0.1:${p.b}`] } },
    routes: [
      { name: 'other', match: { pathPrefix: '/other' }, cluster: 'shared' },
      { name: 'main', cluster: 'b' },
    ],
    forward: fwd(
      { basic: { requestsPerSecond: 50_000, maxConnections: 10_000 }, extra: { requestsPerSecond: 10 } },
      [
        { name: 'alice', password: hash, plan: 'basic' },
        { name: 'bob', password: hash, plan: 'extra' },
      ],
      true,
    ),
  };
  const bad = { ...two, routes: [{ name: 'main', cluster: 'nope' }] };
  return { one, two, bad };
}

function writeAtomically(file: string, content: unknown): void {
  writeFileSync(`${file}.tmp`, stringify(content));
  renameSync(`${file}.tmp`, file);
}

async function reloadVia(admin: string): Promise<{ status: number; body: ReloadResult }> {
  const r = await request(`${admin}/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: r.statusCode, body: (await r.body.json()) as ReloadResult };
}

/** CONNECT through the forward proxy to the origin, one HTTP GET over the tunnel: the answer's body. */
function tunnelGet(proxyPort: number, targetPort: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(proxyPort, '127.0.0.1');
    const auth = Buffer.from(`alice:${PASSWORD}`).toString('base64');
    let buf = '';
    let opened = false;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`tunnel timed out: ${JSON.stringify(buf)}`));
    }, 5000);
    s.setEncoding('latin1');
    s.on('connect', () => s.write(`CONNECT 127.0.0.1:${targetPort} HTTP/1.1\r\nHost: 127.0.0.1:${targetPort}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`));
    s.on('data', (d: string) => {
      buf += d;
      if (!opened) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        if (!buf.startsWith('HTTP/1.1 200')) {
          clearTimeout(timer);
          s.destroy();
          reject(new Error(`CONNECT refused: ${buf.slice(0, end)}`));
          return;
        }
        opened = true;
        buf = buf.slice(end + 4);
        s.write(`GET / HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n`);
      }
    });
    s.on('end', () => {
      clearTimeout(timer);
      s.destroy();
      const m = /^HTTP\/1\.1 200[^]*?\r\n\r\n([^]*)$/.exec(buf);
      if (m) resolve(m[1]!);
      else reject(new Error(`bad answer through the tunnel: ${JSON.stringify(buf.slice(0, 200))}`));
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** A plain HTTP request through the forward proxy (absolute-form), on its own connection. */
function proxyGet(proxyPort: number, targetPort: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(proxyPort, '127.0.0.1');
    const auth = Buffer.from(`alice:${PASSWORD}`).toString('base64');
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('proxy GET timed out'));
    }, 5000);
    s.setEncoding('latin1');
    s.on('connect', () => s.write(`GET http://127.0.0.1:${targetPort}/ HTTP/1.1\r\nHost: 127.0.0.1:${targetPort}\r\nProxy-Authorization: Basic ${auth}\r\nConnection: close\r\n\r\n`));
    s.on('data', (d: string) => (buf += d));
    s.on('end', () => {
      clearTimeout(timer);
      s.destroy();
      const m = /^HTTP\/1\.1 200[^]*?\r\n\r\n([^]*)$/.exec(buf);
      if (m) resolve(m[1]!);
      else reject(new Error(`proxy GET: ${JSON.stringify(buf.slice(0, 300))}`));
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

test('reload every 200 ms under GET + POST + CONNECT + proxy GET load: 0 failed requests, invalid configs refused with their problems', async () => {
  const a = await origin('A');
  const b = await origin('B');
  const hash = await hashPassword(PASSWORD);
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-reload-'));
  const file = join(dir, 'gatewise.yaml');
  const lines: string[] = [];
  const logger = createLogger({ level: 'info', destination: new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }) });
  writeAtomically(file, configs({ a: a.port, b: b.port }, hash).one);
  const rt = await startRuntime(await loadConfigFile(file), { configFile: file, probeUpstreams: false, logger });
  const gwPort = rt.gateway!.addresses()[0]!.port;
  const fwdPort = rt.forward!.addresses()[0]!.port;
  // From now on the files name the bound ports, so both configs keep the listeners clients use.
  const cfg = configs({ a: a.port, b: b.port, gw: gwPort, fwd: fwdPort }, hash);
  const gw = new Pool(`http://127.0.0.1:${gwPort}`, { connections: 8, pipelining: 1 });
  const p1 = rt.forward!.egress.pools.get('p1');
  const failures: string[] = [];
  const seen = { A: 0, B: 0, get: 0, post: 0, connect: 0, proxy: 0 };
  // The window is the reloader's: RELOADS reloads 200 ms apart, however long each takes on this
  // machine (a fixed 4 s window gave a slow machine fewer reloads than the test asks for).
  const RELOADS = 12;
  const DEADLINE = Date.now() + 60_000;
  const MAX = 4000; // per loop: bounded in count and time
  let stop = false;
  const loop = async (fn: (i: number) => Promise<void>): Promise<void> => {
    for (let i = 0; i < MAX && !stop && Date.now() < DEADLINE; i++) {
      try {
        await fn(i);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  };
  const get = async (i: number): Promise<void> => {
    const r = await gw.request({ path: `/?d=${i % 7 === 0 ? 30 : 0}`, method: 'GET' });
    const body = await r.body.text();
    if (r.statusCode !== 200) throw new Error(`GET ${r.statusCode} ${body}`);
    if (body !== 'A' && body !== 'B') throw new Error(`GET answered ${body}`);
    seen[body]++;
    seen.get++;
  };
  const post = async (i: number): Promise<void> => {
    const payload = Buffer.alloc(8192 + i, 120);
    const r = await gw.request({ path: '/', method: 'POST', body: payload, headers: { 'content-type': 'application/octet-stream' } });
    const body = await r.body.text();
    if (r.statusCode !== 200 || !/^[AB]:\d+$/.test(body) || Number(body.slice(2)) !== payload.length) throw new Error(`POST ${r.statusCode} ${body}`);
    seen.post++;
  };
  const tunnel = async (): Promise<void> => {
    const body = await tunnelGet(fwdPort, a.port);
    if (body !== 'A') throw new Error(`tunnel answered ${body}`);
    seen.connect++;
  };
  const viaProxy = async (): Promise<void> => {
    const body = await proxyGet(fwdPort, b.port);
    if (body !== 'B') throw new Error(`proxy GET answered ${body}`);
    seen.proxy++;
  };
  const results: Array<{ status: number; body: ReloadResult; which: string }> = [];
  const reloader = (async () => {
    const cycle = ['two', 'one', 'bad'] as const;
    for (let i = 0; Date.now() < DEADLINE - 200 && i < RELOADS; i++) {
      const which = cycle[i % cycle.length]!;
      writeAtomically(file, cfg[which]);
      results.push({ ...(await reloadVia(rt.adminUrl!)), which });
      await new Promise((r) => setTimeout(r, 200));
    }
    stop = true; // the traffic ends with the reloads
  })();
  try {
    // A slow request started under config one (cluster a) finishes after a reload removed cluster a.
    const slow = gw.request({ path: '/?d=900', method: 'GET' }).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }));
    await Promise.all([loop(get), loop(get), loop(get), loop(post), loop(post), loop(tunnel), loop(tunnel), loop(viaProxy), reloader]);
    stop = true;
    const s = await slow;
    assert.deepEqual(s, { status: 200, body: 'A' }, 'a request in flight across a reload finishes on the config it started with');
    assert.deepEqual(failures.slice(0, 5), [], `${failures.length} failed requests`);
    assert.equal(results.length, RELOADS, `only ${results.length} reloads`);
    for (const r of results) {
      if (r.which === 'bad') {
        assert.equal(r.status, 422);
        assert.equal(r.body.ok, false);
        if (!r.body.ok) {
          // The refusal is the admin API's problem (admin-problem.ts): its code, with the result's problems.
          assert.equal((r.body as unknown as { code: string }).code, 'invalid-config');
          assert.ok(r.body.problems.some((p) => p.path === 'routes[0].cluster' && /nope/.test(p.message)), JSON.stringify(r.body.problems));
        }
      } else {
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.ok, true);
      }
    }
    const toTwo = results.find((r) => r.which === 'two')!.body;
    assert.ok(toTwo.ok && typeof toTwo.gateway === 'object' && toTwo.gateway);
    if (toTwo.ok && toTwo.gateway && typeof toTwo.gateway === 'object' && toTwo.forward && typeof toTwo.forward === 'object') {
      assert.deepEqual(toTwo.gateway.clusters.removed, ['a']);
      assert.deepEqual(toTwo.gateway.clusters.added, ['b']);
      assert.deepEqual(toTwo.gateway.clusters.kept, ['shared']);
      assert.equal(toTwo.gateway.listeners.added.length, 1);
      assert.deepEqual(toTwo.forward.plans, { added: ['extra'], removed: [], changed: ['basic'] });
      assert.equal(toTwo.forward.users, 2);
      assert.match(toTwo.summary, /clusters \+\[b\] -\[a\]/);
      assert.deepEqual([toTwo.forward.pools.added, toTwo.forward.pools.kept], [['p2'], ['p1']]);
    }
    assert.equal(rt.forward!.egress.pools.get('p1'), p1, 'an unchanged pool is kept across reloads (sessions, cool-downs)');
    assert.ok(seen.A > 0 && seen.B > 0, `both configs served: ${JSON.stringify(seen)}`);
    // Every kind of traffic ran across the reloads (counts depend on the machine; the bar is 0 failures).
    assert.ok(seen.get >= 20 && seen.post >= 10 && seen.connect >= 3 && seen.proxy >= 3, JSON.stringify(seen));
    // One log line per reload, saying what changed; refusals name the problem.
    assert.ok(lines.some((l) => /"event":"reloaded"/.test(l) && /config reloaded from/.test(l)));
    assert.ok(lines.some((l) => /"event":"reload-refused"/.test(l) && /routes\[0\]\.cluster/.test(l)));
    // The process runs the last good config: /config shows it.
    const last = results.filter((r) => r.which !== 'bad').at(-1)!.which;
    const c = (await (await request(`${rt.adminUrl}/config`, { headers: { authorization: `Bearer ${TOKEN}` } })).body.json()) as { clusters: Record<string, unknown> };
    assert.deepEqual(Object.keys(c.clusters).sort(), last === 'one' ? ['a', 'shared'] : ['b', 'shared']);
    process.stdout.write(`# reloads ${results.length} (ms: ${results.map((r) => (r.body.ok ? r.body.durationMs : "x")).join(" ")}); ${JSON.stringify(seen)}\n`);
  } finally {
    stop = true;
    await gw.close();
    await rt.close();
    a.server.close();
    b.server.close();
    a.server.closeAllConnections();
    b.server.closeAllConnections();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a reload keeps the health state of a cluster whose config did not change, and rebuilds a changed one', async () => {
  const b = await origin('B');
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-reload-'));
  const file = join(dir, 'gatewise.yaml');
  const one = { listeners: [{ address: '127.0.0.1', port: 0 }], clusters: { keep: { endpoints: [`http://127.0.0.1:${b.port}`] }, change: { endpoints: [`http://127.0.0.1:${b.port}`] } }, routes: [{ name: 'r', cluster: 'keep' }], log: { access: false } };
  writeAtomically(file, one);
  const rt = await startRuntime(await loadConfigFile(file), { configFile: file, probeUpstreams: false, logger: createLogger({ level: 'error' }) });
  try {
    const keep = rt.gateway!.ctx.clusters.get('keep')!;
    const change = rt.gateway!.ctx.clusters.get('change')!;
    keep.setDraining(`127.0.0.1:${b.port}`, true);
    writeAtomically(file, { ...one, clusters: { ...one.clusters, change: { endpoints: [`http://127.0.0.1:${b.port}`], maxConnections: 7 } } });
    const r = await rt.reload();
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(rt.gateway!.ctx.clusters.get('keep'), keep, 'unchanged cluster kept (same object)');
    assert.equal(rt.gateway!.ctx.clusters.get('keep')!.endpoints[0]!.draining, true, 'its endpoint state kept');
    assert.notEqual(rt.gateway!.ctx.clusters.get('change'), change, 'changed cluster rebuilt');
    if (r.ok && r.gateway && typeof r.gateway === 'object') assert.deepEqual({ kept: r.gateway.clusters.kept, changed: r.gateway.clusters.changed }, { kept: ['keep'], changed: ['change'] });
  } finally {
    await rt.close();
    b.server.close();
    b.server.closeAllConnections();
    rmSync(dir, { recursive: true, force: true });
  }
});

for (const workers of [0, 2]) {
  test(`SIGHUP to gatewise run${workers ? ` --workers ${workers} (the primary)` : ''} reloads${workers ? ' every worker' : ''}; an invalid file is refused and the old config keeps serving`, { timeout: 150_000 }, async () => {
    const a = await origin('A');
    const b = await origin('B');
    const dir = mkdtempSync(join(tmpdir(), 'gatewise-reload-'));
    const file = join(dir, 'gatewise.yaml');
    const port = await freePort();
    const cfg = (cluster: 'a' | 'b', routeCluster = cluster) => ({ listeners: [{ address: '127.0.0.1', port }], clusters: { [cluster]: { endpoints: [`http://127.0.0.1:${cluster === 'a' ? a.port : b.port}`] } }, routes: [{ name: 'r', cluster: routeCluster }], log: { access: false } });
    writeAtomically(file, cfg('a'));
    const child = spawn(process.execPath, [BIN, 'run', '--config', file, ...(workers ? ['--workers', String(workers)] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    // Generous: a process group starting on a loaded machine took over 10 s (whole-suite run).
    const until = async (cond: () => boolean, what: string): Promise<void> => {
      const end = Date.now() + 40_000;
      while (!cond()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}; output:\n${out}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    const count = (re: RegExp): number => out.split('\n').filter((l) => re.test(l)).length;
    const get = async (): Promise<string> => {
      const r = await request(`http://127.0.0.1:${port}/`);
      return r.body.text();
    };
    try {
      await until(() => count(/gateway listening/) >= Math.max(1, workers), 'listening');
      assert.equal(await get(), 'A');
      writeAtomically(file, cfg('b'));
      child.kill('SIGHUP');
      await until(() => count(/config reloaded from/) >= Math.max(1, workers), 'reloaded');
      for (let i = 0; i < 8; i++) assert.equal(await get(), 'B');
      writeAtomically(file, cfg('a', 'nope' as 'a'));
      child.kill('SIGHUP');
      await until(() => count(/config reload refused/) >= Math.max(1, workers), 'refused');
      assert.match(out, /routes\[0\]\.cluster/);
      for (let i = 0; i < 8; i++) assert.equal(await get(), 'B');
      assert.equal(child.exitCode, null, 'still running');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      a.server.close();
      b.server.close();
      a.server.closeAllConnections();
      b.server.closeAllConnections();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

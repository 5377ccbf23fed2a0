import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import test from 'node:test';
import { stringify } from 'yaml';
import { startRuntime } from '../../src/cli/runtime.js';
import { loadConfigFile } from '../../src/config/load.js';
import { createLogger } from '../../src/observe/access-log.js';
import { seededRandom, withSeed, type Rand } from '../helpers/seeded.js';
import { until } from '../helpers/until.js';

/**
 * A start or a reload that cannot bind one of its listeners leaves nothing behind: no other
 * listener bound, no health checker probing, no process waiting (findings of session 29's
 * review: the other listeners stayed bound and served, and `gatewise run` never exited; with
 * `--workers` the primary forked again for ever; a refused reload left its new clusters'
 * health checks running).
 */

const BIN = fileURLToPath(new URL('../../../bin/gatewise.js', import.meta.url));

async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function holdPort(): Promise<Server> {
  const s = createServer((c) => c.destroy()).listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  return s;
}

/** True when nothing listens on the port (it can be bound). */
async function portFree(port: number): Promise<boolean> {
  const s = createServer();
  return new Promise((resolve) => {
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** Run `gatewise ARGS` until it exits, killed after `ms`: its exit code (-1 when it had to be killed) and what it wrote on stderr. */
async function exitOf(args: string[], ms: number): Promise<{ code: number | null; err: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((resolve) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      resolve(-1);
    }, ms);
    child.once('exit', (c) => {
      clearTimeout(t);
      resolve(c);
    });
  });
  return { code, err };
}

/** Run `body` seeded (the seed printed when it fails), with a temporary folder and a port held busy; both freed after. */
async function withBusyPort(dirPrefix: string, body: (rand: Rand, dir: string, heldPort: number) => Promise<void>): Promise<void> {
  const rand = seededRandom();
  const dir = mkdtempSync(join(tmpdir(), dirPrefix));
  const held = await holdPort();
  try {
    await withSeed(rand, () => body(rand, dir, (held.address() as AddressInfo).port));
  } finally {
    held.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('gatewise run with one listener port in use exits 1, leaving no other listener bound (seeded positions, with and without --workers)', { timeout: 120_000 }, async () => {
  await withBusyPort('gw-failed-start-', async (rand, dir, heldPort) => {
    for (const workers of [undefined, 2]) {
      const n = 2 + rand.int(3);
      const at = rand.int(n);
      const ports: number[] = [];
      for (let i = 0; i < n; i++) ports.push(i === at ? heldPort : await freePort());
      const file = join(dir, `c-${workers ?? 0}.yaml`);
      writeFileSync(file, stringify({
        listeners: ports.map((port) => ({ address: '127.0.0.1', port })),
        admin: rand.next() < 0.5 ? { port: await freePort() } : undefined,
        clusters: { app: { endpoints: ['http://127.0.0.1:9'], healthCheck: { path: '/h', interval: '1s' } } },
        routes: [{ cluster: 'app' }],
      }));
      const { code, err } = await exitOf(['run', '-c', file, ...(workers ? ['--workers', String(workers)] : [])], 20_000);
      const where = `${n} listeners, port in use at ${at}, workers ${workers ?? 'none'}: ${err}`;
      assert.equal(code, 1, `did not exit 1 (-1: still running after 20 s): ${where}`);
      assert.match(err, /cannot listen/, where);
      // What and where: the address, the config entry and the file, not only Node's words.
      assert.ok(err.includes(`cannot listen on 127.0.0.1:${heldPort} (listeners[${at}] of ${file}): address already in use (EADDRINUSE)`), where);
      for (const [i, port] of ports.entries()) if (i !== at) assert.ok(await portFree(port), `listener ${i} (${port}) still bound: ${where}`);
    }
  });
});

test('a reload refused because a new listener cannot bind leaves no listener and no health checker of the new config', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gw-failed-reload-'));
  let hits = 0;
  const checked = createHttpServer((req, res) => {
    hits++;
    res.end('ok');
  });
  await new Promise<void>((r) => checked.listen(0, '127.0.0.1', r));
  const checkedPort = (checked.address() as AddressInfo).port;
  const held = await holdPort();
  const file = join(dir, 'gw.yaml');
  const first = { listeners: [{ address: '127.0.0.1', port: 0 }], log: { access: false }, clusters: { app: { endpoints: ['http://127.0.0.1:9'] } }, routes: [{ cluster: 'app' }] };
  writeFileSync(file, stringify(first));
  const rt = await startRuntime(await loadConfigFile(file), { configFile: file, logger: createLogger({ destination: new Writable({ write: (_c, _e, cb) => cb() }) }), probeUpstreams: false });
  try {
    for (let round = 0; round < 3; round++) {
      const extra = await freePort();
      writeFileSync(file, stringify({
        ...first,
        listeners: [...first.listeners, { address: '127.0.0.1', port: extra }, { address: '127.0.0.1', port: (held.address() as AddressInfo).port }],
        clusters: { ...first.clusters, hc: { endpoints: [`http://127.0.0.1:${checkedPort}`], healthCheck: { path: '/h', interval: '100ms' } } },
        routes: [{ cluster: 'app' }, { cluster: 'hc', match: { pathPrefix: '/hc' } }],
      }));
      const r = await rt.reload();
      assert.equal(r.ok, false, `round ${round}: ${JSON.stringify(r)}`);
      assert.ok(await portFree(extra), `round ${round}: the refused config's listener ${extra} is bound`);
    }
    // A health checker of a refused config would have probed ten times over by now.
    assert.equal(await until(() => hits > 0, 1500), false, `${hits} health checks from configs that were refused`);
  } finally {
    await rt.close();
    held.close();
    checked.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a start that cannot bind logs one line saying why, and nothing of a drain; no port stays bound (seeded: a listener, the admin or the forward proxy busy)', { timeout: 120_000 }, async () => {
  // Finding (probe, session 37): a gateway that never started logged "draining 0 requests in
  // flight" and "closed" as if it had run, and no line said why it did not start.
  await withBusyPort('gw-failed-start-log-', async (rand, dir, heldPort) => {
    for (let round = 0; round < 4; round++) {
      const which = rand.pick(['listener', 'admin', 'forward'] as const);
      const n = 1 + rand.int(3);
      const at = which === 'listener' ? rand.int(n) : -1;
      const ports: number[] = [];
      for (let i = 0; i < n; i++) ports.push(i === at ? heldPort : await freePort());
      const adminPort = which === 'admin' ? heldPort : await freePort();
      const forwardPort = which === 'forward' ? heldPort : await freePort();
      const file = join(dir, `c${round}.yaml`);
      writeFileSync(file, stringify({
        listeners: ports.map((port) => ({ address: '127.0.0.1', port })),
        admin: { address: '127.0.0.1', port: adminPort },
        clusters: { app: { endpoints: ['http://127.0.0.1:9'] } },
        routes: [{ cluster: 'app' }],
        forward: { listeners: [{ address: '127.0.0.1', port: forwardPort }], auth: { required: false }, rules: { defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }] } },
      }));
      const lines: Array<Record<string, unknown>> = [];
      const destination = new Writable({
        write(chunk: Buffer, _e, cb) {
          for (const l of chunk.toString().split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
          cb();
        },
      });
      const where = `round ${round}: port ${heldPort} busy for the ${which}${which === 'listener' ? ` (listeners[${at}] of ${n})` : ''}`;
      await assert.rejects(startRuntime(await loadConfigFile(file), { configFile: file, logger: createLogger({ destination }), probeUpstreams: false }), (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE', where);
      const said = JSON.stringify(lines);
      const failed = lines.filter((l) => l.event === 'start-failed');
      assert.equal(failed.length, 1, `${where}: one line saying why it did not start: ${said}`);
      assert.ok(String(failed[0]!.msg).includes(`cannot listen on 127.0.0.1:${heldPort}`) && String(failed[0]!.msg).includes('address already in use (EADDRINUSE)'), `${where}: ${said}`);
      assert.equal(failed[0]!.level, 'error', `${where}: ${said}`);
      for (const l of lines) assert.ok(l.event !== 'draining' && l.event !== 'closed' && !/draining|in flight/.test(String(l.msg)), `${where}: a line suggests a drain: ${JSON.stringify(l)}`);
      // Nor that a listener is up (docs/deployment.md): the gateway's `listening http://…` (event
      // `listening`, msg the URLs) and the forward proxy's `forward proxy listening on …` were
      // logged as each bound, before the start failed (review finding).
      for (const l of lines) assert.ok(l.event !== 'listening' && !String(l.msg).includes('listening'), `${where}: a line says listening though the start failed: ${JSON.stringify(l)}`);
      for (const port of [...ports, adminPort, forwardPort]) if (port !== heldPort) assert.ok(await portFree(port), `${where}: ${port} still bound`);
    }
  });
});

test('the one-liners (proxy, forward, lab, demo) on a port in use name the flag: cannot listen on ADDR (--FLAG): address already in use (EADDRINUSE), exit 1', { timeout: 180_000 }, async () => {
  // Finding (probe, session 37): they printed Node's raw "listen EADDRINUSE: address already in
  // use 127.0.0.1:8080"; `run` names the config entry, these now name the flag.
  const held = await holdPort();
  const p = (held.address() as AddressInfo).port;
  const busy = `127.0.0.1:${p}`;
  try {
    const cases: Array<[string[], string]> = [
      [['proxy', '--listen', busy, '--to', 'http://127.0.0.1:9'], '--listen'],
      [['forward', '--listen', busy, '--no-auth'], '--listen'],
      [['forward', '--listen', `127.0.0.1:${await freePort()}`, '--socks', busy, '--no-auth'], '--socks'],
      [['lab', '--port', String(p), '--no-tls'], '--port'],
      [['demo', '--port', String(p), '--admin-port', String(await freePort())], '--port'],
      [['demo', '--port', String(await freePort()), '--admin-port', String(p)], '--admin-port'],
    ];
    for (const [args, flag] of cases) {
      const { code, err } = await exitOf(args, 30_000);
      const where = `gatewise ${args.join(' ')}: ${err}`;
      assert.equal(code, 1, `did not exit 1 (-1: still running after 30 s): ${where}`);
      assert.ok(err.includes(`gatewise ${args[0]}: cannot listen on ${busy} (${flag}): address already in use (EADDRINUSE)`), where);
      assert.doesNotMatch(err, /listen EADDRINUSE/, where);
    }
  } finally {
    held.close();
  }
});

test('gatewise forward and gatewise proxy on a port in use log one start-failed line naming the flag, as gatewise run does', { timeout: 120_000 }, async () => {
  // Finding (error-story probe): `gatewise forward` wrote only its stderr line; its log had no
  // line saying why it did not start (`run` and `proxy` log `start-failed` from cli/runtime.ts).
  const held = await holdPort();
  const busy = `127.0.0.1:${(held.address() as AddressInfo).port}`;
  try {
    const cases: Array<[string[], string]> = [
      [['forward', '--listen', busy, '--no-auth'], '--listen'],
      [['forward', '--listen', `127.0.0.1:${await freePort()}`, '--socks', busy, '--no-auth'], '--socks'],
      [['proxy', '--listen', busy, '--to', 'http://127.0.0.1:9'], '--listen'],
    ];
    for (const [args, flag] of cases) {
      const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const code = await new Promise<number | null>((resolve) => {
        const t = setTimeout(() => {
          child.kill('SIGKILL');
          resolve(-1);
        }, 30_000);
        child.once('exit', (c) => {
          clearTimeout(t);
          resolve(c);
        });
      });
      const where = `gatewise ${args.join(' ')}: stdout ${out} stderr ${err}`;
      assert.equal(code, 1, where);
      const lines = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      const failed = lines.filter((l) => l.event === 'start-failed');
      assert.equal(failed.length, 1, `one start-failed line: ${where}`);
      assert.equal(failed[0]!.level, 'error', where);
      assert.equal(failed[0]!.code, 'EADDRINUSE', where);
      assert.ok(String(failed[0]!.msg).includes(`cannot listen on ${busy} (${flag}): address already in use (EADDRINUSE)`), where);
      for (const l of lines) assert.ok(l.event !== 'ready' && l.event !== 'forward-ready', `${where}: a line claims ready: ${JSON.stringify(l)}`);
    }
  } finally {
    held.close();
  }
});

test('no ready line before every listener is up: a start whose admin or forward listener cannot bind logs no ready, forward-ready or admin line; a good start logs all three (seeded)', { timeout: 120_000 }, async () => {
  // Finding (error-story probe): with the admin port busy the log said "gateway listening"
  // (event ready) and "forward proxy listening" (forward-ready) before "not started".
  const rand = seededRandom();
  const dir = mkdtempSync(join(tmpdir(), 'gw-ready-order-'));
  const held = await holdPort();
  const heldPort = (held.address() as AddressInfo).port;
  const READY = ['ready', 'forward-ready', 'admin'];
  try {
    await withSeed(rand, async () => {
      for (let round = 0; round < 5; round++) {
        const which = round === 0 ? 'none' : rand.pick(['admin', 'forward', 'none'] as const);
        const withForward = which === 'forward' || rand.next() < 0.5;
        const file = join(dir, `r${round}.yaml`);
        writeFileSync(file, stringify({
          listeners: [{ address: '127.0.0.1', port: 0 }],
          admin: { address: '127.0.0.1', port: which === 'admin' ? heldPort : 0 },
          clusters: { app: { endpoints: ['http://127.0.0.1:9'] } },
          routes: [{ cluster: 'app' }],
          ...(withForward ? { forward: { listeners: [{ address: '127.0.0.1', port: which === 'forward' ? heldPort : 0 }], auth: { required: false }, rules: { defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }] } } } : {}),
        }));
        const lines: Array<Record<string, unknown>> = [];
        const destination = new Writable({
          write(chunk: Buffer, _e, cb) {
            for (const l of chunk.toString().split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
            cb();
          },
        });
        const where = `round ${round}: busy ${which}, forward ${withForward}`;
        const logger = createLogger({ destination });
        if (which === 'none') {
          const rt = await startRuntime(await loadConfigFile(file), { configFile: file, logger, probeUpstreams: false });
          await rt.close();
          const events = lines.map((l) => l.event);
          for (const e of READY) if (e !== 'forward-ready' || withForward) assert.ok(events.includes(e), `${where}: no ${e} line: ${JSON.stringify(lines)}`);
          // The listeners' own lines are held to the end of the start, not dropped.
          assert.ok(lines.some((l) => l.event === 'listening' && String(l.msg).startsWith('http://127.0.0.1:')), `${where}: no gateway listening line: ${JSON.stringify(lines)}`);
          if (withForward) assert.ok(lines.some((l) => String(l.msg).startsWith('forward proxy listening on 127.0.0.1:')), `${where}: no forward proxy listening line: ${JSON.stringify(lines)}`);
          continue;
        }
        await assert.rejects(startRuntime(await loadConfigFile(file), { configFile: file, logger, probeUpstreams: false }), (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE', where);
        assert.equal(lines.filter((l) => l.event === 'start-failed').length, 1, `${where}: ${JSON.stringify(lines)}`);
        for (const l of lines) assert.ok(!READY.includes(String(l.event)) && l.event !== 'listening' && !String(l.msg).includes('listening'), `${where}: a line claims a listener ready though the start failed: ${JSON.stringify(l)}`);
      }
    });
  } finally {
    held.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

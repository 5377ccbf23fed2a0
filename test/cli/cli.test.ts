import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { startLab } from '../../src/lab/index.js';

const BIN = fileURLToPath(new URL('../../../bin/gatewise.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'gatewise-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 15000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('check accepts a good config and refuses a bad one with every problem and its line', async () => {
  const good = join(dir, 'good.yaml');
  writeFileSync(good, 'listeners: [{ port: 8080 }]\nclusters: { a: { endpoints: ["http://127.0.0.1:3000"] } }\nroutes: [{ cluster: a }]\n');
  const ok = await run(['check', '-c', good]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /ok — 1 listener/);
  // Both faces and the admin listener: each part that will listen is named with its address.
  const both = join(dir, 'both.yaml');
  writeFileSync(
    both,
    'listeners: [{ port: 8080 }]\nclusters: { a: { endpoints: ["http://127.0.0.1:3000"] } }\nroutes: [{ cluster: a }]\nadmin: { port: 9901 }\n' +
      'forward: { listeners: [{ port: 3128 }, { address: "::1", port: 1080, protocols: [socks5] }], auth: { required: false } }\n',
  );
  const b = await run(['check', '-c', both]);
  assert.equal(b.code, 0, b.stderr);
  assert.equal(b.stdout, `${both}: ok — 1 listener(s), 1 cluster(s), 1 route(s); forward proxy on 127.0.0.1:3128, [::1]:1080; admin on 127.0.0.1:9901\n`);
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'listeners:\n  - port: -1\nclusters: { a: { endpoints: ["gopher://x"] } }\nroutes: [{ cluster: b }]\n');
  const r = await run(['check', '-c', bad]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /3 problems/);
  assert.match(r.stderr, /bad\.yaml:2:\d+\s+listeners\[0\]\.port/);
  assert.match(r.stderr, /clusters\.a\.endpoints\[0\]/);
  assert.match(r.stderr, /routes\[0\]\.cluster: no cluster named "b"/);
  const missing = await run(['check', '-c', join(dir, 'nope.yaml')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot read the file \(ENOENT\)/);
});

test('schema prints a JSON Schema', async () => {
  const r = await run(['schema']);
  assert.equal(r.code, 0);
  const s = JSON.parse(r.stdout) as { type: string; properties: object };
  assert.equal(s.type, 'object');
  assert.ok('routes' in s.properties);
});

test('usage errors exit 2 and say what is wrong', async () => {
  const r = await run(['proxy', '--listen', 'nowhere']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--to/);
  const d = await run(['proxy', '--to', 'http://127.0.0.1:1', '--response-timeout', 'soon']);
  assert.equal(d.code, 2);
  assert.match(d.stderr, /--response-timeout expects a duration/);
  assert.equal((await run(['frobnicate'])).code, 2);
});

test('demo: a --port that leaves no room for the dashboard, or an --admin-port equal to --port, is a bad command line naming both flags (was: got "undefined", or EADDRINUSE on its own port)', async () => {
  const top = await run(['demo', '--port', '65535']);
  assert.equal(top.code, 2, top.stderr);
  assert.match(top.stderr, /--port 65535 leaves no port above it for the dashboard: give --admin-port N/);
  assert.doesNotMatch(top.stderr, /undefined/);
  const same = await run(['demo', '--port', '18080', '--admin-port', '18080']);
  assert.equal(same.code, 2, same.stderr);
  assert.match(same.stderr, /--admin-port 18080 is the gateway's --port: give another/);
  assert.doesNotMatch(same.stderr, /EADDRINUSE/);
});

test('a duration flag without a unit is refused, naming the flag (--response-timeout 30 was a 30 ms timeout)', async () => {
  for (const flag of ['--connect-timeout', '--response-timeout', '--idle-timeout']) {
    const r = await run(['proxy', '--to', 'http://127.0.0.1:1', flag, '30']);
    assert.equal(r.code, 2, `${flag} 30: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${flag} expects a duration such as 500ms, 2s or 1m, got "30"`));
  }
  const d = await run(['diagnose', '--timeout', '10', 'http://127.0.0.1:1/']);
  assert.equal(d.code, 64, d.stderr);
  assert.match(d.stderr, /--timeout expects a duration/);
});

test('proxy --retries and --health-path become the route retry policy and an active check', async () => {
  const { proxyConfig } = await import('../../src/cli/main.js');
  const { config } = proxyConfig(['--to', 'http://127.0.0.1:1', '--to', 'http://127.0.0.1:2', '--retries', '0', '--health-path', '/healthz']);
  const cluster = (config.clusters as Record<string, { healthCheck?: { path: string } }>).default!;
  assert.equal(cluster.healthCheck?.path, '/healthz');
  assert.deepEqual((config.routes as Array<{ retry?: { tries: number } }>)[0]!.retry, { tries: 1 });
  const bad = await run(['proxy', '--to', 'http://127.0.0.1:1', '--retries', 'many']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--retries expects/);
});

test('proxy one-liner serves, names failures, and drains on SIGTERM', async () => {
  const lab = await startLab();
  const child = spawn(process.execPath, [BIN, 'proxy', '--listen', '127.0.0.1:0', '--to', lab.url, '--response-timeout', '300ms'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    let out = '';
    const url = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ready line: ${out}`)), 10000);
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        const m = /"listeners":\["(http:\/\/[^"]+)"\]/.exec(out);
        if (m) {
          clearTimeout(t);
          resolve(m[1]!);
        }
      });
    });
    const ok = await request(`${url}/ok`);
    assert.equal(ok.statusCode, 200);
    await ok.body.text();
    const hang = await request(`${url}/hang`);
    assert.equal(hang.statusCode, 504);
    assert.match(String(hang.headers['proxy-status']), /error=http_response_timeout/);
    await hang.body.text();
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.match(out, /"type":"access"/);
  } finally {
    child.kill('SIGKILL');
    await lab.close();
  }
});

test('--workers N: the first SIGTERM drains every worker and the primary exits 0 (1, 2 and 3 workers)', { timeout: 60_000 }, async () => {
  const lab = await startLab();
  try {
    for (const n of [1, 2, 3]) {
      // A free port: bind 0, read it, close (the workers share one listening socket on it).
      const probe = (await import('node:net')).createServer().listen(0, '127.0.0.1');
      await new Promise((r) => probe.once('listening', r));
      const port = (probe.address() as { port: number }).port;
      await new Promise((r) => probe.close(r));
      const child = spawn(process.execPath, [BIN, 'proxy', '--listen', `127.0.0.1:${port}`, '--to', lab.url, '--workers', String(n)], { stdio: ['ignore', 'pipe', 'pipe'] });
      try {
        let out = '';
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`${n} workers: not all ready: ${out}`)), 15_000);
          child.stdout.on('data', (c: Buffer) => {
            out += c.toString();
            if ((out.match(/"event":"ready"/g) ?? []).length >= n) {
              clearTimeout(t);
              resolve();
            }
          });
        });
        const ok = await request(`http://127.0.0.1:${port}/ok`);
        assert.equal(ok.statusCode, 200);
        await ok.body.text();
        const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
        const t0 = Date.now();
        child.kill('SIGTERM');
        assert.equal(await exited, 0, `${n} workers`);
        assert.ok(Date.now() - t0 < 10_000, `${n} workers: exit took ${Date.now() - t0} ms`);
        assert.equal((out.match(/"event":"closed"/g) ?? []).length, n, `${n} workers each closed`);
      } finally {
        child.kill('SIGKILL');
      }
    }
  } finally {
    await lab.close();
  }
});

test('demo --once probes, prints the table without "Ctrl-C to stop", exits, and leaves no temp directory behind', async () => {
  // A private TMPDIR: other processes on the machine may make gatewise-* directories in /tmp meanwhile.
  const tmp = mkdtempSync(join(tmpdir(), 'gatewise-cli-tmp-'));
  try {
    const r = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(process.execPath, [BIN, 'demo', '--once', '--port', '0'], { timeout: 30000, env: { ...process.env, TMPDIR: tmp } }, (err, stdout) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout });
      });
    });
    assert.equal(r.code, 0, r.stdout);
    assert.match(r.stdout, /502 connection_refused/);
    assert.match(r.stdout, /^Dashboard: http:\/\/127\.0\.0\.1:\d+\/ /m);
    assert.doesNotMatch(r.stdout, /Ctrl-C/);
    assert.deepEqual(readdirSync(tmp), []);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

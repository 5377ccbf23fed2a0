import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { startLab } from '../../src/lab/index.js';
import { hashPassword } from '../../src/tenants/password-hash.js';
import { closedPort } from '../helpers/admin-stack.js';
import { freePorts } from '../helpers/redis.js';

/**
 * Issue 18: with `gatewise run --workers 2`, a scrape of /metrics and the admin API answer
 * for the whole process group, whichever worker the kernel hands the scrape to. A real
 * process group; traffic on fresh connections, spread over both workers (each worker's
 * request ids carry its own prefix, so the test sees that both served); every scrape's
 * totals equal the requests sent.
 */

const BIN = fileURLToPath(new URL('../../../bin/gatewise.js', import.meta.url));


/** One request on its own connection (agent: false): the kernel picks the worker afresh. */
function fresh(opts: { port: number; path: string; headers?: Record<string, string> }): Promise<{ status: number; requestId: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: opts.port, path: opts.path, agent: false, headers: { connection: 'close', ...opts.headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, requestId: String(res.headers['x-request-id'] ?? '') }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sum of a counter's series whose labels include `match`. */
function total(text: string, name: string, match: string): number {
  let n = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${name}{`) && line.includes(match)) n += Number(line.slice(line.lastIndexOf(' ') + 1));
  return n;
}

test('--workers 2: /metrics and the admin API answer for the whole group', { timeout: 90_000 }, async () => {
  const lab = await startLab();
  const dead = await closedPort();
  const [gwPort, adminPort, fwdPort] = await freePorts(3);
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-workers-'));
  const file = join(dir, 'gatewise.json');
  const password = 'wonderland-pass';
  writeFileSync(
    file,
    JSON.stringify({
      listeners: [{ address: '127.0.0.1', port: gwPort }],
      admin: { port: adminPort },
      clusters: { app: { endpoints: [lab.url] }, dead: { endpoints: [`http://127.0.0.1:${dead}`], waitForEndpoint: { timeout: '0s' } } },
      routes: [
        { name: 'dead', match: { pathPrefix: '/dead' }, cluster: 'dead', stripPrefix: true },
        { name: 'app', cluster: 'app' },
      ],
      forward: {
        listeners: [{ address: '127.0.0.1', port: fwdPort }],
        auth: { required: true, users: [{ name: 'alice', password: await hashPassword(password, { N: 1024, r: 8, p: 1 }) }] },
        rules: { allowPrivate: true },
      },
      log: { access: false },
    }),
  );
  const child = spawn(process.execPath, [BIN, 'run', '--config', file, '--workers', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`not both workers ready: ${out} ${err}`)), 20_000);
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        if ((out.match(/"event":"admin"/g) ?? []).length >= 2) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    // Reverse traffic on fresh connections until both workers have served (bounded: 10 rounds).
    const prefixes = new Set<string>();
    let ok = 0;
    let failed = 0;
    for (let round = 0; round < 10 && (prefixes.size < 2 || round < 2); round++) {
      const results = await Promise.all([
        ...Array.from({ length: 16 }, () => fresh({ port: gwPort, path: '/ok' })),
        ...Array.from({ length: 4 }, () => fresh({ port: gwPort, path: '/dead/x' })),
      ]);
      for (const r of results) {
        prefixes.add(r.requestId.split('-')[0]!);
        if (r.status === 200) ok++;
        else failed++;
      }
    }
    assert.equal(prefixes.size, 2, `both workers served (request id prefixes: ${[...prefixes].join(', ')})`);
    assert.ok(failed > 0);
    // Forward traffic, fresh connections too.
    const basic = 'Basic ' + Buffer.from(`alice:${password}`).toString('base64');
    let forwarded = 0;
    for (let i = 0; i < 3; i++) {
      const rs = await Promise.all(Array.from({ length: 6 }, () => fresh({ port: fwdPort, path: `${lab.url}/ok`, headers: { 'proxy-authorization': basic, host: new URL(lab.url).host } })));
      for (const r of rs) assert.equal(r.status, 200);
      forwarded += rs.length;
    }
    const sent = ok + failed;
    const admin = `http://127.0.0.1:${adminPort}`;
    // Records reach the subscribers when each request ends; poll the group's figures until they settle (bounded).
    const deadline = Date.now() + 10_000;
    let text = '';
    for (;;) {
      const res = await request(`${admin}/metrics`, { reset: true });
      text = await res.body.text();
      if (total(text, 'gatewise_requests_total', 'face="reverse"') === sent && total(text, 'gatewise_requests_total', 'face="forward"') === forwarded) break;
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(total(text, 'gatewise_requests_total', 'face="reverse"'), sent, 'reverse requests: the group total');
    assert.equal(total(text, 'gatewise_requests_total', 'face="forward"'), forwarded, 'forward requests: the group total');
    // Every scrape, on a fresh connection to whichever worker, says the same.
    for (let i = 0; i < 6; i++) {
      const res = await request(`${admin}/metrics`, { reset: true });
      assert.equal(res.headers['gatewise-workers'], '2');
      assert.equal(res.headers['gatewise-workers-missing'], '0');
      const t = await res.body.text();
      assert.equal(total(t, 'gatewise_requests_total', 'face="reverse"'), sent, `scrape ${i}`);
      assert.equal(total(t, 'gatewise_requests_total', 'face="reverse",protocol="http",route="dead"'), failed, `scrape ${i}: the failures`);
      assert.equal(total(t, 'gatewise_request_duration_seconds_count', 'face="reverse"'), sent, `scrape ${i}: histogram counts add up`);
    }
    const api = async <T>(path: string, method = 'GET'): Promise<T> => {
      const res = await request(`${admin}${path}`, { method, reset: true, headers: method === 'GET' ? {} : { 'gatewise-admin': '1' } });
      assert.equal(res.headers['gatewise-workers'], '2', path);
      return (await res.body.json()) as T;
    };
    const status = await api<{ workers: Array<{ worker: number }>; ready: boolean }>('/status');
    assert.equal(status.workers.length, 2);
    assert.equal(status.ready, true);
    const traffic = await api<{ totals: { reverse: number; forward: number; failures: number } }>('/traffic?seconds=60');
    assert.deepEqual([traffic.totals.reverse, traffic.totals.forward], [sent, forwarded]);
    const failures = await api<{ failures: Array<{ worker: number; cluster: string }> }>('/failures?limit=1000');
    assert.equal(failures.failures.length, failed);
    assert.ok(failures.failures.every((f) => f.cluster === 'dead'));
    const users = await api<{ users: Array<{ user: string; requests: number }> }>('/users');
    assert.deepEqual(users.users.map((u) => [u.user, u.requests]), [['alice', forwarded]]);
    // Drain acts in every worker; /clusters shows each worker's view and the summary.
    const drained = await api<{ draining: boolean }>(`/clusters/app/drain?endpoint=${encodeURIComponent(lab.url)}`, 'POST');
    assert.equal(drained.draining, true);
    const clusters = await api<Record<string, Array<{ endpoint: string; draining: boolean; workers: Array<{ worker: number; draining: boolean }> }>>>('/clusters');
    const ep = clusters.app![0]!;
    assert.equal(ep.draining, true);
    assert.deepEqual(ep.workers.map((w) => w.draining), [true, true], 'drained in both workers');
    assert.equal(new Set(ep.workers.map((w) => w.worker)).size, 2);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    child.kill('SIGKILL');
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

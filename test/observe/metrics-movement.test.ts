import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, get as httpGet, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { sumOf } from '../helpers/metrics-text.js';
import { Agent, ProxyAgent, request } from 'undici';
import { startRuntime, type Runtime } from '../../src/cli/runtime.js';
import { validateConfig } from '../../src/config/load.js';
import { startLab } from '../../src/lab/index.js';
import { createLogger } from '../../src/observe/access-log.js';
import { hashPassword } from '../../src/tenants/password-hash.js';
import { closedPort } from '../helpers/admin-stack.js';
import { NO_REDIS, TestRedis } from '../helpers/redis.js';
import { certDir, hasOpenssl } from '../helpers/tls-certs.js';

/**
 * Issue 18: "every metric is documented and tested to move with the traffic that should move
 * it". test/observe/metrics.test.ts moves the request, attempt and endpoint series; this file
 * moves the rest (forward exits, sticky sessions, quota cuts; the cache, held requests, TLS
 * certificates and upstream TLS; the shared state's standing), each through real traffic on a
 * `gatewise run` runtime, read from its admin `/metrics`. The check in metrics.test.ts fails
 * when a documented metric is named in no movement assertion.
 */

const closers: Array<() => Promise<unknown> | void> = [];
after(async () => {
  for (const c of closers.reverse()) await c();
});

const sum = sumOf;

interface Started {
  rt: Runtime;
  lines: string[];
  scrape(): Promise<string>;
  fwdPort?: number;
}

async function start(input: unknown): Promise<Started> {
  const lines: string[] = [];
  const logger = createLogger({ destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
  const rt = await startRuntime(validateConfig(input), { logger, probeUpstreams: false });
  closers.push(() => rt.close());
  const parsed = lines.map((l) => JSON.parse(l) as { event?: string; listeners?: Array<{ port: number }> });
  const fwd = parsed.find((l) => l.event === 'forward-ready');
  return { rt, lines, fwdPort: fwd?.listeners?.[0]?.port, scrape: async () => (await request(`${rt.adminUrl!}/metrics`)).body.text() };
}

/** The next forward record that satisfies `pred` (the event, not a time). */
function nextForwardRecord(pred: (r: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const on = (m: unknown): void => {
      const r = m as Record<string, unknown>;
      if (r.face !== 'forward' || !pred(r)) return;
      unsubscribe('gatewise:request:end', on);
      resolve(r);
    };
    subscribe('gatewise:request:end', on);
  });
}

/** A CONNECT through the proxy as `user`; resolves with the socket once the tunnel is open. */
async function tunnel(port: number, user: string, password: string, target: string): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  await once(s, 'connect');
  s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\nProxy-Authorization: Basic ${Buffer.from(`${user}:${password}`).toString('base64')}\r\n\r\n`);
  // Read the answer's head only (leaving a for-await loop would destroy the socket).
  const head = await new Promise<string>((resolve, reject) => {
    let got = '';
    const onData = (chunk: Buffer): void => {
      got += chunk.toString('latin1');
      if (!got.includes('\r\n\r\n')) return;
      s.off('data', onData);
      s.pause();
      resolve(got);
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error(`CONNECT as ${user}: closed after ${JSON.stringify(got)}`)));
  });
  assert.match(head, /^HTTP\/1\.1 200/, `CONNECT as ${user}: ${head}`);
  return s;
}

const PASSWORD = 'movement-pass';

describe('forward series move with forward traffic', () => {
  test('sticky sessions, exits in use, exit failures and cool-downs, quota cuts', async () => {
    const lab = await startLab();
    closers.push(() => lab.close());
    const dead = await closedPort();
    const hash = await hashPassword(PASSWORD, { N: 1024, r: 8, p: 1 });
    const s = await start({
      admin: { port: 0 },
      forward: {
        listeners: [{ address: '127.0.0.1', port: 0 }],
        auth: { required: true, users: [{ name: 'alice', password: hash }, { name: 'carol', password: hash, plan: 'small' }] },
        plans: { small: { bytesPerDay: { down: 3000 } } },
        rules: { allowPrivate: true, connectPorts: ['1-65535'] },
        egress: {
          pools: { dc: { addresses: ['127.0.0.1'] }, resi: { proxies: [`http://u:p@127.0.0.1:${dead}`], failure: { threshold: 1, cooldown: '60s' } } },
          defaultPool: 'dc',
        },
        timeouts: { connect: '2s', dns: '2s', handshake: '3s' },
      },
    });
    const labHost = new URL(lab.url).host;
    const before = await s.scrape();
    assert.equal(sum(before, 'gatewise_forward_sticky_sessions', { pool: 'dc' }), 0);
    assert.equal(sum(before, 'gatewise_forward_exit_down', { pool: 'resi' }), 0);

    // A sticky session: one pinned in pool dc.
    const proxy = new ProxyAgent({ uri: `http://127.0.0.1:${s.fwdPort}`, token: `Basic ${Buffer.from(`alice-session-s1:${PASSWORD}`).toString('base64')}` });
    closers.push(() => proxy.close());
    const r = await request(`${lab.url}/ok`, { dispatcher: proxy });
    assert.equal(r.statusCode, 200);
    await r.body.text();

    // A tunnel held open through the dc exit while scraping.
    const held = await tunnel(s.fwdPort!, 'alice', PASSWORD, labHost);
    const during = await s.scrape();
    assert.equal(sum(during, 'gatewise_forward_sticky_sessions', { pool: 'dc' }), 1, 'one session pinned');
    assert.ok(sum(during, 'gatewise_forward_exit_active', { pool: 'dc', exit: '127.0.0.1' }) >= 1, 'the open tunnel counts on its exit');
    held.destroy();
    // The tunnel's exit is given back when it closes: poll the scrape (bounded), not a guess.
    const active = (text: string): number => sum(text, 'gatewise_forward_exit_active', { pool: 'dc', exit: '127.0.0.1' });
    const inUse = active(during);
    const deadline = Date.now() + 3000;
    let afterHeld = await s.scrape();
    while (active(afterHeld) !== inUse - 1 && Date.now() < deadline) afterHeld = await s.scrape();
    assert.equal(active(afterHeld), inUse - 1, 'the closed tunnel no longer counts on its exit');

    // An exit that refuses: one failure trips the cool-down (threshold 1).
    const failed = nextForwardRecord((x) => x.pool === 'resi');
    const viaResi = tunnel(s.fwdPort!, 'alice-pool-resi', PASSWORD, labHost).then(
      () => assert.fail('the dead exit cannot open a tunnel'),
      () => undefined,
    );
    await failed;
    await viaResi;

    // A quota cut: carol's plan allows 3000 bytes down a day; a 1 MiB answer (many chunks) is cut at the chunk after the limit.
    const cut = nextForwardRecord((x) => x.user === 'carol' && x.quota !== undefined);
    const t = await tunnel(s.fwdPort!, 'carol', PASSWORD, labHost);
    t.write(`GET /bytes?n=1048576 HTTP/1.1\r\nHost: ${labHost}\r\n\r\n`);
    t.resume();
    t.on('error', () => {});
    await cut;
    t.destroy();

    const afterAll = await s.scrape();
    assert.ok(sum(afterAll, 'gatewise_forward_exit_failures_total', { pool: 'resi', cooled: 'true' }) > sum(before, 'gatewise_forward_exit_failures_total', { pool: 'resi', cooled: 'true' }), 'the refusal counts, cooled');
    assert.equal(sum(afterAll, 'gatewise_forward_exit_down', { pool: 'resi' }), 1, 'the refusing exit cools down');
    assert.equal(sum(afterAll, 'gatewise_forward_exit_down', { pool: 'dc' }), 0, 'the working exit does not');
    assert.equal(sum(afterAll, 'gatewise_forward_quota_cuts_total', { plan: 'small' }) - sum(before, 'gatewise_forward_quota_cuts_total', { plan: 'small' }), 1, 'one tunnel cut by the quota');
  });
});

describe('reverse series move with reverse traffic', () => {
  test('the cache, held requests, the listener certificate (days left, reloads) and upstream TLS handshakes', { skip: hasOpenssl() ? false : 'openssl is not installed' }, async () => {
    const lab = await startLab({ tls: true });
    closers.push(() => lab.close());
    const dead = await closedPort();
    const dir = certDir('gatewise-movement-');
    closers.push(() => dir.remove());
    const ca = dir.ca('movement-ca');
    const first = ca.issue('first.test', { dns: ['a.test'], days: 10 });
    const live = { cert: join(dir.dir, 'live.pem'), key: join(dir.dir, 'live.key') };
    copyFileSync(first.certFile, live.cert);
    copyFileSync(first.keyFile, live.key);
    const labCa = join(dir.dir, 'lab-ca.pem');
    writeFileSync(labCa, lab.caPem!);
    // An origin whose answers may be stored (the lab's are not).
    const origin: Server = createServer((_req, res) => res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' }).end('cacheable\n'));
    origin.listen(0, '127.0.0.1');
    await once(origin, 'listening');
    closers.push(() => new Promise<void>((r) => origin.close(() => r())));
    // An origin whose answers are stale at once, and which goes away: the stored copy answers for it.
    const fading: Server = createServer((_req, res) => res.writeHead(200, { 'cache-control': 'max-age=0', 'content-type': 'text/plain' }).end('stale soon\n'));
    fading.listen(0, '127.0.0.1');
    await once(fading, 'listening');
    // An origin whose answers are stale at once but may be served while revalidated in the background.
    const swr: Server = createServer((_req, res) => res.writeHead(200, { 'cache-control': 'max-age=0, stale-while-revalidate=60', 'content-type': 'text/plain' }).end('revalidated behind\n'));
    swr.listen(0, '127.0.0.1');
    await once(swr, 'listening');
    closers.push(() => new Promise<void>((r) => swr.close(() => r())));
    const s = await start({
      listeners: [{ address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: live.cert, key: live.key }] } }],
      admin: { port: 0 },
      clusters: {
        cached: { endpoints: [`http://127.0.0.1:${(origin.address() as AddressInfo).port}`] },
        secure: { endpoints: [lab.tlsCaUrl!], tls: { ca: labCa } },
        held: { endpoints: [`http://127.0.0.1:${dead}`], waitForEndpoint: { timeout: '300ms' } },
        fading: { endpoints: [`http://127.0.0.1:${(fading.address() as AddressInfo).port}`], waitForEndpoint: { timeout: '0s' } },
        // One request at a time: a second waits in the admission queue.
        narrow: { endpoints: [lab.url], limits: { maxConcurrent: 1, maxQueued: 10 } },
        swr: { endpoints: [`http://127.0.0.1:${(swr.address() as AddressInfo).port}`] },
      },
      routes: [
        { name: 'cached', match: { pathPrefix: '/cached' }, cluster: 'cached', cache: {} },
        // Objects of 4 bytes at most: the origin's 10-byte answer is storable but refused for its size.
        { name: 'tiny', match: { pathPrefix: '/tiny' }, cluster: 'cached', cache: { maxObjectSize: 4 } },
        { name: 'secure', match: { pathPrefix: '/secure' }, cluster: 'secure', stripPrefix: true },
        { name: 'held', match: { pathPrefix: '/held' }, cluster: 'held', retry: { tries: 1 } },
        { name: 'fading', match: { pathPrefix: '/fading' }, cluster: 'fading', retry: { tries: 1 }, cache: { serveStaleOn: ['connection_refused'] } },
        { name: 'narrow', match: { pathPrefix: '/narrow' }, cluster: 'narrow', stripPrefix: true },
        { name: 'swr', match: { pathPrefix: '/swr' }, cluster: 'swr', cache: {} },
      ],
      cache: { maxSize: 1_000_000 },
    });
    const url = s.rt.gateway!.addresses()[0]!.url;
    const agent = new Agent({ connect: { ca: ca.cert, servername: 'a.test' } });
    closers.push(() => agent.close());
    const get = async (path: string): Promise<string> => {
      const res = await request(`${url}${path}`, { dispatcher: agent, headers: { host: 'a.test' } });
      await res.body.text();
      return `${res.statusCode} ${String(res.headers['proxy-status'] ?? '')}`.trim();
    };
    const before = await s.scrape();
    const days = sum(before, 'gatewise_tls_certificate_days_left', { cert: live.cert });
    assert.ok(days > 9 && days <= 10.01, `days left of a 10-day certificate: ${days}`);

    assert.equal(await get('/cached/x'), '200');
    assert.equal(await get('/cached/x'), '200');
    assert.equal(await get('/secure/ok'), '200');
    assert.match(await get('/held/x'), /^50[23] .*error=(connection_refused|destination_unavailable)/);
    assert.equal(await get('/fading/x'), '200');
    // Stored stale, then a stale hit: one background revalidation replaces it.
    assert.equal(await get('/swr/x'), '200');
    assert.equal(await get('/swr/x'), '200');
    let revalidated = await s.scrape();
    for (const end = Date.now() + 3000; sum(revalidated, 'gatewise_cache_revalidations_total', { route: 'swr' }) === 0 && Date.now() < end; ) revalidated = await s.scrape();
    await new Promise<void>((r) => fading.close(() => r()));
    assert.match(await get('/fading/x'), /^200 .*error=connection_refused/, 'the stale copy answers, saying why');
    // A method the cache does not answer (bypassed for its method), and an answer too large to store.
    const post = await request(`${url}/cached/post`, { method: 'POST', dispatcher: agent, headers: { host: 'a.test' }, body: 'x' });
    await post.body.text();
    assert.equal(post.statusCode, 200);
    assert.equal(await get('/tiny/x'), '200');
    // Two slow requests on a cluster that takes one at a time: one in flight at the lab, one queued.
    const slow = [get('/narrow/slow?ms=800'), get('/narrow/slow?ms=800')];
    const busy = (text: string): boolean => sum(text, 'gatewise_endpoint_inflight', { cluster: 'narrow' }) === 1 && sum(text, 'gatewise_admission_queued', { cluster: 'narrow' }) === 1;
    let during = await s.scrape();
    for (const end = Date.now() + 3000; !busy(during) && Date.now() < end; ) during = await s.scrape();
    assert.equal(sum(during, 'gatewise_endpoint_inflight', { cluster: 'narrow' }), 1, 'one request in flight at the endpoint');
    assert.equal(sum(during, 'gatewise_admission_queued', { cluster: 'narrow' }), 1, 'the other waits in the queue');
    for (const p of slow) assert.equal(await p, '200');
    // A renewed certificate (30 days) replaces the file: reloaded, and the days left follow.
    const reloaded = new Promise<void>((resolve) => {
      const on = (m: unknown): void => {
        if ((m as { event: string }).event !== 'reloaded') return;
        unsubscribe('gatewise:tls:certificate', on);
        resolve();
      };
      subscribe('gatewise:tls:certificate', on);
    });
    const second = ca.issue('second.test', { dns: ['a.test'], days: 30 });
    copyFileSync(second.keyFile, live.key);
    copyFileSync(second.certFile, live.cert);
    await reloaded;

    const after = await s.scrape();
    const moved = (name: string, labels: Record<string, string>, by?: number): void => {
      const d = sum(after, name, labels) - sum(before, name, labels);
      if (by === undefined) assert.ok(d > 0, `${name} ${JSON.stringify(labels)} moved (${d})`);
      else assert.equal(d, by, `${name} ${JSON.stringify(labels)} moved by ${by}`);
    };
    moved('gatewise_cache_responses_total', { route: 'cached', result: 'miss' }, 1);
    moved('gatewise_cache_responses_total', { route: 'cached', result: 'hit' }, 1);
    moved('gatewise_upstream_tls_seconds_count', { cluster: 'secure' }, 1);
    moved('gatewise_held_requests_total', { cluster: 'held', event: 'held' }, 1);
    moved('gatewise_cache_recovered_total', { route: 'fading', cause: 'connection_refused' }, 1);
    moved('gatewise_cache_revalidations_total', { route: 'swr', result: 'replaced' }, 1);
    moved('gatewise_cache_bypasses_total', { route: 'cached', reason: 'method' }, 1);
    moved('gatewise_cache_store_refused_total', { route: 'tiny', reason: 'too-large' }, 1);
    assert.equal(sum(after, 'gatewise_endpoint_inflight', { cluster: 'narrow' }), 0, 'nothing in flight once they finished');
    assert.equal(sum(after, 'gatewise_admission_queued', { cluster: 'narrow' }), 0, 'nothing queued');
    moved('gatewise_tls_certificate_reloads_total', { cert: live.cert, result: 'reloaded' });
    const daysAfter = sum(after, 'gatewise_tls_certificate_days_left', { cert: live.cert });
    assert.ok(daysAfter > 29 && daysAfter <= 30.01, `days left after the renewal: ${daysAfter}`);
  });
});

describe('auth lockouts move their counter', () => {
  test('gatewise_auth_lockouts_total counts one lockout per face (wrong admin tokens; wrong proxy passwords on a CONNECT)', async () => {
    const token = 'movement-admin-token-0123456789';
    const hash = await hashPassword(PASSWORD, { N: 1024, r: 8, p: 1 });
    const s = await start({
      admin: { port: 0, token, lockout: { maxFailures: 2 } },
      forward: { listeners: [{ address: '127.0.0.1', port: 0 }], auth: { users: [{ name: 'mover', password: hash }], lockout: { maxFailures: 2 } }, rules: { allowPrivate: true } },
      log: { access: false },
    });
    // The wrong tokens come from 127.0.0.2 (node:http binds localAddress), so the scrape from 127.0.0.1 is not locked out.
    for (let i = 0; i < 2; i++) {
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpGet(`${s.rt.adminUrl!}/status`, { localAddress: '127.0.0.2', agent: false, headers: { authorization: `Bearer wrong-${i}` } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
      });
      assert.equal(status, 401);
    }
    for (let i = 0; i < 2; i++) await assert.rejects(tunnel(s.fwdPort!, 'mover', `wrong-${i}`, '127.0.0.1:9'), /407/);
    const text = await (await request(`${s.rt.adminUrl!}/metrics`, { headers: { authorization: `Bearer ${token}` } })).body.text();
    assert.equal(sum(text, 'gatewise_auth_lockouts_total', { face: 'admin' }), 1);
    assert.equal(sum(text, 'gatewise_auth_lockouts_total', { face: 'forward' }), 1);
  });
});

describe('a table full of lockouts moves the untracked counter', () => {
  test('gatewise_auth_lockout_untracked_total counts a wrong token that found every tracked address locked out (admin.lockout maxAddresses 1)', async () => {
    const token = 'movement-admin-token-untracked-0123';
    const s = await start({
      admin: { port: 0, token, lockout: { maxFailures: 1, maxAddresses: 1 } },
      forward: { listeners: [{ address: '127.0.0.1', port: 0 }], auth: { required: false }, rules: { allowPrivate: true } },
      log: { access: false },
    });
    // 127.0.0.3 is locked out by its wrong token and fills the table; 127.0.0.4's wrong tokens then find no room.
    const wrong = (from: string, i: number): Promise<number> =>
      new Promise<number>((resolve, reject) => {
        const req = httpGet(`${s.rt.adminUrl!}/status`, { localAddress: from, agent: false, headers: { authorization: `Bearer wrong-${i}` } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
      });
    assert.equal(await wrong('127.0.0.3', 0), 401);
    assert.equal(await wrong('127.0.0.3', 1), 429, 'locked out');
    for (let i = 0; i < 3; i++) assert.equal(await wrong('127.0.0.4', i), 401, 'answered as a wrong token, not counted');
    assert.equal(await wrong('127.0.0.3', 9), 429, 'the locked address was not pushed out');
    const text = await (await request(`${s.rt.adminUrl!}/metrics`, { headers: { authorization: `Bearer ${token}` } })).body.text();
    assert.equal(sum(text, 'gatewise_auth_lockout_untracked_total', { face: 'admin' }), 3);
  });
});

describe('ACME orders move their counter', () => {
  test('gatewise_tls_acme_orders_total counts a failed order by its step (the directory is a closed loopback port)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatewise-movement-acme-'));
    closers.push(() => rmSync(dir, { recursive: true, force: true }));
    const dead = await closedPort();
    const s = await start({
      listeners: [
        { address: '127.0.0.1', port: 0 },
        { address: '127.0.0.1', port: 0, tls: { acme: { directory: `https://127.0.0.1:${dead}/dir`, acceptTerms: true, hosts: ['movement.gatewise.test'], storage: dir, backoff: { initial: '1h' } } } },
      ],
      admin: { port: 0 },
      clusters: { up: { endpoints: [`http://127.0.0.1:${dead}`] } },
      routes: [{ cluster: 'up' }],
    });
    // Ordered at start; its failure is counted once the directory was found unreachable (a refused connect: bounded wait).
    const deadline = Date.now() + 10_000;
    let failed = 0;
    while (failed === 0 && Date.now() < deadline) {
      const text = await s.scrape();
      failed = sum(text, 'gatewise_tls_acme_orders_total', { result: 'failed', reason: 'unreachable' });
      if (failed === 0) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(failed, 1, 'one failed order, the next one an hour away');
  });
});

describe('the shared state standing moves when Redis goes away', () => {
  test('gatewise_state_degraded and gatewise_state_fallbacks', async (t) => {
    const redis = await TestRedis.start();
    if (redis === undefined) {
      t.skip(NO_REDIS);
      return;
    }
    closers.push(() => redis.stop());
    const lab = await startLab();
    closers.push(() => lab.close());
    const hash = await hashPassword(PASSWORD, { N: 1024, r: 8, p: 1 });
    const dir = mkdtempSync(join(tmpdir(), 'gatewise-movement-state-'));
    closers.push(() => rmSync(dir, { recursive: true, force: true }));
    const s = await start({
      admin: { port: 0 },
      forward: {
        listeners: [{ address: '127.0.0.1', port: 0 }],
        auth: { required: true, users: [{ name: 'alice', password: hash, plan: 'limited' }] },
        plans: { limited: { maxConnections: 50, requestsPerSecond: 1000 } },
        rules: { allowPrivate: true, connectPorts: ['1-65535'] },
        state: { redis: { url: redis.url, keyPrefix: `movement-${process.pid}:` }, timeout: '200ms' },
      },
    });
    const labHost = new URL(lab.url).host;
    const ok = await tunnel(s.fwdPort!, 'alice', PASSWORD, labHost);
    ok.destroy();
    const before = await s.scrape();
    assert.equal(sum(before, 'gatewise_state_degraded', { backend: 'redis' }), 0, 'Redis answers: not degraded');
    await redis.kill();
    // Tunnels go on while Redis is away (no request fails); their admissions fall back to local state.
    for (let i = 0; i < 3; i++) (await tunnel(s.fwdPort!, 'alice', PASSWORD, labHost)).destroy();
    const after = await s.scrape();
    assert.equal(sum(after, 'gatewise_state_degraded', { backend: 'redis' }), 1, 'Redis gone: degraded');
    assert.ok(sum(after, 'gatewise_state_fallbacks', { backend: 'redis' }) > sum(before, 'gatewise_state_fallbacks', { backend: 'redis' }), 'operations answered from local state');
  });
});

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { request } from 'undici';
import { loadLabCerts } from '../../src/lab/certs.js';
import { startLab, startLabDnsServer, type Lab, type LabDnsServer } from '../../src/lab/index.js';
import { SERVE_STALE_ON } from '../../src/config/schema.js';
import { validateConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

/**
 * Every `serveStaleOn` failure the reverse gateway can meet before a response head is passed
 * on, each caused for real on loopback: by the lab (its catalogue's faults, a port where
 * nothing listens, TLS faults), a socket that never accepts, a DNS server that answers
 * NXDOMAIN or nothing, or the gateway's own limits. A good response is stored first, the fault
 * then happens on the same cache key, and the client gets the stored copy with 200,
 * Cache-Status `fwd=stale` naming the failure and Proxy-Status naming it too; the access log
 * and the metrics count the request as recovered from cache.
 *
 * One key per fault: `/k/<fault>`, on one route per fault (a cache key ends with its route).
 * The route first goes to the lab's /ok and stores the good copy; the gateway is then
 * reloaded (the store kept) with that route going to the fault, through a cluster of its own
 * (so one fault's passive health never turns into another's): the upstream went bad.
 *
 * `tls_alert_received` comes from a TLS 1.2 peer that demands a client certificate the
 * gateway does not have (it answers the handshake with an alert). `destination_ip_unroutable`
 * from a loopback address the kernel is told it cannot reach (an `unreachable` route for
 * 127.77.0.1 in the local table, as root: connect fails with EHOSTUNREACH; nothing is sent,
 * and the address is loopback anyway); without root or `ip` that case is skipped and says so.
 */
interface FaultCase {
  /** What the route's `serveStaleOn` lists: an RFC 9209 type or an upstream status. */
  readonly fault: string;
  /** The fault cluster's endpoint and extra settings. */
  readonly endpoint: (lab: Lab, blackholePort: number) => string;
  readonly cluster?: Record<string, unknown>;
  /** The path the fault route asks the endpoint for. */
  readonly upstreamPath: string;
}

const NO_WAIT = { waitForEndpoint: { timeout: '0s' } };
const UNROUTABLE = '127.77.0.1';
/** Why the unroutable case cannot run here (no root, no `ip`), or undefined when its route is in place. */
let unroutableMissing: string | undefined = 'not set up';

function unroutableRoute(op: 'replace' | 'del'): void {
  execFileSync('ip', ['route', op, 'unreachable', `${UNROUTABLE}/32`, 'table', 'local'], { stdio: 'pipe' });
}
const CASES: readonly FaultCase[] = [
  // The issue's list.
  { fault: 'connection_refused', endpoint: (l) => `http://127.0.0.1:${l.refusedPort}`, upstreamPath: '/ok' },
  { fault: 'connection_timeout', endpoint: (_l, p) => `http://127.0.0.1:${p}`, cluster: { timeouts: { connect: '300ms' } }, upstreamPath: '/ok' },
  { fault: 'http_response_timeout', endpoint: (l) => l.url, cluster: { timeouts: { response: '300ms' } }, upstreamPath: '/hang' },
  { fault: 'destination_unavailable', endpoint: (l) => l.url, upstreamPath: '/ok' },
  { fault: 'connection_limit_reached', endpoint: (l) => l.url, cluster: { limits: { maxConcurrent: 1, maxQueued: 0 } }, upstreamPath: '/ok' },
  { fault: '502', endpoint: (l) => l.url, upstreamPath: '/status/502' },
  { fault: '503', endpoint: (l) => l.url, upstreamPath: '/status/503' },
  { fault: '504', endpoint: (l) => l.url, upstreamPath: '/status/504' },
  // The rest of what can fail before a head is passed on.
  { fault: '500', endpoint: (l) => l.url, upstreamPath: '/status/500' },
  { fault: 'connection_terminated', endpoint: (l) => l.url, upstreamPath: '/close' },
  { fault: 'http_response_incomplete', endpoint: (l) => l.url, upstreamPath: '/cut-headers' },
  { fault: 'http_protocol_error', endpoint: (l) => l.url, upstreamPath: '/garbage' },
  { fault: 'http_response_header_section_size', endpoint: (l) => l.url, upstreamPath: '/oversized-headers' },
  { fault: 'tls_certificate_error', endpoint: (l) => l.tlsSelfSignedUrl!, upstreamPath: '/ok' },
  // TLS to a port that speaks plain HTTP.
  { fault: 'tls_protocol_error', endpoint: (l) => `https://127.0.0.1:${l.port}`, upstreamPath: '/ok' },
  { fault: 'dns_error', endpoint: (l) => `http://missing.gatewise.test:${l.port}`, upstreamPath: '/ok' },
  { fault: 'dns_timeout', endpoint: (l) => `http://silent.gatewise.test:${l.port}`, upstreamPath: '/ok' },
  { fault: 'destination_ip_unroutable', endpoint: () => `http://${UNROUTABLE}:80`, upstreamPath: '/ok' },
  // A trusted certificate, then handshake_failure: the gateway sent no client certificate.
  { fault: 'tls_alert_received', endpoint: () => `https://127.0.0.1:${alertPort}`, upstreamPath: '/ok' },
];
const LISTED = CASES.map((c) => c.fault);

let lab: Lab;
let dns: LabDnsServer;
let gw: TestGateway;
let backlogHolder: ChildProcess;
let filler: Socket;
let alertServer: TlsServer;
let alertPort = 0;
let caDir: string;

/** A port whose accept queue is full (backlog 0, never accepting, one connection in it): later SYNs are dropped, so connects time out. */
async function fullBacklogPort(): Promise<{ port: number; child: ChildProcess; filler: Socket }> {
  const child = spawn('python3', ['-c', 'import socket,time\ns=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(0); print(s.getsockname()[1], flush=True)\ntime.sleep(600)'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve) => child.stdout!.once('data', (d) => resolve(Number(String(d).trim()))));
  const filler = connect(port, '127.0.0.1');
  await new Promise<void>((r) => filler.once('connect', () => r()));
  return { port, child, filler };
}

before(async () => {
  lab = await startLab({ tls: true });
  try {
    unroutableRoute('replace');
    unroutableMissing = undefined;
  } catch (err) {
    unroutableMissing = `cannot add an unreachable route for ${UNROUTABLE} (needs root and iproute2): ${(err as Error).message.split('\n')[0]}`;
  }
  const certs = loadLabCerts();
  caDir = mkdtempSync(join(tmpdir(), 'gatewise-serve-stale-'));
  const caFile = join(caDir, 'lab-ca.pem');
  writeFileSync(caFile, certs.ca);
  alertServer = createTlsServer({ cert: certs.caSignedCert, key: certs.caSignedKey, ca: certs.ca, requestCert: true, rejectUnauthorized: true, maxVersion: 'TLSv1.2' }, (s) => s.destroy());
  alertServer.on('tlsClientError', () => {});
  await new Promise<void>((r) => alertServer.listen(0, '127.0.0.1', () => r()));
  alertPort = (alertServer.address() as { port: number }).port;
  dns = await startLabDnsServer({ records: {}, timeout: ['silent.gatewise.test'] });
  const backlog = await fullBacklogPort();
  backlogHolder = backlog.child;
  filler = backlog.filler;
  const cache = { serveStaleOn: LISTED, maxStale: '1m' };
  const clusters: Record<string, unknown> = { good: { endpoints: [lab.url] } };
  for (const c of CASES) {
    const cluster = c.fault === 'tls_alert_received' ? { tls: { ca: caFile } } : c.cluster;
    clusters[`c-${c.fault}`] = { endpoints: [c.endpoint(lab, backlog.port)], ...NO_WAIT, ...cluster };
  }
  inputFor = (faulty: string | undefined) => {
    const routes: unknown[] = CASES.map((c) =>
      c.fault === faulty
        ? { name: `fault-${c.fault}`, match: { pathPrefix: `/k/${c.fault}` }, cluster: `c-${c.fault}`, rewritePrefix: c.upstreamPath, cache, retry: { tries: 1 } }
        : { name: `fault-${c.fault}`, match: { pathPrefix: `/k/${c.fault}` }, cluster: 'good', rewritePrefix: '/ok', cache, retry: { tries: 1 } },
    );
    // Holds the limited cluster's one slot until the test lets it go.
    routes.push({ name: 'hold', match: { pathPrefix: '/hold' }, cluster: 'c-connection_limit_reached', rewritePrefix: '/slow' });
    return { dns: { servers: [`127.0.0.1:${dns.port}`], timeout: '300ms', tries: 1 }, clusters: clusters as ConfigInput['clusters'], routes: routes as ConfigInput['routes'] };
  };
  gw = await startTestGateway(inputFor(undefined));
});

/** The gateway's input with the route of `faulty` going to its fault (every other route to the lab's /ok). */
let inputFor: (faulty: string | undefined) => Parameters<typeof startTestGateway>[0];

after(async () => {
  filler?.destroy();
  backlogHolder?.kill('SIGKILL');
  await gw?.close();
  await dns?.close();
  await lab?.close();
  await new Promise((r) => (alertServer ? alertServer.close(r) : r(undefined)));
  if (caDir) rmSync(caDir, { recursive: true, force: true });
  if (unroutableMissing === undefined) unroutableRoute('del');
});

async function get(path: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const r = await request(`${gw.url.replace(/\/$/, '')}${path}`);
  return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
}

async function counted(metric: string, labels: Record<string, string>): Promise<number> {
  const m = await gw.registry.getSingleMetric(metric)!.get();
  let n = 0;
  for (const v of m.values) if (Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want)) n += v.value;
  return n;
}

describe('a stale copy answers for every serveStaleOn failure, and says why', () => {
  for (const { fault } of CASES) {
    test(fault, async (t) => {
      if (fault === 'destination_ip_unroutable' && unroutableMissing !== undefined) {
        t.skip(unroutableMissing);
        return;
      }
      const path = `/k/${fault}`;
      const good = await get(path);
      assert.equal(good.status, 200);
      assert.match(String(good.headers['cache-status']), /fwd=uri-miss; fwd-status=200; stored/);
      // The upstream goes bad: the route now reaches the fault (the store is kept across the reload).
      await gw.reload(inputFor(fault));
      if (fault === 'destination_unavailable') gw.gw.ctx.clusters.get(`c-${fault}`)!.setDraining(lab.url, true);
      let hold: { done: Promise<unknown>; stop: AbortController } | undefined;
      if (fault === 'connection_limit_reached') {
        // The slot is held until this test lets it go (no time window a slow machine could close).
        const stop = new AbortController();
        const done = request(`${gw.url.replace(/\/$/, '')}/hold?ms=60000`, { signal: stop.signal }).then((r) => r.body.text()).catch(() => undefined);
        hold = { done, stop };
        const deadline = Date.now() + 20_000;
        while (gw.gw.ctx.clusters.get(`c-${fault}`)!.admission!.inflight < 1) {
          if (Date.now() > deadline) throw new Error('the holding request never took the slot');
          await new Promise((r) => setTimeout(r, 5));
        }
      }
      let r: Awaited<ReturnType<typeof get>>;
      try {
        r = await get(path);
      } finally {
        hold?.stop.abort();
        await hold?.done;
      }
      assert.equal(r.status, 200, `${fault}: ${JSON.stringify(r.headers)} ${r.body}`);
      assert.equal(r.body, good.body, 'the stored body');
      const cs = String(r.headers['cache-status']);
      const ps = String(r.headers['proxy-status']);
      if (/^\d+$/.test(fault)) {
        assert.match(cs, new RegExp(`fwd=stale; fwd-status=${fault}; ttl=-\\d+`), cs);
        assert.match(ps, new RegExp(`received-status=${fault}`), ps);
      } else {
        assert.match(cs, new RegExp(`fwd=stale; ttl=-\\d+; detail=${fault}$`), cs);
        assert.match(ps, new RegExp(`error=${fault}`), ps);
      }
      const line = await gw.logFor(String(r.headers['x-request-id']), 20_000);
      assert.equal(line.status, 200);
      assert.equal(line.cache, 'stale');
      assert.equal(line.recoveredFrom, fault);
      assert.equal(line.error, undefined, 'the client got a good answer');
      assert.equal(await counted('gatewise_cache_recovered_total', { route: `fault-${fault}`, cause: fault }), 1);
    });
  }
});

test('the cases are every value serveStaleOn accepts, the issue\'s list among them; any other type is refused', () => {
  const issue = ['connection_refused', 'connection_timeout', 'http_response_timeout', 'destination_unavailable', 'connection_limit_reached', '502', '503', '504'];
  for (const f of issue) assert.ok(SERVE_STALE_ON.includes(f), f);
  assert.deepEqual([...LISTED].sort(), [...SERVE_STALE_ON].sort());
  const config = (serveStaleOn: string[]) => validateConfig({ listeners: [{ port: 0 }], clusters: { a: { endpoints: ['http://127.0.0.1:1'] } }, routes: [{ cluster: 'a', cache: { serveStaleOn } }] });
  // A type that can never happen where a stale copy could answer (the client's fault; after the
  // head went out; an upstream not reading a request body, which never reads the cache: stale-write-timeout.test.ts).
  for (const never of ['http_request_error', 'connection_read_timeout', 'connection_write_timeout', 'proxy_loop_detected', '501']) {
    assert.throws(() => config(['503', never]), (e: Error) => e.message.includes(`routes[0].cache.serveStaleOn[1]: "${never}" is not a failure a stale copy can answer for`), never);
  }
  assert.doesNotThrow(() => config([...SERVE_STALE_ON]));
});

test('a failure not listed in serveStaleOn, on a response without stale-if-error, is answered as the failure', async () => {
  const clusters = { good: { endpoints: [lab.url] }, refused: { endpoints: [`http://127.0.0.1:${lab.refusedPort}`], waitForEndpoint: { timeout: '0s' } } };
  const routeTo = (cluster: string) => [{ name: 'x', match: { pathPrefix: '/x' }, cluster, rewritePrefix: '/ok', cache: { serveStaleOn: ['503' as const] }, retry: { tries: 1 } }];
  const g = await startTestGateway({ clusters, routes: routeTo('good') });
  try {
    const base = g.url.replace(/\/$/, '');
    const first = await request(`${base}/x`);
    await first.body.text();
    assert.equal(first.statusCode, 200);
    await g.reload({ clusters, routes: routeTo('refused') });
    const r = await request(`${base}/x`);
    await r.body.text();
    assert.equal(r.statusCode, 502);
    assert.match(String(r.headers['proxy-status']), /error=connection_refused/);
    assert.match(String(r.headers['cache-status']), /fwd=stale$/);
  } finally {
    await g.close();
  }
});

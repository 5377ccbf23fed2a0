import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { request } from 'undici';
import { startLab, type Lab } from '../../src/lab/index.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

/**
 * Every `serveStaleOn` failure type, each caused for real by the lab (or a socket that never
 * accepts, or the gateway's own limits): a good response is stored first, the fault then
 * happens on the same cache key, and the client gets the stored copy with 200, Cache-Status
 * `fwd=stale` naming the failure and Proxy-Status naming it too; the access log and the
 * metrics count the request as recovered from cache.
 *
 * One key per fault: `/k/<fault>`. Two routes share each key (the cache is keyed by host and
 * path, not by route): `x-phase: good` goes to the lab's /ok, `x-phase: fault` to the fault.
 */
const FAULTS = ['connection_refused', 'connection_timeout', 'http_response_timeout', 'destination_unavailable', 'connection_limit_reached', '502', '503', '504'] as const;
type Fault = (typeof FAULTS)[number];

let lab: Lab;
let gw: TestGateway;
let backlogHolder: ChildProcess;
let filler: Socket;

/** A port whose accept queue is full (backlog 0, never accepting, one connection in it): later SYNs are dropped, so connects time out. */
async function fullBacklogPort(): Promise<{ port: number; child: ChildProcess; filler: Socket }> {
  const child = spawn('python3', ['-c', 'import socket,time\ns=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(0); print(s.getsockname()[1], flush=True)\ntime.sleep(60)'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve) => child.stdout!.once('data', (d) => resolve(Number(String(d).trim()))));
  const filler = connect(port, '127.0.0.1');
  await new Promise<void>((r) => filler.once('connect', () => r()));
  return { port, child, filler };
}

function routesFor(fault: Fault, cluster: string, upstreamPath: string): NonNullable<ConfigInput['routes']> {
  const cache = { serveStaleOn: [...FAULTS], maxStale: '1m' };
  return [
    { name: `good-${fault}`, match: { pathPrefix: `/k/${fault}`, headers: { 'x-phase': 'good' } }, cluster: 'good', rewritePrefix: '/ok', cache, retry: { tries: 1 } },
    { name: `fault-${fault}`, match: { pathPrefix: `/k/${fault}`, headers: { 'x-phase': 'fault' } }, cluster, rewritePrefix: upstreamPath, cache, retry: { tries: 1 } },
  ];
}

before(async () => {
  lab = await startLab();
  const backlog = await fullBacklogPort();
  backlogHolder = backlog.child;
  filler = backlog.filler;
  const noWait = { waitForEndpoint: { timeout: '0s' } };
  gw = await startTestGateway({
    clusters: {
      good: { endpoints: [lab.url] },
      refused: { endpoints: [`http://127.0.0.1:${lab.refusedPort}`], ...noWait },
      blackhole: { endpoints: [`http://127.0.0.1:${backlog.port}`], timeouts: { connect: '300ms' }, ...noWait },
      hang: { endpoints: [lab.url], timeouts: { response: '300ms' } },
      drained: { endpoints: [lab.url], ...noWait },
      limited: { endpoints: [lab.url], limits: { maxConcurrent: 1, maxQueued: 0 } },
      app: { endpoints: [lab.url] },
    },
    routes: [
      ...routesFor('connection_refused', 'refused', '/ok'),
      ...routesFor('connection_timeout', 'blackhole', '/ok'),
      ...routesFor('http_response_timeout', 'hang', '/hang'),
      ...routesFor('destination_unavailable', 'drained', '/ok'),
      ...routesFor('connection_limit_reached', 'limited', '/ok'),
      ...routesFor('502', 'app', '/status/502'),
      ...routesFor('503', 'app', '/status/503'),
      ...routesFor('504', 'app', '/status/504'),
      // Holds the limited cluster's one slot.
      { name: 'hold', match: { pathPrefix: '/hold' }, cluster: 'limited', rewritePrefix: '/slow' },
    ],
  });
});

after(async () => {
  filler?.destroy();
  backlogHolder?.kill('SIGKILL');
  await gw?.close();
  await lab?.close();
});

async function get(path: string, phase: 'good' | 'fault'): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const r = await request(`${gw.url.replace(/\/$/, '')}${path}`, { headers: { 'x-phase': phase } });
  return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
}

async function counted(metric: string, labels: Record<string, string>): Promise<number> {
  const m = await gw.registry.getSingleMetric(metric)!.get();
  let n = 0;
  for (const v of m.values) if (Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want)) n += v.value;
  return n;
}

describe('a stale copy answers for every serveStaleOn failure, and says why', () => {
  for (const fault of FAULTS) {
    test(fault, async () => {
      const path = `/k/${fault}`;
      const good = await get(path, 'good');
      assert.equal(good.status, 200);
      assert.match(String(good.headers['cache-status']), /fwd=uri-miss; fwd-status=200; stored/);
      if (fault === 'destination_unavailable') gw.gw.ctx.clusters.get('drained')!.setDraining(lab.url, true);
      let hold: Promise<unknown> | undefined;
      if (fault === 'connection_limit_reached') {
        hold = request(`${gw.url.replace(/\/$/, '')}/hold?ms=1500`).then((r) => r.body.text());
        // The slot is taken once the lab sees the request.
        const deadline = Date.now() + 3000;
        while (gw.gw.ctx.clusters.get('limited')!.admission!.inflight < 1) {
          if (Date.now() > deadline) throw new Error('the holding request never took the slot');
          await new Promise((r) => setTimeout(r, 5));
        }
      }
      const r = await get(path, 'fault');
      await hold;
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
      const line = await gw.logFor(String(r.headers['x-request-id']));
      assert.equal(line.status, 200);
      assert.equal(line.cache, 'stale');
      assert.equal(line.recoveredFrom, fault);
      assert.equal(line.error, undefined, 'the client got a good answer');
      assert.equal(await counted('gatewise_cache_recovered_total', { route: `fault-${fault}`, cause: fault }), 1);
    });
  }
});

test('a failure not listed in serveStaleOn, on a response without stale-if-error, is answered as the failure', async () => {
  const g = await startTestGateway({
    clusters: { good: { endpoints: [lab.url] }, refused: { endpoints: [`http://127.0.0.1:${lab.refusedPort}`], waitForEndpoint: { timeout: '0s' } } },
    routes: [
      { match: { pathPrefix: '/x', headers: { 'x-phase': 'good' } }, cluster: 'good', rewritePrefix: '/ok', cache: { serveStaleOn: ['503'] } },
      { match: { pathPrefix: '/x', headers: { 'x-phase': 'fault' } }, cluster: 'refused', rewritePrefix: '/ok', cache: { serveStaleOn: ['503'] }, retry: { tries: 1 } },
    ],
  });
  try {
    const base = g.url.replace(/\/$/, '');
    assert.equal((await request(`${base}/x`, { headers: { 'x-phase': 'good' } })).statusCode, 200);
    const r = await request(`${base}/x`, { headers: { 'x-phase': 'fault' } });
    await r.body.text();
    assert.equal(r.statusCode, 502);
    assert.match(String(r.headers['proxy-status']), /error=connection_refused/);
    assert.match(String(r.headers['cache-status']), /fwd=stale$/);
  } finally {
    await g.close();
  }
});

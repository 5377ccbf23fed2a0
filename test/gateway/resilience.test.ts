import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Agent, request } from 'undici';
import { OUTLIER_CHANNEL, type OutlierEvent } from '../../src/upstream/outlier.js';
import type { HealthEvent } from '../../src/upstream/health-check.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/until.js';
import { GUARD_MS } from '../helpers/time-bounds.js';

/** Recovery: every failure that can be recovered safely reaches the client as a success. */

const client = new Agent({ keepAliveTimeout: 2000, connections: 64 });
const opened: Array<{ close(): Promise<void> }> = [];
after(async () => {
  for (const o of opened.reverse()) await o.close();
  await client.close();
});

async function lab(opts: Parameters<typeof startLab>[0] = {}): Promise<Lab> {
  const l = await startLab(opts);
  opened.push(l);
  return l;
}

async function gateway(input: Parameters<typeof startTestGateway>[0]): Promise<TestGateway> {
  const g = await startTestGateway(input);
  opened.push(g);
  return g;
}

async function send(url: string, method = 'GET', body?: string) {
  const res = await request(url, { method: method as 'GET', body, dispatcher: client, headers: { accept: 'application/json' } });
  const text = await res.body.text();
  return { status: res.statusCode, text, ps: String(res.headers['proxy-status'] ?? ''), rid: String(res.headers['x-request-id']), retryAfter: res.headers['retry-after'] };
}

describe('a faulty endpoint beside a healthy one', () => {
  // Faults that happen before any response byte: safe to retry for idempotent requests.
  const beforeResponse = [
    '/close',
    '/reset',
    '/status/502',
    '/status/503',
    '/status/504',
    '/garbage',
    '/http09',
    '/invalid-header',
    '/two-content-length',
    '/oversized-headers',
    '/cut-headers',
  ];
  for (const fault of beforeResponse) {
    test(`GET ${fault} on one endpoint → 200 from the other`, async () => {
      const bad = await lab({ fault });
      const good = await lab();
      const gw = await gateway({
        clusters: { c: { endpoints: [bad.url, good.url], balancer: 'round-robin', outlierDetection: { enabled: false } } },
        routes: [{ cluster: 'c' }],
      });
      for (let i = 0; i < 6; i++) {
        const r = await send(`${gw.url}/ok`);
        assert.equal(r.status, 200, `${fault} #${i}: ${r.text}`);
      }
      assert.ok(bad.stats.requests >= 2, 'the faulty endpoint was tried');
      const retried = gw.logs.filter((l) => l.type === 'access' && (l.attempts?.length ?? 0) === 2);
      assert.ok(retried.length >= 2, 'attempts are logged');
      assert.ok(retried.every((l) => l.status === 200 && l.attempts![1]!.status === 200));
    });
  }

  test('GET /hang on one endpoint → 200 from the other when the route retries timeouts', async () => {
    const bad = await lab({ fault: '/hang' });
    const good = await lab();
    const gw = await gateway({
      clusters: { c: { endpoints: [bad.url, good.url], balancer: 'round-robin', outlierDetection: { enabled: false } } },
      routes: [{ cluster: 'c', retry: { on: ['connect-failure', 'reset', 'timeout'], perTryTimeout: '200ms' } }],
    });
    for (let i = 0; i < 4; i++) assert.equal((await send(`${gw.url}/ok`)).status, 200);
    assert.ok(bad.stats.requests >= 1);
  });

  test('an endpoint with an untrusted certificate beside a healthy one → 200 (TLS failed before sending)', async () => {
    const bad = await lab({ tls: true });
    const good = await lab();
    const gw = await gateway({
      clusters: { c: { endpoints: [bad.tlsSelfSignedUrl!, good.url], balancer: 'round-robin', outlierDetection: { enabled: false } } },
      routes: [{ cluster: 'c' }],
    });
    for (let i = 0; i < 4; i++) assert.equal((await send(`${gw.url}/ok`, 'POST', 'x')).status, 200);
    const line = gw.logs.find((l) => l.type === 'access' && l.attempts?.length === 2)!;
    assert.equal(line.attempts![0]!.error, 'tls_certificate_error');
  });

  test('a refused endpoint is retried elsewhere even for POST (the request never left)', async () => {
    const good = await lab();
    const gw = await gateway({
      clusters: { c: { endpoints: [`http://127.0.0.1:${good.refusedPort}`, good.url], balancer: 'round-robin', outlierDetection: { enabled: false } } },
      routes: [{ cluster: 'c' }],
    });
    for (let i = 0; i < 4; i++) {
      const r = await send(`${gw.url}/echo`, 'POST', 'payload');
      assert.equal(r.status, 200, r.text);
      assert.equal(JSON.parse(r.text).bodyBytes, 7);
    }
    const line = gw.logs.find((l) => l.type === 'access' && l.attempts?.length === 2)!;
    assert.equal(line.attempts![0]!.error, 'connection_refused');
  });

  test('POST is not retried after it may have reached the upstream', async () => {
    const bad = await lab({ fault: '/close' });
    const gw = await gateway({ clusters: { c: { endpoints: [bad.url], outlierDetection: { enabled: false } } }, routes: [{ cluster: 'c' }] });
    const r = await send(`${gw.url}/ok`, 'POST', 'x');
    assert.equal(r.status, 502);
    assert.match(r.ps, /error=connection_terminated/);
    assert.equal(bad.stats.requests, 1);
    const problem = JSON.parse(r.text) as { attempts: unknown[] };
    assert.equal(problem.attempts.length, 1);
  });

  test('POST with an Idempotency-Key retries when the route opts in', async () => {
    const bad = await lab({ fault: '/close' });
    const good = await lab();
    const gw = await gateway({
      clusters: { c: { endpoints: [bad.url, good.url], balancer: 'round-robin', outlierDetection: { enabled: false } } },
      routes: [{ cluster: 'c', retry: { idempotencyKey: true } }],
    });
    for (let i = 0; i < 4; i++) {
      const res = await request(`${gw.url}/ok`, { method: 'POST', body: 'x', dispatcher: client, headers: { 'idempotency-key': `k${i}` } });
      assert.equal(res.statusCode, 200);
      await res.body.text();
    }
  });

  test('mid-body faults are never retried: the client sees the cut', async () => {
    const bad = await lab({ fault: '/cut-body' });
    const gw = await gateway({ clusters: { c: { endpoints: [bad.url] } }, routes: [{ cluster: 'c' }] });
    const res = await request(`${gw.url}/x`, { dispatcher: client });
    assert.equal(res.statusCode, 200);
    await assert.rejects(res.body.text());
    assert.equal(bad.stats.requests, 1);
  });

  test('retries stop at the configured tries and the problem lists every attempt', async () => {
    const a = await lab({ fault: '/status/503' });
    const b = await lab({ fault: '/status/503' });
    const gw = await gateway({
      clusters: { c: { endpoints: [a.url, b.url], outlierDetection: { enabled: false } } },
      routes: [{ cluster: 'c', retry: { tries: 2 } }],
    });
    const r = await send(`${gw.url}/ok`);
    assert.equal(r.status, 503, 'the last upstream answer is passed on');
    assert.match(r.ps, /received-status=503/);
    const line = await gw.logFor(r.rid);
    assert.equal(line.attempts!.length, 2);
    assert.notEqual(line.attempts![0]!.endpoint, line.attempts![1]!.endpoint, 'a different endpoint for each try');
  });

  test('the retry budget caps retries under a total outage', async () => {
    const a = await lab({ fault: '/close' });
    const gw = await gateway({
      clusters: { c: { endpoints: [a.url], outlierDetection: { enabled: false }, retryBudget: { ratio: 0.1, minPerSecond: 0 } } },
      routes: [{ cluster: 'c', retry: { tries: 3, backoff: { base: '1ms', max: '2ms' } } }],
    });
    const n = 40;
    for (let i = 0; i < n; i++) assert.equal((await send(`${gw.url}/ok`)).status, 502);
    const upstreamTries = a.stats.requests;
    assert.ok(upstreamTries <= n * 1.1 + 1, `budget held retries to ${upstreamTries - n} for ${n} requests`);
  });
});

describe('health', () => {
  test('passive checks eject a failing endpoint, and return it after the back-off', async () => {
    const bad = await lab({ fault: '/close' });
    const good = await lab();
    const gw = await gateway({
      clusters: {
        c: {
          endpoints: [bad.url, good.url],
          balancer: 'round-robin',
          // Long enough that the first requests fit inside it on a stalling machine; the checks
          // below also hold when it ends early (each is judged against the 'returned' event).
          outlierDetection: { consecutiveGatewayFailures: 2, baseEjection: '4s', maxEjectedPercent: 50 },
          // No slow start: a returned endpoint ramps from a tenth of its weight, and the smooth
          // round-robin keeps its score from before the ejection, so the six requests below may
          // all go elsewhere (CI run of session 15, undici pass). Slow start has its own tests.
          slowStart: '0s',
        },
      },
      routes: [{ cluster: 'c' }],
    });
    // Only this test's endpoint: other gateways of this file publish on the same channel.
    const badPort = `:${new URL(bad.url).port}`;
    const events: OutlierEvent[] = [];
    const listener = (m: unknown): void => {
      const e = m as OutlierEvent;
      if (e.endpoint.endsWith(badPort)) events.push(e);
    };
    const returned = (): boolean => events.some((e) => e.event === 'returned');
    subscribe(OUTLIER_CHANNEL, listener);
    let triedBad = 0;
    try {
      for (let i = 0; i < 8; i++) assert.equal((await send(`${gw.url}/ok`)).status, 200);
      triedBad = bad.stats.requests;
      assert.ok(events.some((e) => e.event === 'ejected'), 'the ejection is announced');
      // Two failures eject it; a third try can only come after a return.
      assert.ok(triedBad <= 3 || returned(), `ejected after 2 failures (tried ${triedBad} times)`);
      // While it is ejected, it gets no traffic. A stalled machine may reach the end of the
      // ejection during these requests: from the 'returned' event on, traffic may go there again,
      // so each request is judged by whether the return had happened when it ended.
      let whileEjected = 0;
      for (let i = 0; i < 10 && !returned(); i++) {
        const before = bad.stats.requests;
        await send(`${gw.url}/ok`);
        if (!returned()) assert.equal(bad.stats.requests, before, 'no traffic while ejected');
        whileEjected++;
      }
      assert.ok(returned() || whileEjected === 10, 'ten requests while ejected, or the return came first');
      // Wait for the return itself (published when the ejection time has passed), not a guess at it.
      for (const until = Date.now() + 30_000; !returned() && Date.now() < until; ) {
        await new Promise((r) => setTimeout(r, 50));
        await send(`${gw.url}/ok`); // returns are noticed as requests pick endpoints
      }
      assert.ok(returned(), 'returned after the back-off');
    } finally {
      unsubscribe(OUTLIER_CHANNEL, listener);
    }
    for (let i = 0; i < 6; i++) assert.equal((await send(`${gw.url}/ok`)).status, 200);
    assert.ok(bad.stats.requests > triedBad, 'returned on its own after the back-off');
  });

  test('active checks take an endpoint out and back; none healthy and no wait for an endpoint → fast 503 destination_unavailable', async () => {
    const a = await lab();
    const gw = await gateway({
      // waitForEndpoint 0s: answer at once (the default holds the request up to 3 s: test/gateway/wait-for-endpoint.test.ts).
      clusters: { c: { endpoints: [a.url], healthCheck: { path: '/ok', interval: '100ms', timeout: '200ms', rise: 1, fall: 1 }, waitForEndpoint: { timeout: '0s' } } },
      routes: [{ cluster: 'c' }],
    });
    assert.equal((await send(`${gw.url}/ok`)).status, 200);
    const port = a.port;
    // The endpoint's health changes are waited for on their channel (an event, not a sleep).
    const turned = (to: string): Promise<void> =>
      new Promise((resolve) => {
        const on = (m: unknown): void => {
          if ((m as HealthEvent).endpoint === `127.0.0.1:${port}` && (m as HealthEvent).to === to) {
            unsubscribe('gatewise:upstream:health', on);
            resolve();
          }
        };
        subscribe('gatewise:upstream:health', on);
      });
    const down = turned('unhealthy');
    await a.close();
    await down;
    const t0 = Date.now();
    const r = await send(`${gw.url}/ok`);
    assert.equal(r.status, 503);
    assert.match(r.ps, /error=destination_unavailable/);
    assert.ok(r.retryAfter, 'Retry-After is set');
    assert.ok(Date.now() - t0 < 2500, 'never a hang'); // the hold it skips is 3 s; slack for a stalling machine
    assert.equal((await gw.logFor(r.rid)).error, 'destination_unavailable');
    const up = turned('healthy');
    await lab({ port });
    await up;
    assert.equal((await send(`${gw.url}/ok`)).status, 200);
  });
});

describe("the gateway's own checks never cause the outage (issue 15)", () => {
  test('a path answering 503 does not eject the last live endpoint while its peer is down; both verdicts are logged with their reason', async () => {
    const live = await lab();
    const { subscribe, unsubscribe } = await import('node:diagnostics_channel');
    let downSeen!: () => void;
    const down = new Promise<void>((r) => (downSeen = r));
    const onHealth = (m: unknown): void => {
      if ((m as { to: string }).to === 'unhealthy') downSeen();
    };
    subscribe('gatewise:upstream:health', onHealth);
    try {
      const gw = await gateway({
        clusters: { c: { endpoints: [`http://127.0.0.1:${live.refusedPort}`, live.url], healthCheck: { path: '/ok', interval: '100ms', timeout: '200ms', rise: 1, fall: 1 } } },
        routes: [{ cluster: 'c' }],
      });
      await down; // the dead endpoint is out by its health check (an event, not a sleep)
      for (let i = 0; i < 3; i++) {
        const r = await send(`${gw.url}/status/503`);
        assert.equal(r.status, 503, 'the application answer is passed on');
      }
      const ok = await send(`${gw.url}/ok`);
      assert.equal(ok.status, 200, `the live endpoint still serves: ${ok.text}`);
      const health = gw.logs.find((l) => l.type === 'health' && l.to === 'unhealthy');
      assert.ok(health, 'the health verdict is logged');
      assert.match(String(health.reason), /ECONNREFUSED|refused/i);
      assert.ok(!gw.logs.some((l) => l.type === 'outlier' && l.event === 'ejected'), 'nothing ejected');
      const spared = gw.logs.find((l) => l.type === 'outlier' && l.event === 'spared');
      assert.ok(spared, 'the skipped ejection is logged');
      assert.match(String(spared.reason), /kept in/);
    } finally {
      unsubscribe('gatewise:upstream:health', onHealth);
    }
  });
});

describe('overload', () => {
  test('capacity N keeps the upstream at N under 10× load; the excess gets 503s from admission, not 502/504', async () => {
    const capacity = 4;
    const up = await lab({ capacity, queue: 0 });
    const gw = await gateway({
      clusters: { c: { endpoints: [up.url], limits: { maxConcurrent: capacity, maxQueued: capacity, queueTimeout: '100ms' } } },
      routes: [{ cluster: 'c', retry: { tries: 1 } }],
    });
    const workMs = 50;
    const durationMs = 2000;
    const counts = new Map<number, number>();
    // Clients, gateway and upstream share one process: measure after a warm-up, once the JIT settled.
    const measureFrom = Date.now() + 700;
    const stopAt = measureFrom + durationMs;
    const worker = async () => {
      while (Date.now() < stopAt) {
        const t0 = Date.now();
        const r = await send(`${gw.url}/work?ms=${workMs}`);
        if (t0 < measureFrom) {
          if (r.status === 503) await new Promise((res) => setTimeout(res, 50));
          continue;
        }
        counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
        if (r.status === 503) {
          assert.match(r.ps, /error=connection_limit_reached/);
          assert.equal(r.retryAfter, '1');
          // Clients, gateway and upstream share this process: a shed client pauses
          // briefly so its loop does not starve the others of CPU.
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    };
    await Promise.all(Array.from({ length: capacity * 10 }, worker));
    // What is asserted is behaviour, not speed (a timed throughput check failed whenever the
    // machine was busy; speed is for bench/): requests were served, the upstream was kept at
    // its capacity and never above it, and the excess was shed by admission with 503s.
    assert.ok((counts.get(200) ?? 0) > 0, 'requests were served');
    assert.equal(counts.get(502) ?? 0, 0);
    assert.equal(counts.get(504) ?? 0, 0);
    assert.ok((counts.get(503) ?? 0) > 0, 'the excess was shed');
    assert.equal(up.stats.work.peak, capacity, `the upstream was kept at its capacity of ${capacity}, never above (peak ${up.stats.work.peak})`);
    assert.equal(up.stats.work.rejected, 0, 'the upstream never had to refuse');
  });
});

describe('the keep-alive race', () => {
  test('an upstream with a short, unadvertised keep-alive timeout: GET and POST with random gaps, zero errors', async () => {
    const up = await lab({ keepAliveTimeoutMs: 150, advertiseKeepAlive: false });
    const gw = await gateway({ clusters: { c: { endpoints: [up.url], keepAlive: '10s' } }, routes: [{ cluster: 'c' }] });
    const failures: string[] = [];
    const worker = async (w: number) => {
      for (let i = 0; i < 25; i++) {
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 100));
        const method = (i + w) % 2 === 0 ? 'GET' : 'POST';
        const r = await send(`${gw.url}/echo`, method, method === 'POST' ? 'body' : undefined);
        if (r.status !== 200) failures.push(`${method} ${r.status} ${r.ps}`);
      }
    };
    await Promise.all([0, 1, 2, 3].map(worker));
    assert.deepEqual(failures, []);
    // The idle connections outlive the upstream's 150 ms and their closes are seen (under load
    // the random gaps alone may never leave one idle that long). It slept 400 ms and then
    // checked, which a loaded machine could run before the closes were read; the pool tells of
    // no event, so its learned value is polled, bounded by a failure guard.
    const cluster = gw.gw.ctx.clusters.get('c')!;
    assert.ok(await until(() => cluster.endpoints[0]!.pool.learnedIdleMs <= 400, GUARD_MS), `learned the idle timeout (${cluster.endpoints[0]!.pool.learnedIdleMs} ms)`);
  });
});

describe('rolling restarts', () => {
  test('three endpoints restarted one at a time under steady GET and POST load: zero failed requests', async () => {
    const labs = [await lab(), await lab(), await lab()];
    const gw = await gateway({
      clusters: {
        c: {
          endpoints: labs.map((l) => l.url),
          healthCheck: { path: '/ok', interval: '100ms', timeout: '300ms', rise: 2, fall: 1 },
          slowStart: '200ms',
        },
      },
      routes: [{ cluster: 'c' }],
    });
    const cluster = gw.gw.ctx.clusters.get('c')!;
    let stop = false;
    let done = 0;
    const failures: string[] = [];
    const worker = async (w: number) => {
      for (let i = 0; !stop && i < 100_000; i++) {
        const method = (i + w) % 2 === 0 ? 'GET' : 'POST';
        try {
          const r = await send(`${gw.url}/slow?ms=5`, method, method === 'POST' ? 'payload' : undefined);
          if (r.status !== 200) failures.push(`${method} ${r.status} ${r.ps}`);
        } catch (err) {
          failures.push(`${method} client error ${(err as NodeJS.ErrnoException).code}`);
        }
        done++;
      }
    };
    const load = Promise.all([0, 1, 2, 3].map(worker));
    // Requests completed while each endpoint was down and back (load, not speed: counts, not rates).
    const servedDuring: number[] = [];
    for (let i = 0; i < labs.length; i++) {
      const before = done;
      const old = labs[i]!;
      const ep = cluster.endpoints[i]!;
      assert.ok(cluster.setDraining(old.url, true));
      for (let t = 0; t < 200 && ep.inflight > 0; t++) await new Promise((r) => setTimeout(r, 10));
      await old.close();
      await new Promise((r) => setTimeout(r, 150));
      labs[i] = await lab({ port: old.port });
      // Wait for the active check to see it up, then let traffic back in.
      for (let t = 0; t < 100 && ep.health !== 'healthy'; t++) await new Promise((r) => setTimeout(r, 20));
      cluster.setDraining(old.url, false);
      await new Promise((r) => setTimeout(r, 200));
      servedDuring.push(done - before);
    }
    stop = true;
    await load;
    assert.deepEqual(failures, []);
    assert.ok(servedDuring.every((n) => n > 0), `the load kept running through every restart (${servedDuring.join(', ')} requests)`);
    for (const l of labs) assert.ok(l.stats.requests > 0, 'every restarted endpoint serves again');
  });
});

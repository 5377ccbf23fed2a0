import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { Agent, request } from 'undici';
import { startLab } from '../../src/lab/index.js';
import { HEALTH_CHANNEL, type HealthEvent } from '../../src/upstream/health-check.js';
import { ENDPOINT_WAIT_CHANNEL, type EndpointWaitEvent } from '../../src/upstream/endpoint-wait.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * Every endpoint down for a moment (a restart, a rolling deploy of a single endpoint): the
 * gateway holds requests (cluster `waitForEndpoint`) and wakes them on the event that brings
 * an endpoint back, instead of answering 502/503 (issue 15).
 */

const opened: Array<{ close(): Promise<void> }> = [];
after(async () => {
  for (const o of opened.reverse()) await o.close();
});

async function gateway(input: Parameters<typeof startTestGateway>[0]): Promise<TestGateway> {
  const g = await startTestGateway(input);
  opened.push(g);
  return g;
}

/** The events of the endpoint wait while `fn` runs. */
async function withWaitEvents<T>(fn: (events: EndpointWaitEvent[]) => Promise<T>): Promise<T> {
  const events: EndpointWaitEvent[] = [];
  const on = (m: unknown): void => void events.push(m as EndpointWaitEvent);
  subscribe(ENDPOINT_WAIT_CHANNEL, on);
  try {
    return await fn(events);
  } finally {
    unsubscribe(ENDPOINT_WAIT_CHANNEL, on);
  }
}

/** The next endpoint-wait event of this kind (synchronise on what the gateway did, not on time). */
function nextWaitEvent(kind: EndpointWaitEvent['event']): Promise<EndpointWaitEvent> {
  return new Promise((resolve) => {
    const on = (m: unknown): void => {
      const e = m as EndpointWaitEvent;
      if (e.event !== kind) return;
      unsubscribe(ENDPOINT_WAIT_CHANNEL, on);
      resolve(e);
    };
    subscribe(ENDPOINT_WAIT_CHANNEL, on);
  });
}

/** A small origin that can be stopped and started again on the same port. */
function origin(): Server {
  return createServer((req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => {
      res.setHeader('content-type', 'text/plain');
      res.end(`${req.method} ${n}`);
    });
  });
}

describe('holding requests while every endpoint is down (issue 15)', () => {
  test('a single endpoint restarted under GET and POST load (seeded 100–800 ms down, three restarts): zero client errors for GET and POST, held requests wake on the reconnect', async () => {
    await seededRun('single endpoint restart', async (rand) => {
      const server = origin();
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const port = (server.address() as { port: number }).port;
      const gw = await gateway({ clusters: { c: { endpoints: [`http://127.0.0.1:${port}`] } }, routes: [{ cluster: 'c' }] });
      const client = new Agent({ connections: 16, keepAliveTimeout: 1000 });
      const downs = [between(rand, 100, 800), between(rand, 100, 800), between(rand, 100, 800)];
      const gaps = Array.from({ length: 64 }, () => between(rand, 0, 15));
      try {
      await withWaitEvents(async (events) => {
        const errors: Record<'GET' | 'POST', string[]> = { GET: [], POST: [] };
        const done: Record<'GET' | 'POST', number> = { GET: 0, POST: 0 };
        let stop = false;
        let completed = 0;
        let onCompleted: (() => void) | undefined;
        const worker = async (w: number): Promise<void> => {
          for (let i = 0; !stop; i++) {
            const method = (w + i) % 3 === 0 ? 'POST' : 'GET';
            try {
              const res = await request(`${gw.url}/x`, { method, body: method === 'POST' ? 'abc' : undefined, dispatcher: client });
              const text = await res.body.text();
              if (res.statusCode !== 200) errors[method].push(`${res.statusCode} ${String(res.headers['proxy-status'])}`);
              else assert.equal(text, `${method} ${method === 'POST' ? 3 : 0}`);
            } catch (err) {
              errors[method].push(`client error ${(err as Error).message}`);
            }
            done[method]++;
            completed++;
            onCompleted?.();
            const gap = gaps[(w * 7 + i) % gaps.length]!;
            if (gap > 0) await new Promise((r) => setTimeout(r, gap));
          }
        };
        /** Resolves once `n` more requests have completed (synchronise on traffic, not on time). */
        const requestsDone = (n: number): Promise<void> => {
          const target = completed + n;
          return new Promise((resolve) => {
            onCompleted = () => {
              if (completed >= target) {
                onCompleted = undefined;
                resolve();
              }
            };
          });
        };
        const workers = Array.from({ length: 4 }, (_, w) => worker(w));
        await requestsDone(20);
        for (const downMs of downs) {
          server.close();
          server.closeIdleConnections();
          // The outage itself: the upstream is gone for this long (what is tested is that nobody notices).
          await new Promise((r) => setTimeout(r, downMs));
          server.listen(port, '127.0.0.1');
          await once(server, 'listening');
          await requestsDone(20);
        }
        stop = true;
        await Promise.all(workers);
        const held = events.filter((e) => e.event === 'back' && e.waiting > 0);
        const holds = events.filter((e) => e.event === 'held').length;
        console.log(
          `restart family (down ${downs.join(', ')} ms): ${done.GET} GET, ${done.POST} POST; errors GET ${errors.GET.length}, POST ${errors.POST.length}; ` +
            `${holds} holds, ${held.length} wake-ups of held requests (${held.map((e) => e.waiting).join(', ')} held)`,
        );
        assert.deepEqual(errors.GET, [], 'zero client errors for GET');
        // POSTs never go on a reused connection (the keep-alive race rule), so a stopping origin
        // cannot lose one: zero errors for POST as well.
        assert.deepEqual(errors.POST, [], 'zero client errors for POST');
        assert.ok(held.length >= 1, `requests were held and woken by the reconnect: ${JSON.stringify(events)}`);
        assert.ok(held.every((e) => e.reason === 'connect'));
      });
      } finally {
        server.close();
        server.closeAllConnections();
        await client.close();
      }
    });
  });

  test('a held request wakes on the undrain that brings the endpoint back, not at the end of its wait', async () => {
    const up = await startLab();
    opened.push(up);
    const gw = await gateway({ clusters: { c: { endpoints: [up.url], waitForEndpoint: { timeout: '5s' } } }, routes: [{ cluster: 'c' }] });
    const cluster = gw.gw.ctx.clusters.get('c')!;
    cluster.setDraining(up.url, true);
    await withWaitEvents(async (events) => {
      const t0 = performance.now();
      const isHeld = nextWaitEvent('held');
      const pending = request(`${gw.url}/ok`);
      // Synchronise on the gateway holding it (the pick phase found nothing), then bring the endpoint back.
      await isHeld;
      cluster.setDraining(up.url, false);
      const res = await pending;
      await res.body.text();
      const ms = performance.now() - t0;
      assert.equal(res.statusCode, 200);
      assert.ok(ms < 1000, `woken by the undrain (${Math.round(ms)} ms), not after the 5 s wait`);
      assert.deepEqual(events.map((e) => [e.event, e.reason, e.waiting]), [['held', 'every endpoint is down', 1], ['back', 'undrain', 1]]);
    });
  });

  test('every endpoint failing its health checks: a request is held and answered when a health check brings one back', async () => {
    const up = await startLab();
    const port = up.port;
    const gw = await gateway({
      clusters: { c: { endpoints: [up.url], healthCheck: { path: '/ok', interval: '50ms', timeout: '200ms', rise: 1, fall: 1 }, waitForEndpoint: { timeout: '5s' } } },
      routes: [{ cluster: 'c' }],
    });
    const health = (to: string): Promise<void> =>
      new Promise((resolve) => {
        const on = (m: unknown): void => {
          if ((m as HealthEvent).to !== to) return;
          unsubscribe(HEALTH_CHANNEL, on);
          resolve();
        };
        subscribe(HEALTH_CHANNEL, on);
      });
    const down = health('unhealthy');
    await up.close();
    await down;
    await withWaitEvents(async (events) => {
      const isHeld = nextWaitEvent('held');
      const pending = request(`${gw.url}/ok`);
      await isHeld;
      const back = await startLab({ port });
      opened.push(back);
      const res = await pending;
      await res.body.text();
      assert.equal(res.statusCode, 200);
      assert.deepEqual(events.filter((e) => e.event === 'back').map((e) => e.reason), ['health']);
    });
  });

  test('the wait is bounded: a dead endpoint answers 502 connection_refused after the wait; 0s answers at once; past maxWaiting at once; a client that leaves is let go', async () => {
    const up = await startLab();
    opened.push(up);
    const dead = `http://127.0.0.1:${up.refusedPort}`;
    const gw = await gateway({
      clusters: {
        held: { endpoints: [dead], waitForEndpoint: { timeout: '2s' } }, // long, so that a stalling machine still tells held from at once
        now: { endpoints: [dead], waitForEndpoint: { timeout: '0s' } },
        one: { endpoints: [dead], waitForEndpoint: { timeout: '5s', maxWaiting: 1 } },
      },
      routes: [
        { match: { pathPrefix: '/held' }, cluster: 'held' },
        { match: { pathPrefix: '/now' }, cluster: 'now' },
        { match: { pathPrefix: '/one' }, cluster: 'one' },
      ],
    });
    const timed = async (path: string): Promise<{ status: number; ps: string; ms: number }> => {
      const t0 = performance.now();
      const res = await request(`${gw.url}${path}`);
      await res.body.text();
      return { status: res.statusCode, ps: String(res.headers['proxy-status']), ms: performance.now() - t0 };
    };
    const held = await timed('/held');
    assert.equal(held.status, 502);
    assert.match(held.ps, /error=connection_refused/);
    assert.ok(held.ms >= 1950 && held.ms < 10_000, `held for the wait (${Math.round(held.ms)} ms)`);
    const now = await timed('/now');
    assert.equal(now.status, 502);
    assert.ok(now.ms < 1900, `no wait configured: answered at once (${Math.round(now.ms)} ms)`);

    // maxWaiting 1: a first request is held; a second is answered at once.
    const one = gw.gw.ctx.clusters.get('one')!;
    const ac = new AbortController();
    const isHeld = nextWaitEvent('held');
    const first = request(`${gw.url}/one`, { signal: ac.signal }).catch((e: Error) => e);
    await isHeld;
    const second = await timed('/one');
    assert.equal(second.status, 502);
    assert.ok(second.ms < 4000, `the hold is full: answered at once (${Math.round(second.ms)} ms)`);
    // The client of the held request leaves: it is let go, not kept for 5 s.
    const left = nextWaitEvent('left');
    ac.abort();
    await first;
    assert.equal((await left).waiting, 0);
    assert.equal(one.wait!.waiting, 0);
  });
});

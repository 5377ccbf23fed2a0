import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lookup } from 'node:dns';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Endpoint } from '../../src/upstream/endpoint.js';
import { HEALTH_CHANNEL, HealthChecker, statusExpected, type HealthCheckOptions, type HealthEvent } from '../../src/upstream/health-check.js';

function endpoint(port: number): Endpoint {
  return new Endpoint({ url: `http://127.0.0.1:${port}`, weight: 1, connectTimeoutMs: 1000, headersTimeoutMs: 1000, bodyTimeoutMs: 1000, keepAliveMs: 1000, maxResponseHeaderSize: 16384, tls: { verify: true }, lookup });
}

function listen(server: Server | ReturnType<typeof createTcpServer>): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

/** A port that was just bound and released: connecting to it is refused. */
async function closedPort(): Promise<number> {
  const s = createTcpServer();
  const port = await listen(s);
  await new Promise((r) => s.close(r));
  return port;
}

const HTTP: HealthCheckOptions = { kind: 'http', path: '/healthz', expectStatuses: [[200, 399]], intervalMs: 20, jitter: 0.2, timeoutMs: 500, rise: 2, fall: 2, cluster: 'api' };

let events: HealthEvent[];
const waiters = new Set<() => void>();
const listener = (m: unknown): void => {
  events.push(m as HealthEvent);
  for (const w of waiters) w();
};

/** Resolves when an event matching `pred` has been published (bounded: fails after 3 s). */
async function eventWhere(pred: (e: HealthEvent) => boolean): Promise<HealthEvent> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const found = events.find(pred);
    if (found) return found;
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`no such health event; saw ${JSON.stringify(events)}`);
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, left);
      function done(): void {
        clearTimeout(t);
        waiters.delete(done);
        resolve();
      }
      waiters.add(done);
    });
  }
}

describe('active health checks', () => {
  let okServer: Server;
  let failServer: Server;
  let toggleServer: Server;
  let okPort: number;
  let failPort: number;
  let togglePort: number;
  let toggleStatus = 200;
  let toggleServed = new Map<number, number>();
  let okRequests: Array<{ url: string | undefined; host: string | undefined; ua: string | undefined }> = [];
  let checkers: HealthChecker[] = [];

  before(async () => {
    okServer = createServer((req, res) => {
      okRequests.push({ url: req.url, host: req.headers.host, ua: req.headers['user-agent'] });
      res.end('ok');
    });
    failServer = createServer((_req, res) => {
      res.statusCode = 500;
      res.end('broken');
    });
    toggleServer = createServer((_req, res) => {
      toggleServed.set(toggleStatus, (toggleServed.get(toggleStatus) ?? 0) + 1);
      res.statusCode = toggleStatus;
      res.end();
    });
    [okPort, failPort, togglePort] = await Promise.all([listen(okServer), listen(failServer), listen(toggleServer)]);
  });
  after(async () => {
    for (const s of [okServer, failServer, toggleServer]) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  });
  beforeEach(() => {
    events = [];
    okRequests = [];
    checkers = [];
    subscribe(HEALTH_CHANNEL, listener);
  });
  afterEach(async () => {
    await Promise.all(checkers.map((c) => c.stop()));
    unsubscribe(HEALTH_CHANNEL, listener);
  });

  function checker(eps: Endpoint[], opts: Partial<HealthCheckOptions> = {}): HealthChecker {
    const c = new HealthChecker(eps, { ...HTTP, ...opts });
    checkers.push(c);
    c.start();
    return c;
  }

  test('http: the first result decides at once — 200 healthy; 500 and a refused port unhealthy', async () => {
    const ok = endpoint(okPort);
    const failing = endpoint(failPort);
    const refused = endpoint(await closedPort());
    checker([ok, failing, refused]);
    const up = await eventWhere((e) => e.endpoint === ok.nextHop);
    const down = await eventWhere((e) => e.endpoint === failing.nextHop);
    const gone = await eventWhere((e) => e.endpoint === refused.nextHop);
    assert.deepEqual(up, { endpoint: ok.nextHop, cluster: 'api', from: 'unknown', to: 'healthy', reason: 'status 200' });
    assert.deepEqual(down, { endpoint: failing.nextHop, cluster: 'api', from: 'unknown', to: 'unhealthy', reason: 'status 500' });
    assert.equal(gone.to, 'unhealthy');
    assert.equal(gone.reason, 'ECONNREFUSED');
    assert.deepEqual([ok.health, failing.health, refused.health], ['healthy', 'unhealthy', 'unhealthy']);
    assert.equal(ok.readyAt, 0, 'unknown → healthy at startup is not a slow start');
    assert.equal(okRequests[0]?.url, '/healthz');
    assert.equal(okRequests[0]?.ua, 'gatewise-health-check');
  });

  test('http: the Host header can be set; expected statuses are single codes or ranges', async () => {
    const ok = endpoint(okPort);
    checker([ok], { host: 'internal.example', path: '/status?deep=1' });
    await eventWhere((e) => e.to === 'healthy');
    assert.equal(okRequests[0]?.host, 'internal.example');
    assert.equal(okRequests[0]?.url, '/status?deep=1');
    assert.equal(statusExpected(204, [200, [202, 299]]), true);
    assert.equal(statusExpected(201, [200, [202, 299]]), false);
    assert.equal(statusExpected(500, [[200, 399]]), false);
  });

  test('http: fall failures make a healthy endpoint unhealthy; rise passes bring it back and start its slow start', async () => {
    toggleStatus = 200;
    const ep = endpoint(togglePort);
    checker([ep], { rise: 3, fall: 2 });
    await eventWhere((e) => e.to === 'healthy');
    toggleServed = new Map();
    toggleStatus = 503;
    const down = await eventWhere((e) => e.to === 'unhealthy');
    assert.equal(down.from, 'healthy');
    assert.equal(down.reason, 'status 503');
    assert.ok(toggleServed.get(503)! >= 2, `after two failures, not one: ${toggleServed.get(503)}`);
    toggleServed = new Map();
    toggleStatus = 200;
    const t1 = Date.now();
    const back = await eventWhere((e) => e.from === 'unhealthy' && e.to === 'healthy');
    assert.ok(toggleServed.get(200)! >= 3, `after three passes, not one: ${toggleServed.get(200)}`);
    assert.equal(back.reason, 'status 200');
    assert.ok(ep.readyAt >= t1 && ep.readyAt <= Date.now(), 'readyAt set for slow start');
    assert.equal(events.length, 3, 'one event per change, none per check');
  });

  test('http: a server that does not answer in time fails the check as a timeout', async () => {
    const silent = createServer(() => {
      /* never answers */
    });
    const port = await listen(silent);
    try {
      const ep = endpoint(port);
      checker([ep], { timeoutMs: 100 });
      const ev = await eventWhere((e) => e.to === 'unhealthy');
      assert.equal(ev.reason, 'timeout');
    } finally {
      silent.closeAllConnections();
      await new Promise((r) => silent.close(r));
    }
  });

  test('tcp: a listening port is healthy, a closed one unhealthy', async () => {
    const tcp = createTcpServer((s) => s.destroy());
    const port = await listen(tcp);
    try {
      const open = endpoint(port);
      const closed = endpoint(await closedPort());
      checker([open, closed], { kind: 'tcp' });
      assert.equal((await eventWhere((e) => e.endpoint === open.nextHop)).reason, 'connected');
      assert.equal((await eventWhere((e) => e.endpoint === closed.nextHop)).reason, 'ECONNREFUSED');
      assert.equal(open.health, 'healthy');
      assert.equal(closed.health, 'unhealthy');
    } finally {
      await new Promise((r) => tcp.close(r));
    }
  });

  test('stop() ends all checking', async () => {
    const ep = endpoint(okPort);
    const c = checker([ep]);
    await eventWhere((e) => e.to === 'healthy');
    await c.stop();
    const seen = okRequests.length;
    await sleep(100);
    assert.equal(okRequests.length, seen, 'no checks after stop');
    await c.stop(); // idempotent
  });
});

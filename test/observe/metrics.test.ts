import { test } from 'node:test';
import { sumOf } from '../helpers/metrics-text.js';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { Writable } from 'node:stream';
import { ProxyAgent, request } from 'undici';
import { validateConfig } from '../../src/config/load.js';
import { startRuntime } from '../../src/cli/runtime.js';
import { startLab } from '../../src/lab/index.js';
import { createLogger } from '../../src/observe/access-log.js';
import { attachMetrics } from '../../src/observe/metrics.js';

const doc = readFileSync(new URL('../../../docs/metrics.md', import.meta.url), 'utf8');

/** Metric names in the first column of docs/metrics.md's table. */
function documented(): string[] {
  return [...doc.matchAll(/^\| `(gatewise_[a-z_]+)` \|/gm)].map((m) => m[1]!);
}

test('docs/metrics.md lists exactly the metrics Gatewise registers (process metrics aside)', async () => {
  const m = attachMetrics();
  try {
    const names = (await m.registry.getMetricsAsJSON()).map((x) => x.name).sort();
    assert.deepEqual(documented().sort(), names);
  } finally {
    m.detach();
  }
});

test('every documented metric is moved by traffic in a test: named in a movement assertion (moved(…) or sum(…)) of this file or metrics-movement.test.ts', () => {
  const sources = ['metrics.test.ts', 'metrics-movement.test.ts'].map((f) => readFileSync(new URL(`../../../test/observe/${f}`, import.meta.url), 'utf8')).join('\n');
  const asserted = new Set([...sources.matchAll(/(?:moved|sum)\(\s*(?:[a-zA-Z]+,\s*)?'(gatewise_[a-z_]+?)(?:_count|_sum|_bucket)?'/g)].map((m) => m[1]!));
  const missing = documented().filter((n) => !asserted.has(n));
  assert.deepEqual(missing, [], `documented metrics no test moves: ${missing.join(', ')}`);
});

/** A port that refuses connections (bound, then closed). */
async function refusedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const sum = sumOf;

test('the metrics move with the traffic that should move them, on both faces', async () => {
  const lab = await startLab();
  const dead = await refusedPort();
  const lines: string[] = [];
  const logger = createLogger({ destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
  const config = validateConfig({
    listeners: [{ port: 0 }],
    admin: { port: 0 },
    clusters: {
      app: {
        endpoints: [lab.url, `http://127.0.0.1:${dead}`],
        balancer: 'round-robin',
        outlierDetection: { consecutiveGatewayFailures: 1, maxEjectedPercent: 50 },
        limits: { maxConcurrent: 100 },
      },
      // Active checks on their own cluster: their first verdict comes at once, and would keep
      // the traffic above from ever trying the dead endpoint.
      checked: { endpoints: [`http://127.0.0.1:${dead}`], healthCheck: { path: '/ok', interval: '100ms' } },
    },
    routes: [{ match: { pathPrefix: '/checked/' }, cluster: 'checked' }, { cluster: 'app' }],
    forward: { listeners: [{ address: '127.0.0.1', port: 0 }], auth: { required: false }, rules: { allowPrivate: true, connectPorts: ['1-65535'] } },
  });
  const rt = await startRuntime(config, { logger, probeUpstreams: false });
  try {
    const parsed = lines.map((l) => JSON.parse(l) as { event?: string; url?: string; listeners?: Array<{ address: string; port: number }> });
    const admin = parsed.find((l) => l.event === 'admin')!.url!;
    const fwd = parsed.find((l) => l.event === 'forward-ready')!.listeners![0]!;
    const scrape = async (): Promise<string> => (await request(`${admin}/metrics`)).body.text();
    const gw = rt.gateway!.addresses()[0]!.url;
    const before = await scrape();
    // Reverse: some answers, and tries at the dead endpoint (refused: retried on the live one, and ejected).
    for (let i = 0; i < 6; i++) await (await request(`${gw}/ok`)).body.text();
    // Forward: a request through the proxy to the lab.
    const { subscribe, unsubscribe } = await import('node:diagnostics_channel');
    // The tunnel's record comes when it closes: wait for it (the event, not a time).
    const forwardFinished = new Promise<void>((resolve) => {
      const onEnd = (m: unknown): void => {
        if ((m as { face: string }).face !== 'forward') return;
        unsubscribe('gatewise:request:end', onEnd);
        resolve();
      };
      subscribe('gatewise:request:end', onEnd);
    });
    const proxy = new ProxyAgent(`http://127.0.0.1:${fwd.port}`);
    const viaProxy = await request(`${lab.url}/ok`, { dispatcher: proxy });
    assert.equal(viaProxy.statusCode, 200);
    await viaProxy.body.text();
    await proxy.close();
    await forwardFinished;
    // Wait for the health check to mark the dead endpoint (an event, published on its channel).
    await new Promise<void>((resolve) => {
      const check = (): void => {
        const s = (rt.gateway!.ctx.clusters.get('checked')!.endpoints.find((e) => e.nextHop.endsWith(`:${dead}`))!).health;
        if (s === 'unhealthy') {
          unsubscribe('gatewise:upstream:health', check);
          resolve();
        }
      };
      subscribe('gatewise:upstream:health', check);
      check();
    });
    const after = await scrape();
    const moved = (name: string, labels: Record<string, string> = {}): void => {
      assert.ok(sum(after, name, labels) > sum(before, name, labels), `${name} ${JSON.stringify(labels)} moved (${sum(before, name, labels)} → ${sum(after, name, labels)})`);
    };
    moved('gatewise_requests_total', { face: 'reverse', status: '200' });
    moved('gatewise_requests_total', { face: 'forward', status: '200' });
    moved('gatewise_bytes_total', { face: 'reverse', direction: 'down' });
    moved('gatewise_bytes_total', { face: 'forward', direction: 'up' });
    moved('gatewise_upstream_attempts_total', { cluster: 'app', error: 'connection_refused' });
    moved('gatewise_upstream_attempts_total', { cluster: 'app', error: '' });
    moved('gatewise_upstream_retries_total', { cluster: 'app' });
    moved('gatewise_forward_requests_total', { pool: '' });
    moved('gatewise_request_duration_seconds_count', { face: 'reverse' });
    moved('gatewise_request_duration_seconds_count', { face: 'forward' });
    moved('gatewise_upstream_connect_seconds_count', { cluster: 'app' });
    moved('gatewise_upstream_response_head_seconds_count', { cluster: 'app' });
    moved('gatewise_endpoint_outlier_events_total', { cluster: 'app', event: 'ejected' });
    // The first check runs at start (before the first scrape): counted once.
    assert.equal(sum(after, 'gatewise_endpoint_health_changes_total', { cluster: 'checked', to: 'unhealthy' }), 1);
    assert.equal(sum(after, 'gatewise_endpoint_state', { cluster: 'app', state: 'unknown' }), 1, 'the live endpoint: no active check, unknown');
    assert.equal(sum(after, 'gatewise_endpoint_state', { cluster: 'app', state: 'ejected' }), 1, 'the dead one ejected');
    assert.equal(sum(after, 'gatewise_endpoint_state', { cluster: 'checked', state: 'unhealthy' }), 1);
    assert.equal(sum(after, 'gatewise_endpoint_state', { cluster: 'app' }), 2, 'one state per endpoint');
    assert.equal(sum(after, 'gatewise_admission_limit', { cluster: 'app' }), 100);
    assert.ok(after.includes('gatewise_admission_queued{cluster="app"} 0'));
    assert.ok(after.includes('gatewise_endpoint_inflight{cluster="app"'));
    // No label carries a user or a destination (bounded cardinality).
    assert.ok(!after.includes(new URL(lab.url).host.split(':')[1]! + '/ok'));
  } finally {
    await rt.close();
    await lab.close();
  }
});

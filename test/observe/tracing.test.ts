import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { request } from 'undici';
import { validateConfig } from '../../src/config/load.js';
import { Gateway } from '../../src/gateway/server.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { parentFrom, startTracing, type Tracing } from '../../src/observe/tracing.js';
import type { BalancerFactory } from '../../src/upstream/balancers/balancer.js';
import { closedPort } from '../helpers/admin-stack.js';
import { seededRandom } from '../helpers/seeded.js';
import { PASSWORD, USER, startOrigin, startTestProxy, waitFor } from '../forward/helpers.js';
import { ProxyAgent } from 'undici';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';

/** A raw upgrade request through `url`; resolves with the head the client got, after the connection closes. */
async function rawUpgrade(url: string, path: string, traceparent?: string): Promise<string> {
  const u = new URL(url);
  const sock = connect(Number(u.port), u.hostname);
  await once(sock, 'connect');
  sock.write(`GET ${path} HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${traceparent ? `traceparent: ${traceparent}\r\n` : ''}\r\n`);
  let got = '';
  sock.on('data', (d: Buffer) => {
    got += d.toString('latin1');
    if (got.startsWith('HTTP/1.1 101') && got.includes('\r\n\r\n') && !got.includes('ping')) sock.write('ping');
  });
  await once(sock, 'close');
  return got;
}

/**
 * Issue 18: OpenTelemetry traces through @opentelemetry/api, with a real in-process tracer
 * provider (the SDK's BasicTracerProvider and an in-memory exporter, registered through the
 * API as an operator's setup would). A SERVER span per request, a CLIENT span per try
 * (child of the request's), the RFC 9209 type as `error.type`; the try's span goes upstream
 * as `traceparent` (the lab echoes what it received) and the client's traceparent is
 * continued.
 */

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const firstAvailable: BalancerFactory = () => ({
  pick(endpoints, ctx, exclude) {
    for (const e of endpoints) if (e.available(ctx.now) && !exclude?.has(e)) return e;
    return undefined;
  },
});

let lab: Lab;
let dead: number;
/** An upstream that accepts every WebSocket-style upgrade and keeps the traceparent it got. */
let upgrades: { port: number; traceparents: Array<string | undefined> };
const closers: Array<() => Promise<unknown> | void> = [];
before(async () => {
  assert.ok(trace.setGlobalTracerProvider(provider), 'the test registers the only tracer provider');
  lab = await startLab();
  dead = await closedPort();
  const seen: Array<string | undefined> = [];
  const up = createServer((_req, res) => res.end('no'));
  up.on('upgrade', (req, socket: Duplex) => {
    seen.push(req.headers.traceparent as string | undefined);
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    socket.on('data', (d: Buffer) => socket.end(d)); // echo the first bytes, then close
    socket.on('error', () => {});
  });
  up.listen(0, '127.0.0.1');
  await once(up, 'listening');
  closers.push(() => new Promise<void>((r) => up.close(() => r())));
  upgrades = { port: (up.address() as AddressInfo).port, traceparents: seen };
});
after(async () => {
  for (const c of closers.reverse()) await c();
  await lab.close();
  await provider.shutdown();
  trace.disable();
});

async function gatewayWith(tracing: Tracing | undefined): Promise<string> {
  const config = validateConfig({
    listeners: [{ address: '127.0.0.1', port: 0 }],
    clusters: {
      // The dead endpoint comes first: the first try is refused, the second reaches the lab.
      mixed: { endpoints: [`http://127.0.0.1:${dead}`, lab.url], balancer: 'custom:first', outlierDetection: { enabled: false }, waitForEndpoint: { timeout: '0s' } },
      dead: { endpoints: [`http://127.0.0.1:${dead}`], waitForEndpoint: { timeout: '0s' } },
      ws: { endpoints: [`http://127.0.0.1:${upgrades.port}`] },
    },
    routes: [
      { name: 'ws', match: { pathPrefix: '/ws' }, cluster: 'ws', upgrades: ['websocket'] },
      { name: 'ws-dead', match: { pathPrefix: '/updead' }, cluster: 'dead', upgrades: ['websocket'], retry: { tries: 1 } },
      { name: 'dead', match: { pathPrefix: '/dead' }, cluster: 'dead', retry: { tries: 1 } },
      { name: 'mixed', match: { pathPrefix: '/echo' }, cluster: 'mixed', retry: { tries: 2 } },
    ],
  });
  const gw = new Gateway(config, { tracing: tracing?.gateway, balancers: { first: firstAvailable } });
  const [addr] = await gw.listen();
  closers.push(() => gw.close());
  return addr!.url;
}

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_SPAN = '00f067aa0ba902b7';

function spansOf(traceId: string): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
}

const ms = (t: [number, number]): number => t[0] * 1000 + t[1] / 1e6;

describe('OpenTelemetry traces (reverse gateway)', () => {
  let url: string;
  let tracing: Tracing;
  before(async () => {
    tracing = await startTracing({ enabled: true, propagate: true });
    closers.push(() => tracing.detach());
    url = await gatewayWith(tracing);
  });

  test('a request with a traceparent: its span continues the client\'s trace; one child per try, the refused one with error.type; the lab receives the last try\'s span as traceparent', async () => {
    exporter.reset();
    const res = await request(`${url}/echo`, { headers: { traceparent: `00-${TRACE_ID}-${CLIENT_SPAN}-01`, tracestate: 'vendor=abc' } });
    assert.equal(res.statusCode, 200);
    const echoed = (await res.body.json()) as { headers: Record<string, string> };
    assert.ok(await waitFor(() => spansOf(TRACE_ID).length === 3), `3 spans; got ${spansOf(TRACE_ID).map((s) => s.name).join(', ')}`);
    const spans = spansOf(TRACE_ID);
    const server = spans.find((s) => s.kind === SpanKind.SERVER)!;
    const tries = spans.filter((s) => s.kind === SpanKind.CLIENT).sort((a, b) => Number(a.attributes['gatewise.try']) - Number(b.attributes['gatewise.try']));
    assert.equal(server.name, 'GET mixed');
    assert.equal(server.parentSpanContext?.spanId, CLIENT_SPAN, 'the request span is the client span\'s child');
    assert.equal(server.parentSpanContext?.traceState?.get('vendor'), 'abc');
    assert.equal(server.attributes['http.response.status_code'], 200);
    assert.equal(server.attributes['gatewise.route'], 'mixed');
    assert.equal(server.attributes['gatewise.cluster'], 'mixed');
    assert.equal(server.attributes['error.type'], undefined);
    assert.equal(tries.length, 2);
    for (const t of tries) assert.equal(t.parentSpanContext?.spanId, server.spanContext().spanId, 'each try is a child of the request span');
    assert.equal(tries[0]!.attributes['error.type'], 'connection_refused');
    assert.equal(tries[0]!.attributes['gatewise.endpoint'], `127.0.0.1:${dead}`);
    assert.deepEqual([tries[0]!.attributes['server.address'], tries[0]!.attributes['server.port']], ['127.0.0.1', dead]);
    assert.equal(tries[0]!.status.code, SpanStatusCode.ERROR);
    assert.equal(tries[1]!.attributes['http.response.status_code'], 200);
    assert.equal(tries[1]!.attributes['gatewise.endpoint'], new URL(lab.url).host);
    assert.equal(tries[1]!.attributes['error.type'], undefined);
    assert.equal(echoed.headers.traceparent, `00-${TRACE_ID}-${tries[1]!.spanContext().spanId}-01`, 'the upstream got the second try\'s span as its parent');
    assert.equal(echoed.headers.tracestate, 'vendor=abc', 'tracestate passes on');
    // Times nest: the tries start after the request span and end before it.
    for (const t of tries) {
      assert.ok(ms(t.startTime) >= ms(server.startTime) - 1 && ms(t.endTime) <= ms(server.endTime) + 1, 'the try lies within the request');
    }
    assert.ok(ms(tries[0]!.endTime) <= ms(tries[1]!.startTime) + 1, 'the tries follow each other');
  });

  test('without a traceparent the request span is a root; a failure is error.type on it and on its try; a request with no try (404) still gets its span', async () => {
    exporter.reset();
    const res = await request(`${url}/dead/x`);
    await res.body.text();
    assert.ok(res.statusCode >= 500);
    await waitFor(() => exporter.getFinishedSpans().length >= 2);
    const server = exporter.getFinishedSpans().find((s) => s.kind === SpanKind.SERVER)!;
    assert.equal(server.parentSpanContext, undefined, 'a root span');
    assert.equal(server.attributes['http.response.status_code'], res.statusCode);
    assert.match(String(server.attributes['error.type']), /^(connection_refused|destination_unavailable)$/);
    assert.equal(server.status.code, SpanStatusCode.ERROR);
    const t = exporter.getFinishedSpans().find((s) => s.kind === SpanKind.CLIENT)!;
    assert.equal(t.attributes['error.type'], 'connection_refused');
    exporter.reset();
    const r404 = await request(`${url}/nowhere`);
    await r404.body.text();
    assert.equal(r404.statusCode, 404);
    await waitFor(() => exporter.getFinishedSpans().length >= 1);
    const only = exporter.getFinishedSpans();
    assert.equal(only.length, 1);
    assert.equal(only[0]!.attributes['error.type'], 'destination_not_found');
  });
});

describe('OpenTelemetry traces (upgrades)', () => {
  let url: string;
  before(async () => {
    const tracing = await startTracing({ enabled: true, propagate: true });
    closers.push(() => tracing.detach());
    url = await gatewayWith(tracing);
  });

  test('an upgrade gets a request span and a try span like any request; the upstream gets the try\'s span as traceparent; a refused upgrade names its failure', async () => {
    exporter.reset();
    const got = await rawUpgrade(url, '/ws', `00-${TRACE_ID}-${CLIENT_SPAN}-01`);
    assert.match(got, /^HTTP\/1\.1 101 /);
    assert.ok(got.endsWith('ping'), 'the tunnel carried bytes both ways');
    assert.ok(await waitFor(() => spansOf(TRACE_ID).length === 2), `2 spans; got ${spansOf(TRACE_ID).length}`);
    const server = spansOf(TRACE_ID).find((s) => s.kind === SpanKind.SERVER)!;
    const tryspan = spansOf(TRACE_ID).find((s) => s.kind === SpanKind.CLIENT)!;
    assert.equal(server.name, 'GET ws');
    assert.equal(server.parentSpanContext?.spanId, CLIENT_SPAN);
    assert.equal(server.attributes['http.response.status_code'], 101);
    assert.equal(server.attributes['gatewise.upgrade'], true);
    assert.equal(server.attributes['error.type'], undefined);
    assert.equal(tryspan.parentSpanContext?.spanId, server.spanContext().spanId);
    assert.equal(upgrades.traceparents.at(-1), `00-${TRACE_ID}-${tryspan.spanContext().spanId}-01`, 'the upstream got the try\'s span as its parent');
    exporter.reset();
    const refused = await rawUpgrade(url, '/updead', `00-${TRACE_ID}-${CLIENT_SPAN}-01`);
    assert.match(refused, /^HTTP\/1\.1 502 /);
    assert.ok(await waitFor(() => spansOf(TRACE_ID).length === 2));
    const failed = spansOf(TRACE_ID).find((s) => s.kind === SpanKind.SERVER)!;
    assert.equal(failed.attributes['error.type'], 'connection_refused');
    assert.equal(failed.status.code, SpanStatusCode.ERROR);
    assert.equal(spansOf(TRACE_ID).find((s) => s.kind === SpanKind.CLIENT)!.attributes['error.type'], 'connection_refused');
  });
});

describe('tracing off, or not propagating', () => {
  test('off: no span, and the client\'s traceparent reaches the upstream untouched', async () => {
    const url = await gatewayWith(undefined);
    exporter.reset();
    const tp = `00-${TRACE_ID}-${CLIENT_SPAN}-01`;
    const res = await request(`${url}/echo`, { headers: { traceparent: tp } });
    const echoed = (await res.body.json()) as { headers: Record<string, string> };
    assert.equal(echoed.headers.traceparent, tp);
    await new Promise((r) => setImmediate(r));
    assert.equal(spansOf(TRACE_ID).length, 0);
  });

  test('propagate: false: spans are made, the upstream gets the client\'s traceparent as it was', async () => {
    const t = await startTracing({ enabled: true, propagate: false });
    closers.push(() => t.detach());
    const url = await gatewayWith(t);
    exporter.reset();
    const tp = `00-${TRACE_ID}-${CLIENT_SPAN}-01`;
    const res = await request(`${url}/echo`, { headers: { traceparent: tp } });
    const echoed = (await res.body.json()) as { headers: Record<string, string> };
    assert.equal(echoed.headers.traceparent, tp);
    assert.ok(await waitFor(() => spansOf(TRACE_ID).some((s) => s.kind === SpanKind.SERVER)));
  });
});

describe('forward proxy', () => {
  test('a span per forward request, from its record', async () => {
    const t = await startTracing({ enabled: true, propagate: true });
    closers.push(() => t.detach());
    const origin = await startOrigin();
    closers.push(() => origin.close());
    const p = await startTestProxy();
    closers.push(() => p.close());
    exporter.reset();
    const agent = new ProxyAgent({ uri: p.url, token: 'Basic ' + Buffer.from(`${USER}:${PASSWORD}`).toString('base64'), proxyTunnel: false });
    closers.push(() => agent.close());
    const res = await request(`http://127.0.0.1:${origin.port}/f`, { dispatcher: agent });
    await res.body.text();
    assert.ok(await waitFor(() => exporter.getFinishedSpans().some((s) => s.attributes['gatewise.face'] === 'forward')));
    const s = exporter.getFinishedSpans().find((x) => x.attributes['gatewise.face'] === 'forward')!;
    assert.equal(s.kind, SpanKind.SERVER);
    assert.equal(s.attributes['gatewise.protocol'], 'http');
    assert.equal(s.attributes['http.response.status_code'], 200);
    assert.equal(s.attributes['gatewise.user'], USER);
    assert.ok(Number(s.attributes['gatewise.bytes_down']) > 0);
  });
});

test('seeded family: traceparent values, valid and broken; only well-formed ones with non-zero ids become the parent', () => {
  const rand = seededRandom();
  const hex = (n: number): string => Array.from({ length: n }, () => '0123456789abcdef'[rand.int(16)]).join('');
  try {
    for (let i = 0; i < 500; i++) {
      let version = rand.pick(['00', '00', '00', '01', 'ff', '0g']);
      let traceId = rand.next() < 0.1 ? '0'.repeat(32) : hex(32);
      let spanId = rand.next() < 0.1 ? '0'.repeat(16) : hex(16);
      const flags = rand.pick(['00', '01', '03', 'zz']);
      let extra = rand.next() < 0.1 ? '-more' : '';
      const mutate = rand.int(6);
      if (mutate === 0) traceId = traceId.slice(1);
      if (mutate === 1) spanId = spanId.toUpperCase() === spanId ? spanId + 'a' : spanId.toUpperCase();
      if (mutate === 2) version = version + '0';
      if (mutate === 3) extra = '';
      const value = `${version}-${traceId}-${spanId}-${flags}${extra}`;
      const valid =
        /^[0-9a-f]{2}$/.test(version) && version !== 'ff' && /^[0-9a-f]{32}$/.test(traceId) && !/^0+$/.test(traceId) && /^[0-9a-f]{16}$/.test(spanId) && !/^0+$/.test(spanId) && /^[0-9a-f]{2}$/.test(flags) && !(version === '00' && extra !== '');
      const sc = trace.getSpanContext(parentFrom({ traceparent: value }));
      assert.equal(sc !== undefined, valid, `seed ${rand.seed}: ${value}`);
      if (sc) {
        assert.deepEqual([sc.traceId, sc.spanId, sc.traceFlags, sc.isRemote], [traceId, spanId, parseInt(flags, 16) & 1, true], `seed ${rand.seed}: ${value}`);
      }
    }
  } catch (err) {
    console.log(`failing seed: GATEWISE_SEED=${rand.seed}`);
    throw err;
  }
});

test('tracing.setup: the module is imported at start (where an operator registers the SDK and exporter)', async () => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-otel-'));
  try {
    const file = join(dir, 'setup.mjs');
    writeFileSync(file, 'globalThis.gatewiseTracingSetup = (globalThis.gatewiseTracingSetup ?? 0) + 1;\n');
    const t = await startTracing({ enabled: true, propagate: true, setup: file });
    t.detach();
    assert.equal((globalThis as { gatewiseTracingSetup?: number }).gatewiseTracingSetup, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import { validateConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { Gateway } from '../../src/gateway/server.js';
import { attachAccessLog, createLogger } from '../../src/observe/access-log.js';
import { attachMetrics } from '../../src/observe/metrics.js';
import { after, before, describe } from 'node:test';
import type { ScriptedUpstream } from './scripted-upstream.js';
import { withTestUpstreamClient } from './upstream-client.js';
import { withTestFront } from './front.js';
import { until } from './until.js';
import { GUARD_MS } from './time-bounds.js';

export interface LogLine {
  type: string;
  requestId?: string;
  status?: number;
  error?: string;
  phase?: string;
  endedBy?: string;
  attempts?: Array<{ endpoint: string; phase: string; error?: string; status?: number }>;
  [k: string]: unknown;
}

export interface TestGateway {
  gw: Gateway;
  url: string;
  port: number;
  logs: LogLine[];
  registry: Registry;
  /** The access-log line for a request id (waited for as lines are written: the line is written when the response closes; the bound is a failure guard). */
  logFor(requestId: string, timeoutMs?: number): Promise<LogLine>;
  /** The first access-log line `pred` picks, waited for as lines are written; rejects after `timeoutMs` (a failure guard). */
  logWhere(pred: (l: LogLine) => boolean, timeoutMs?: number, what?: string): Promise<LogLine>;
  /** Value of gatewise_requests_total for the given labels (summed over the others). */
  requestsCounted(labels: Record<string, string>): Promise<number>;
  /** Reload the gateway with another input (the same test front, upstream client and listeners). */
  reload(input: Omit<ConfigInput, 'listeners'> & { listeners?: ConfigInput['listeners'] }): Promise<void>;
  close(): Promise<void>;
}

/** A gateway on an ephemeral port with its access log captured in memory (HTTP/1.1 clusters on GATEWISE_TEST_UPSTREAM_CLIENT's client when set). */
export async function startTestGateway(input: Omit<ConfigInput, 'listeners'> & { listeners?: ConfigInput['listeners'] }): Promise<TestGateway> {
  const configOf = (i: typeof input) => validateConfig(withTestFront(withTestUpstreamClient({ listeners: [{ address: '127.0.0.1', port: 0 }], ...i })));
  const config = configOf(input);
  const logs: LogLine[] = [];
  /** Told of each chunk of lines written (logWhere's waits). */
  const waiters = new Set<() => void>();
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
      for (const w of [...waiters]) w();
      cb();
    },
  });
  const logWhere = (pred: (l: LogLine) => boolean, timeoutMs = GUARD_MS, what = 'an access-log line'): Promise<LogLine> => {
    const find = (): LogLine | undefined => logs.find((l) => l.type === 'access' && pred(l));
    const now = find();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const l = find();
        if (l === undefined) return;
        done();
        resolve(l);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${what}: not written within ${timeoutMs} ms; have ${logs.map((l) => l.requestId).join(',')}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
    });
  };
  const logger = createLogger({ destination: sink });
  const detach = attachAccessLog(logger, { face: 'reverse' });
  const metrics = attachMetrics(new Registry());
  const gw = new Gateway(config);
  const [addr] = await gw.listen();
  return {
    gw,
    url: addr!.url,
    port: addr!.port,
    logs,
    registry: metrics.registry,
    // It polled for 2 s: a loaded machine can take longer between the client's answer and the
    // line (the record is written at the response's close), and polling is not waiting on it.
    logFor: (requestId, timeoutMs = GUARD_MS) => logWhere((l) => l.requestId === requestId, timeoutMs, `the access-log line of ${requestId}`),
    logWhere,
    async requestsCounted(labels) {
      const m = await metrics.registry.getSingleMetric('gatewise_requests_total')!.get();
      let n = 0;
      for (const v of m.values) {
        if (Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want)) n += v.value;
      }
      return n;
    },
    async reload(next) {
      await gw.reload(configOf(next));
    },
    async close() {
      await gw.close(1000);
      detach();
      metrics.detach();
    },
  };
}

/**
 * A gateway in front of one upstream (cluster `up`, outlier detection off, one try per
 * request): the shape of the stall tests. `listener`, `cluster` and `route` add or replace
 * keys; without `listener` the default test listener (and GATEWISE_TEST_FRONT) applies.
 */
export function startOneUpstreamGateway(
  upstream: string | number,
  o: { listener?: Record<string, unknown>; cluster?: Record<string, unknown>; route?: Record<string, unknown> } = {},
): Promise<TestGateway> {
  const url = typeof upstream === 'number' ? `http://127.0.0.1:${upstream}` : upstream;
  return startTestGateway({
    ...(o.listener !== undefined ? { listeners: [{ address: '127.0.0.1', port: 0, ...o.listener }] } : {}),
    clusters: { up: { endpoints: [url], outlierDetection: { enabled: false }, ...o.cluster } },
    routes: [{ cluster: 'up', retry: { tries: 1 }, ...o.route }],
  } as never);
}

/** The first access-log line of `g` that `pred` picks, waited for up to `ms` (polled every 5 ms); undefined if none came. */
export async function accessRecord(g: TestGateway, pred: (l: LogLine) => boolean, ms: number): Promise<LogLine | undefined> {
  let line: LogLine | undefined;
  await until(() => (line = g.logs.find((l) => l.type === 'access' && pred(l))) !== undefined, ms, 5);
  return line;
}

/** The reverse gateway's HTTP/1 fronts: node:http, and `front: net` with its own parser. */
export type GatewayFront = 'node' | 'net';

/**
 * One upstream for a test file (`startUpstream`, started before the file's tests and closed
 * after) and, for each front of the reverse gateway, a describe block (`title(front)`) whose
 * gateway is started before its tests and closed after: by default one listener of that front,
 * cluster `up` on the upstream and one route to it; `startGateway` starts another. `body`
 * declares the block's tests; `rig`'s fields are set by the time they run.
 */
export function describeOnBothFronts(
  title: (front: GatewayFront) => string,
  startUpstream: () => Promise<ScriptedUpstream>,
  body: (front: GatewayFront, rig: { readonly gateway: TestGateway; readonly upstream: ScriptedUpstream }) => void,
  startGateway: (front: GatewayFront, upstream: ScriptedUpstream) => Promise<TestGateway> = (front, upstream) =>
    startTestGateway({
      listeners: [{ address: '127.0.0.1', port: 0, front }],
      clusters: { up: { endpoints: [upstream.url] } },
      routes: [{ cluster: 'up' }],
    } as never),
): void {
  let upstream: ScriptedUpstream | undefined;
  before(async () => {
    upstream = await startUpstream();
  });
  after(async () => {
    await upstream?.close();
  });
  for (const front of ['node', 'net'] as const) {
    describe(title(front), () => {
      let g: TestGateway | undefined;
      before(async () => {
        g = await startGateway(front, upstream!);
      });
      after(async () => {
        await g?.close();
      });
      body(front, {
        get gateway() {
          return g!;
        },
        get upstream() {
          return upstream!;
        },
      });
    });
  }
}

/** A gateway of one front before an upstream that counts the requests it read to the end of their body. */
export interface CountingRig {
  readonly gateway: TestGateway;
  /** Requests the upstream has read whole so far. */
  received(): number;
}

/**
 * For each front, a describe block (`title(front)`) whose gateway (`startOneUpstreamGateway`:
 * one try, outlier detection off) stands before a node:http upstream that reads each request
 * to its end, counts it and answers 200 `upstream`: the shape of the framing tests that check
 * nothing reached the upstream. `body` declares the block's tests; `rig`'s fields are set by
 * the time they run.
 */
export function describeCountingUpstream(title: (front: GatewayFront) => string, body: (front: GatewayFront, rig: CountingRig) => void): void {
  for (const front of ['node', 'net'] as const) {
    describe(title(front), () => {
      let upstream: Server | undefined;
      let received = 0;
      let g: TestGateway | undefined;
      before(async () => {
        upstream = createServer((req, res) => {
          req.resume();
          req.on('end', () => {
            received++;
            res.end('upstream');
          });
          req.on('error', () => {});
        });
        await new Promise<void>((r) => upstream!.listen(0, '127.0.0.1', r));
        g = await startOneUpstreamGateway((upstream.address() as AddressInfo).port, { listener: { front } });
      });
      after(async () => {
        await g?.close();
        upstream?.closeAllConnections();
        await new Promise<void>((r) => (upstream === undefined ? r() : upstream.close(() => r())));
      });
      body(front, {
        get gateway() {
          return g!;
        },
        received: () => received,
      });
    });
  }
}

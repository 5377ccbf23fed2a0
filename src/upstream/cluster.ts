import type { IncomingMessage } from 'node:http';
import type { LookupFunction } from 'node:net';
import { Admission } from './admission.js';
import { createBalancer, type Balancer, type BalancerRegistry, type PickContext } from './balancers/balancer.js';
import { observeLatency } from './balancers/peak-ewma.js';
import { Endpoint, type EndpointOptions } from './endpoint.js';
import { EndpointWait } from './endpoint-wait.js';
import { HealthChecker, type HealthCheckOptions } from './health-check.js';
import { OutlierDetector } from './outlier.js';
import { RetryBudget } from './retry-budget.js';

/** What every endpoint of the cluster is given as it is (protocol, client, TLS, connection limits: see EndpointOptions). */
type SharedEndpointSettings = Pick<EndpointOptions, 'tls' | 'connectTimeoutMs' | 'keepAliveMs' | 'maxConnections' | 'maxResponseHeaderSize' | 'protocol' | 'h2MaxStreams' | 'client'>;

export interface ClusterSettings extends SharedEndpointSettings {
  endpoints: ReadonlyArray<string | { url: string; weight?: number; draining?: boolean }>;
  responseTimeoutMs: number;
  idleTimeoutMs: number;
  /** A switched (upgraded) connection with no byte either way for this long is closed; 0: never. Default 5 min. */
  tunnelIdleMs?: number;
  /** A built-in balancer's name, or a custom one's in `balancers`. */
  balancer: string;
  /** Where `balancer` is looked up; default the built-ins. */
  balancers?: BalancerRegistry;
  hashOn?: { header?: string; cookie?: string; clientAddress?: boolean };
  slowStartMs: number;
  /** Active health checks (the checker's own options; the cluster adds its name, TLS and resolver). */
  healthCheck?: Omit<HealthCheckOptions, 'cluster' | 'tls' | 'lookup'>;
  outlier?: {
    consecutiveGatewayFailures: number;
    consecutive5xx: number;
    consecutiveTimeouts: number;
    baseEjectionMs: number;
    maxEjectionMs: number;
    maxEjectedPercent: number;
  };
  limits: {
    maxConcurrent?: number;
    maxQueued: number;
    queueTimeoutMs: number;
    adaptive?: { kind: 'aimd' | 'gradient'; min: number; max: number; initial: number; targetLatencyMs: number };
  };
  retryBudget: { ratio: number; minPerSecond: number; windowMs: number };
  /** Hold requests while every endpoint is down (timeoutMs 0: answer at once). */
  waitForEndpoint?: { timeoutMs: number; maxWaiting: number };
}

export type { Outcome } from './outlier.js';
import type { Outcome } from './outlier.js';

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * A named group of endpoints and everything that decides which one serves a request:
 * the balancer, health checks (active), the outlier detector (passive), the
 * concurrency limit with its queue, and the retry budget. Health checks and the
 * outlier detector write endpoint status; the balancer only reads it.
 */
export class Cluster {
  readonly name: string;
  readonly endpoints: readonly Endpoint[];
  readonly responseTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** ClusterSettings.tunnelIdleMs. */
  readonly tunnelIdleMs: number;
  readonly admission: Admission | undefined;
  readonly retryBudget: RetryBudget;
  /** Requests held while every endpoint is down; undefined when the cluster answers at once. */
  readonly wait: EndpointWait | undefined;
  readonly #balancer: Balancer;
  readonly #usesLatency: boolean;
  readonly #hashOn: ClusterSettings['hashOn'];
  readonly #outlier: OutlierDetector | undefined;
  readonly #health: HealthChecker | undefined;
  readonly #healthIntervalMs: number;
  readonly #pickCtx: PickContext = { now: 0, hashKey: undefined };
  #tick: NodeJS.Timeout | undefined;

  constructor(name: string, s: ClusterSettings, lookup: LookupFunction) {
    this.name = name;
    this.responseTimeoutMs = s.responseTimeoutMs;
    this.idleTimeoutMs = s.idleTimeoutMs;
    this.tunnelIdleMs = s.tunnelIdleMs ?? 300_000;
    this.endpoints = s.endpoints.map(
      (e) =>
        new Endpoint({
          url: typeof e === 'string' ? e : e.url,
          weight: typeof e === 'string' ? 1 : e.weight ?? 1,
          draining: typeof e === 'string' ? false : e.draining ?? false,
          connectTimeoutMs: s.connectTimeoutMs,
          headersTimeoutMs: s.responseTimeoutMs,
          bodyTimeoutMs: s.idleTimeoutMs,
          keepAliveMs: s.keepAliveMs,
          maxConnections: s.maxConnections,
          maxResponseHeaderSize: s.maxResponseHeaderSize,
          protocol: s.protocol,
          h2MaxStreams: s.h2MaxStreams,
          client: s.client,
          tls: s.tls,
          lookup,
        }),
    );
    this.#balancer = createBalancer(s.balancer, this.endpoints, { slowStartMs: s.slowStartMs }, s.balancers);
    this.#usesLatency = s.balancer === 'peak-ewma';
    this.#hashOn = s.hashOn;
    const w = s.waitForEndpoint;
    this.wait = w !== undefined && w.timeoutMs > 0 ? new EndpointWait({ cluster: name, timeoutMs: w.timeoutMs, maxWaiting: w.maxWaiting, connectTimeoutMs: s.connectTimeoutMs, lookup }) : undefined;
    const wait = this.wait;
    this.#outlier = s.outlier ? new OutlierDetector(this.endpoints, { ...s.outlier, cluster: name, onReturn: wait && ((ep) => wait.back(ep, 'outlier')) }) : undefined;
    if (this.#outlier) {
      // Returns are noticed lazily on traffic; the tick reports them for idle clusters too.
      const outlier = this.#outlier;
      this.#tick = setInterval(() => outlier.tick(Date.now()), 1000);
      this.#tick.unref();
    }
    this.#healthIntervalMs = s.healthCheck?.intervalMs ?? 0;
    if (s.healthCheck) {
      const outlier = this.#outlier;
      // Envoy's `successful_active_health_check_uneject_host`: an endpoint ejected while it was
      // down (refusing connections during a restart) is back once the checks see it back,
      // not after the rest of its ejection; else a rolling restart of the next endpoint finds none.
      const onRecovered = outlier ? (ep: Endpoint) => outlier.recovered(ep, Date.now()) : undefined;
      this.#health = new HealthChecker(this.endpoints, { ...s.healthCheck, cluster: name, tls: s.tls, lookup, onRecovered, onHealthy: wait && ((ep) => wait.back(ep, 'health')) });
      this.#health.start();
    }
    const l = s.limits;
    this.admission =
      l.maxConcurrent !== undefined || l.adaptive !== undefined
        ? new Admission({ maxConcurrent: l.maxConcurrent, maxQueued: l.maxQueued, queueTimeoutMs: l.queueTimeoutMs, adaptive: l.adaptive, cluster: name })
        : undefined;
    this.retryBudget = new RetryBudget(s.retryBudget);
  }

  onRequest(now: number): void {
    this.retryBudget.onRequest(now);
  }

  /** An available endpoint not in `exclude`, or undefined when none is. */
  pick(now: number, exclude: ReadonlySet<Endpoint> | undefined, req: IncomingMessage, clientAddress: string | undefined): Endpoint | undefined {
    const ctx = this.#pickCtx;
    ctx.now = now;
    ctx.hashKey = this.#hashOn ? this.#hashKey(req, clientAddress) : undefined;
    return this.#balancer.pick(this.endpoints, ctx, exclude);
  }

  #hashKey(req: IncomingMessage, clientAddress: string | undefined): string | undefined {
    const h = this.#hashOn!;
    if (h.header) {
      const v = req.headers[h.header.toLowerCase()];
      if (v !== undefined) return Array.isArray(v) ? v.join(',') : v;
    }
    if (h.cookie) {
      const v = cookieValue(req.headers.cookie, h.cookie);
      if (v !== undefined) return v;
    }
    return h.clientAddress ? clientAddress : undefined;
  }

  /**
   * Every endpoint is down: unavailable (health, ejection, draining) or its last connect
   * failed. Only then are requests held (`wait`).
   */
  allDown(now: number): boolean {
    const w = this.wait;
    for (const e of this.endpoints) if (e.available(now) && (w === undefined || !w.unreachable(e))) return false;
    return true;
  }

  /** Whether an endpoint other than `ep` and those in `exclude` is available now (a retry has somewhere to go). */
  hasAlternative(ep: Endpoint, exclude: ReadonlySet<Endpoint> | undefined, now: number): boolean {
    for (const e of this.endpoints) if (e !== ep && !exclude?.has(e) && e.available(now)) return true;
    return false;
  }

  recordOutcome(ep: Endpoint, outcome: Outcome, now: number): void {
    this.#outlier?.record(ep, outcome, now);
  }

  observeLatency(ep: Endpoint, ms: number, now: number): void {
    if (this.#usesLatency) observeLatency(ep, ms, now);
  }

  /** Seconds until an endpoint may be back, for Retry-After on a 503. */
  retryAfterSeconds(now: number): number {
    let soonest = Infinity;
    for (const e of this.endpoints) if (e.ejectedUntil > now) soonest = Math.min(soonest, e.ejectedUntil - now);
    if (soonest === Infinity) soonest = this.#healthIntervalMs || 1000;
    return Math.max(1, Math.min(60, Math.ceil(soonest / 1000)));
  }

  /** Why no endpoint is available, in words for the error detail. */
  describeAvailability(now: number): string {
    let unhealthy = 0;
    let ejected = 0;
    let draining = 0;
    for (const e of this.endpoints) {
      if (e.draining) draining++;
      else if (e.health === 'unhealthy') unhealthy++;
      else if (e.ejectedUntil > now) ejected++;
    }
    const parts: string[] = [];
    if (unhealthy) parts.push(`${unhealthy} failing health checks`);
    if (ejected) parts.push(`${ejected} ejected after repeated failures`);
    if (draining) parts.push(`${draining} draining`);
    return parts.join(', ') || `${this.endpoints.length} endpoints`;
  }

  /** Stop or start sending new requests to an endpoint (admin API, rolling restarts). */
  setDraining(url: string, draining: boolean): boolean {
    let href: string | undefined;
    try {
      href = new URL(url).href;
    } catch {
      href = undefined;
    }
    const e = this.endpoints.find((x) => x.url.href === href || x.nextHop === url);
    if (!e) return false;
    const back = e.draining && !draining;
    if (back) e.readyAt = Date.now();
    e.draining = draining;
    if (back) this.wait?.back(e, 'undrain');
    return true;
  }

  async close(): Promise<void> {
    clearInterval(this.#tick);
    this.wait?.close();
    await this.#health?.stop();
    await Promise.all(this.endpoints.map((e) => e.close()));
  }

  async destroy(): Promise<void> {
    clearInterval(this.#tick);
    this.wait?.close();
    await this.#health?.stop();
    await Promise.all(this.endpoints.map((e) => e.destroy()));
  }
}

import type { EscapedSlashes } from '../http/path.js';
import { RequestIds } from '../http/request-id.js';
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import type { Config } from '../config/schema.js';
import { parseDuration } from '../config/duration.js';
import type { ProxyStatusOptions } from '../failure/index.js';
import { AddressSet } from '../http/trust.js';
import { viaValue } from '../http/headers.js';
import { BAD_VALUE_RE, TOKEN_RE } from '../http/token.js';
import { Cluster } from '../upstream/cluster.js';
import { makeLookup } from '../upstream/dns.js';
import { ConfigError, type ConfigProblem } from '../config/load.js';
import { balancerRegistry, type BalancerFactory } from '../upstream/balancers/balancer.js';
import { GatewayHooksRunner, type GatewayHooks } from './hooks.js';
import type { GatewayTracing } from './tracing.js';
import { Router, compileRoute, literalHost } from './router.js';
import { DiskTier, MemoryStore, ResponseCache } from '../cache/index.js';
import { AcmeChallenges } from '../tls/acme/index.js';
import type { ConnectionsCut } from '../failure/index.js';
import { viaOwnForward, type PeerEnd } from '../net/own-listeners.js';

/** Everything the per-request code reads, compiled once from the config. */
export interface GatewayContext {
  /** Our name in Proxy-Status and our Via pseudonym (loop detection). */
  readonly identity: string;
  /**
   * The Via value put on a response passed on to the client, by the protocol it was received
   * in from the upstream (RFC 9110 §7.6.3): `1.1 <identity>`, or `2 <identity>` from an h2
   * connection. Made once: no string per response.
   */
  readonly responseVia: { readonly http1: string; readonly h2: string };
  readonly router: Router;
  readonly clusters: ReadonlyMap<string, Cluster>;
  readonly trustedProxies: AddressSet;
  readonly topologyClients: AddressSet | 'always' | 'never';
  /** Prefix of problem+json types (proxyStatus.problemTypeBase). */
  readonly problemTypeBase: string | undefined;
  readonly sendXForwarded: boolean;
  readonly sendForwarded: boolean;
  /** Drop request header names that contain '_'. */
  readonly dropUnderscoreHeaders: boolean;
  /** What `%2F` and `%5C` in a path are (escapedSlashes; read only for a path that needs normalising). */
  readonly escapedSlashes: EscapedSlashes;
  /** Lower-case request id header name. */
  readonly requestIdHeader: string;
  readonly trustIncomingRequestId: boolean;
  /**
   * The config values the gateway writes into upstream heads (the request-id header's name,
   * the name in Via, a route's literal Host) are valid fields. The schema makes them so; this
   * is true of a Config that skipped it too, and the exchange gives the native client its word
   * about a head only when it holds (Exchange, #fieldsChecked).
   */
  readonly configFieldsValid: boolean;
  readonly requestIds: RequestIds;
  /** Set while draining: responses close their connections. */
  draining: boolean;
  /**
   * Set when the gateway cuts the client connections still open (the drain timeout): the
   * requests they end unanswered are recorded as its doing (failure/connections-cut.ts), not the client's.
   */
  cut: ConnectionsCut | undefined;
  /** Requests (and upgrades) not finished yet (graceful shutdown waits for 0). */
  inflight: number;
  /** The registered hooks, compiled; undefined when there are none (no per-request cost). */
  readonly hooks: GatewayHooksRunner | undefined;
  /** OpenTelemetry spans and traceparent (./tracing.ts); undefined when off (one field test per request and try). */
  readonly tracing: GatewayTracing | undefined;
  /** The response cache, when a route has `cache` (docs/cache.md). */
  readonly cache: ResponseCache | undefined;
  /** HTTP-01 challenges pending, when a listener has tls.acme (answered on plain listeners before routing); kept across reloads. */
  readonly acme: AcmeChallenges | undefined;
}

const DEFAULT_NAME = 'gatewise';

/**
 * The identity used in Via and Proxy-Status. With the default name it gets a short
 * suffix derived from the host and the listeners, so two default gateways in a chain
 * do not mistake each other for a loop, while all workers of one gateway agree.
 */
export function identityOf(cfg: Config): string {
  if (cfg.name !== DEFAULT_NAME) return cfg.name;
  const seed = hostname() + cfg.listeners.map((l) => `${l.address}:${l.port}`).join(',');
  return `${DEFAULT_NAME}-${createHash('sha256').update(seed).digest('hex').slice(0, 6)}`;
}

/** "200-399" or 204 → a status or an inclusive range. */
function statusRange(s: string | number): number | [number, number] {
  if (typeof s === 'number') return s;
  const [a, b] = s.split('-');
  return [Number(a), Number(b)];
}

export function ms(d: string): number {
  return parseDuration(d)!;
}

/** What a library user adds to a gateway (`startGateway(config, options)`). */
export interface GatewayOptions {
  /** Hooks at the reverse gateway's phases, run in this order (./hooks.ts). */
  hooks?: readonly GatewayHooks[];
  /**
   * The longest the asynchronous `onRequest` hooks of one request may take together, in ms;
   * past it the request is answered 500 `proxy_internal_error` (a hook calling an outside
   * service that never answers would otherwise hold the request and its client for ever).
   * Default 10,000; 0: no bound.
   */
  hookTimeoutMs?: number;
  /** Custom balancers by name; a cluster uses one with `balancer: custom:<name>`. */
  balancers?: Readonly<Record<string, BalancerFactory>>;
  /** Tracing: `startTracing(config.tracing)` (observe/tracing.ts; `gatewise run` does it when `tracing.enabled`). Absent: none. */
  tracing?: GatewayTracing;
}

const CUSTOM = 'custom:';

/** The context a reload replaces: clusters whose config (and the DNS settings) did not change are kept, with their health and outlier state. */
export interface PreviousContext {
  readonly config: Config;
  readonly ctx: GatewayContext;
}

/** Whether cluster `name` compiles the same under both configs (its own settings and the resolver's). */
export function sameCluster(a: Config, b: Config, name: string): boolean {
  const x = a.clusters[name];
  const y = b.clusters[name];
  return x !== undefined && y !== undefined && JSON.stringify(x) === JSON.stringify(y) && JSON.stringify(a.dns) === JSON.stringify(b.dns);
}

export function buildContext(cfg: Config, options: GatewayOptions = {}, previous?: PreviousContext): GatewayContext {
  const balancers = balancerRegistry(options.balancers);
  const problems: ConfigProblem[] = [];
  for (const [name, c] of Object.entries(cfg.clusters)) {
    if (c.balancer.startsWith(CUSTOM) && !balancers.has(c.balancer.slice(CUSTOM.length))) {
      const known = Object.keys(options.balancers ?? {});
      problems.push({
        path: `clusters.${name}.balancer`,
        message: `no custom balancer ${c.balancer.slice(CUSTOM.length)} is registered (${known.length ? `registered: ${known.join(', ')}` : 'none is'}); register it with startGateway(config, { balancers: { name: factory } })`,
      });
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const lookup = makeLookup({ servers: cfg.dns.servers, timeoutMs: ms(cfg.dns.timeout), tries: cfg.dns.tries });
  const clusters = new Map<string, Cluster>();
  for (const [name, c] of Object.entries(cfg.clusters)) {
    const kept = previous && sameCluster(previous.config, cfg, name) ? previous.ctx.clusters.get(name) : undefined;
    if (kept) {
      clusters.set(name, kept);
      continue;
    }
    clusters.set(
      name,
      new Cluster(
        name,
        {
          endpoints: c.endpoints,
          tls: c.tls,
          connectTimeoutMs: ms(c.timeouts.connect),
          responseTimeoutMs: ms(c.timeouts.response),
          idleTimeoutMs: ms(c.timeouts.idle),
          tunnelIdleMs: ms(c.timeouts.tunnelIdle),
          keepAliveMs: ms(c.keepAlive),
          maxConnections: c.maxConnections,
          maxResponseHeaderSize: c.maxResponseHeaderSize,
          protocol: c.protocol,
          h2MaxStreams: c.h2MaxStreams,
          // HTTP/1.1 clusters default to the native client (adopted on the duel figures, docs/upstream-client.md); HTTP/2 is the pool's H2Client whatever this says.
          client: c.client ?? (c.protocol === 'http1' ? 'native' : 'undici'),
          balancer: c.balancer.startsWith(CUSTOM) ? c.balancer.slice(CUSTOM.length) : c.balancer,
          balancers,
          hashOn: c.hashOn,
          slowStartMs: ms(c.slowStart),
          healthCheck: c.healthCheck && {
            kind: c.healthCheck.kind,
            path: c.healthCheck.path,
            host: c.healthCheck.host,
            expectStatuses: c.healthCheck.expectStatuses.map(statusRange),
            intervalMs: ms(c.healthCheck.interval),
            jitter: c.healthCheck.jitter,
            timeoutMs: ms(c.healthCheck.timeout),
            rise: c.healthCheck.rise,
            fall: c.healthCheck.fall,
          },
          outlier: c.outlierDetection.enabled
            ? {
                consecutiveGatewayFailures: c.outlierDetection.consecutiveGatewayFailures,
                consecutive5xx: c.outlierDetection.consecutive5xx,
                consecutiveTimeouts: c.outlierDetection.consecutiveTimeouts,
                baseEjectionMs: ms(c.outlierDetection.baseEjection),
                maxEjectionMs: ms(c.outlierDetection.maxEjection),
                maxEjectedPercent: c.outlierDetection.maxEjectedPercent,
              }
            : undefined,
          limits: {
            maxConcurrent: c.limits.maxConcurrent,
            maxQueued: c.limits.maxQueued,
            queueTimeoutMs: ms(c.limits.queueTimeout),
            adaptive: c.limits.adaptive && {
              kind: c.limits.adaptive.kind,
              min: c.limits.adaptive.min,
              max: c.limits.adaptive.max,
              initial: c.limits.adaptive.initial,
              targetLatencyMs: ms(c.limits.adaptive.targetLatency),
            },
          },
          waitForEndpoint: { timeoutMs: ms(c.waitForEndpoint.timeout), maxWaiting: c.waitForEndpoint.maxWaiting },
          retryBudget: { ratio: c.retryBudget.ratio, minPerSecond: c.retryBudget.minPerSecond, windowMs: ms(c.retryBudget.window) },
        },
        lookup,
      ),
    );
  }
  // A reload keeps the stored responses when the cache's own settings did not change.
  const keepCache = previous?.ctx.cache !== undefined && JSON.stringify(previous.config.cache) === JSON.stringify(cfg.cache);
  const cache = cfg.routes.some((r) => r.cache !== undefined)
    ? keepCache
      ? previous!.ctx.cache
      : new ResponseCache(new MemoryStore(cfg.cache.maxSize), cfg.cache.dir === undefined ? undefined : new DiskTier(cfg.cache.dir, cfg.cache.maxDiskSize))
    : undefined;
  const router = new Router(cfg.routes.map((r, i) => compileRoute(r, i, clusters.get(r.cluster)!, cache)));
  const reveal = cfg.proxyStatus.revealTopology;
  const identity = identityOf(cfg);
  return {
    identity,
    responseVia: { http1: viaValue('1.1', identity), h2: viaValue('2', identity) },
    router,
    clusters,
    trustedProxies: new AddressSet(cfg.trustedProxies),
    topologyClients: reveal === 'trusted' ? new AddressSet(cfg.proxyStatus.trustedClients) : reveal,
    problemTypeBase: cfg.proxyStatus.problemTypeBase,
    sendXForwarded: cfg.forwardedHeaders === 'x-forwarded' || cfg.forwardedHeaders === 'both',
    sendForwarded: cfg.forwardedHeaders === 'forwarded' || cfg.forwardedHeaders === 'both',
    dropUnderscoreHeaders: cfg.underscoreHeaders === 'drop',
    escapedSlashes: cfg.escapedSlashes,
    requestIdHeader: cfg.requestId.header.toLowerCase(),
    trustIncomingRequestId: cfg.requestId.trustIncoming,
    configFieldsValid:
      TOKEN_RE.test(cfg.requestId.header) && !BAD_VALUE_RE.test(identity) && cfg.routes.every((r) => !BAD_VALUE_RE.test(literalHost(r.host) ?? '')),
    requestIds: previous?.ctx.requestIds ?? new RequestIds(),
    draining: false,
    cut: undefined,
    inflight: 0,
    hooks: GatewayHooksRunner.of(options.hooks, options.hookTimeoutMs),
    tracing: options.tracing,
    cache,
    acme: previous?.ctx.acme ?? (cfg.listeners.some((l) => l.tls?.acme !== undefined) ? new AcmeChallenges() : undefined),
  };
}

/**
 * What Proxy-Status and error bodies may tell this client. A trusted client address on a
 * connection of this process's own forward proxy is a forward user's, not a local client's:
 * told nothing more than anyone (net/own-listeners.ts; the socket is looked at only then).
 */
export function proxyStatusOptions(ctx: GatewayContext, clientAddress: string | undefined, clientSocket: PeerEnd | undefined): ProxyStatusOptions {
  const t = ctx.topologyClients;
  return { name: ctx.identity, revealTopology: t === 'always' ? true : t === 'never' ? false : t.has(clientAddress) && !viaOwnForward(clientSocket), problemTypeBase: ctx.problemTypeBase };
}

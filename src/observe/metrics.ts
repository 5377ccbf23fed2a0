import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
// prom-client's own label hash (the key of a series in a metric's `hashMap`), for `sampled`.
import { hashObject } from 'prom-client/lib/util.js';
import { REQUEST_END_CHANNEL, type RequestRecord, type ReverseRecord } from '../record/index.js';
import { AUTH_LOCKOUT_CHANNEL, AUTH_UNTRACKED_CHANNEL } from '../net/auth-lockout.js';

/** What the metrics read of a cluster at scrape time (the gateway's `Cluster`, structurally). */
export interface ClusterView {
  readonly name: string;
  readonly endpoints: ReadonlyArray<{
    readonly nextHop: string;
    readonly health: string;
    readonly draining: boolean;
    readonly ejectedUntil: number;
    readonly inflight: number;
  }>;
  readonly admission?: { readonly queued: number; readonly limit: number; readonly inflight: number } | undefined;
}

/** What the metrics read of the forward proxy's egress at scrape time. */
export interface EgressView {
  readonly pools: ReadonlyMap<string, { readonly sessions: { readonly size: number }; stats(): ReadonlyArray<{ id: string; active: number; down: boolean }> }>;
}

export interface MetricsOptions {
  defaultMetrics?: boolean;
  /** The reverse gateway's clusters, read when scraped. */
  clusters?: () => Iterable<ClusterView>;
  /** The forward proxy's egress pools, read when scraped. */
  egress?: () => EgressView | undefined;
  /** The state layer's health (state/shared-state.ts), read when scraped. */
  state?: () => { backend: string; degraded: boolean; fallbacks: number; recoveries: number } | undefined;
  /** The certificates the TLS listeners serve, read when scraped. */
  certificates?: () => Iterable<CertificateView>;
}

/** What the metrics read of a certificate in use (src/tls `CertificateInfo`, structurally). */
export interface CertificateView {
  readonly listener: string;
  readonly cert: string;
  readonly notAfter: Date;
}

export interface GatewayMetrics {
  registry: Registry;
  detach(): void;
}

/** Histogram buckets in seconds: from sub-millisecond loopback to the slowest timeouts. */
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * Counts gathered on the hot path in plain maps and handed to prom-client when scraped.
 *
 * prom-client hashes the label object on every `inc`/`observe` (sorting and joining the
 * keys); doing that for a request counter, a duration, the attempts and three phase
 * histograms cost ~6 µs per proxied request, ~7 % of a 1 KiB request's CPU (the bar
 * for metrics on by default is 5 %). Here each series is a cell found by its label key,
 * and the request path keeps the cells of the last labels it saw, so a request whose labels
 * repeat adds to numbers without a map lookup; `collect()` moves the counts into the
 * prom-client metrics. A cell stays once made (series are bounded by design: no label per
 * user or destination), so a kept cell never goes stale between scrapes.
 */
interface Cell {
  n: number;
}

class Tally {
  readonly #cells = new Map<string, Cell>();

  /** The cell of one series, made on first use. */
  cell(key: string): Cell {
    let c = this.#cells.get(key);
    if (c === undefined) this.#cells.set(key, (c = { n: 0 }));
    return c;
  }

  add(key: string, n = 1): void {
    this.cell(key).n += n;
  }

  /** Hand the counts gathered since the last call to `fn`, and start again from 0. */
  drain(fn: (key: string, n: number) => void): void {
    for (const [k, c] of this.#cells) {
      if (c.n === 0) continue;
      fn(k, c.n);
      c.n = 0;
    }
  }
}

/**
 * One histogram series' observations since the last scrape, counted into its buckets as
 * they come: `counts[i]` for values up to `BUCKETS[i]` (and above the previous bound), the
 * last slot for values above every bound. Counted, not kept: a list of values bounded at
 * 10,000 between scrapes had to drop observations past that, and the series' `_count` and
 * `_sum` under-counted (5,000,000 records published between two scrapes came out as 20,000).
 */
interface Series {
  readonly counts: number[];
  sum: number;
  n: number;
}

/** Histogram series by label key; like a `Tally`'s cells, a series stays once made. */
class Samples {
  readonly #series = new Map<string, Series>();

  list(key: string): Series {
    let s = this.#series.get(key);
    if (s === undefined) this.#series.set(key, (s = { counts: new Array<number>(BUCKETS.length + 1).fill(0), sum: 0, n: 0 }));
    return s;
  }

  add(key: string, v: number): void {
    sample(this.list(key), v);
  }

  /** Hand each series with observations since the last call to `fn`, and start it again from 0. */
  drain(fn: (key: string, s: Series) => void): void {
    for (const [k, s] of this.#series) {
      if (s.n === 0) continue;
      fn(k, s);
      s.counts.fill(0);
      s.sum = 0;
      s.n = 0;
    }
  }
}

/** One observation: the first bucket whose bound it does not exceed (prom-client's `findBound`), its sum and count. */
function sample(s: Series, v: number): void {
  let i = 0;
  while (i < BUCKETS.length && v > BUCKETS[i]!) i++;
  s.counts[i]!++;
  s.sum += v;
  s.n++;
}

const SEP = '\u0000';

const labelsOf = <K extends string>(names: readonly K[], key: string): Record<K, string> => {
  const parts = key.split(SEP);
  const out = {} as Record<K, string>;
  names.forEach((n, i) => (out[n] = parts[i] ?? ''));
  return out;
};

function tallied<K extends string>(registry: Registry, name: string, help: string, labelNames: readonly K[], tally: Tally): Counter<K> {
  return new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect(this: Counter<K>) {
      tally.drain((key, n) => this.inc(labelsOf(labelNames, key), n));
    },
  });
}

/** What `sampled` reaches inside prom-client's `Histogram` (15.x): a series' entry by its label hash. */
interface HistogramEntry {
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}

function sampled<K extends string>(registry: Registry, name: string, help: string, labelNames: readonly K[], samples: Samples): Histogram<K> {
  const sortedNames = [...labelNames].sort();
  return new Histogram({
    name,
    help,
    labelNames,
    buckets: BUCKETS,
    registers: [registry],
    collect(this: Histogram<K>) {
      // prom-client's Histogram adds one observation at a time; counts gathered here go into
      // its series entry directly (`zero` makes the entry through the public API, with its
      // label checks). Pinned by test/observe/metrics-histogram.test.ts: an upgrade that
      // changes the entry's shape fails there.
      const map = (this as unknown as { hashMap: Record<string, HistogramEntry> }).hashMap;
      samples.drain((key, s) => {
        const labels = labelsOf(labelNames, key);
        const hash = hashObject(labels, sortedNames);
        let entry = map[hash];
        if (entry === undefined) {
          this.zero(labels as Partial<Record<K, string>>);
          entry = map[hash]!;
        }
        for (let i = 0; i < BUCKETS.length; i++) entry.bucketValues[BUCKETS[i]!]! += s.counts[i]!;
        entry.sum += s.sum;
        entry.count += s.n;
      });
    },
  });
}

/** A gauge filled when scraped, from state the gateway already keeps (nothing on the request path). */
function scraped<K extends string>(registry: Registry, name: string, help: string, labelNames: readonly K[], fill: (set: (values: readonly string[], v: number) => void) => void, aggregator: 'sum' | 'max' = 'sum'): Gauge<K> {
  return new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    // How `--workers N` merges it (admin-group.ts): counts add up over workers; 0/1 standings take the highest.
    aggregator,
    collect(this: Gauge<K>) {
      this.reset();
      fill((values, v) => this.set(labelsOf(labelNames, values.join(SEP)), v));
    },
  });
}

/**
 * Prometheus metrics of both faces, fed by the diagnostics channels (records, endpoint
 * standing, exit failures, held requests, adaptive limits) and, at scrape time, by the
 * clusters' and pools' state. The same story as the access log: every gateway-made
 * response counts under its RFC 9209 error type. No label holds a user or a destination
 * (bounded cardinality): forward traffic is counted by plan and pool. docs/metrics.md lists
 * every metric; test/observe/metrics.test.ts checks the list and that each one moves.
 */
export function attachMetrics(registry = new Registry(), opts: MetricsOptions = {}): GatewayMetrics {
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry });
  const requests = new Tally();
  const bytes = new Tally();
  const attempts = new Tally();
  const retries = new Tally();
  const forwardTraffic = new Tally();
  const quotaHits = new Tally();
  const outlierEvents = new Tally();
  const healthChanges = new Tally();
  const exitFailures = new Tally();
  const held = new Tally();
  const cacheResults = new Tally();
  const recovered = new Tally();
  const revalidations = new Tally();
  const bypasses = new Tally();
  const storeRefusals = new Tally();
  const certReloads = new Tally();
  const acmeOrders = new Tally();
  const lockouts = new Tally();
  const untracked = new Tally();
  const duration = new Samples();
  const connect = new Samples();
  const tls = new Samples();
  const head = new Samples();

  tallied(registry, 'gatewise_requests_total', 'Requests, tunnels and associations finished, by face (reverse, forward), protocol, route (reverse), status, RFC 9209 error type, refusal reason and who ended it ("" when none).', ['face', 'protocol', 'route', 'cluster', 'status', 'error', 'reason', 'ended_by'] as const, requests);
  tallied(registry, 'gatewise_bytes_total', 'Bytes carried, by face and direction (up: client to upstream; down: upstream to client).', ['face', 'direction'] as const, bytes);
  tallied(registry, 'gatewise_upstream_attempts_total', 'Tries at upstream endpoints, by cluster, endpoint, connection (new, reused) and error type ("" for a response).', ['cluster', 'endpoint', 'connection', 'error'] as const, attempts);
  tallied(registry, 'gatewise_upstream_retries_total', 'Tries after the first of a request, by cluster.', ['cluster'] as const, retries);
  tallied(registry, 'gatewise_forward_requests_total', 'Forward requests, tunnels and associations, by protocol, plan and egress pool ("" for none: direct), and error type.', ['protocol', 'plan', 'pool', 'error'] as const, forwardTraffic);
  tallied(registry, 'gatewise_forward_quota_cuts_total', 'Forward tunnels cut by a byte quota, by plan.', ['plan'] as const, quotaHits);
  tallied(registry, 'gatewise_endpoint_outlier_events_total', 'Outlier detection: endpoints ejected, spared (kept in to keep the cluster serving) and returned, by cluster and endpoint.', ['cluster', 'endpoint', 'event'] as const, outlierEvents);
  tallied(registry, 'gatewise_endpoint_health_changes_total', 'Active health check transitions, by cluster, endpoint and new state.', ['cluster', 'endpoint', 'to'] as const, healthChanges);
  tallied(registry, 'gatewise_forward_exit_failures_total', 'Failures of forward exits, by pool, exit, error type and whether the exit was cooled down.', ['pool', 'exit', 'error', 'cooled'] as const, exitFailures);
  tallied(registry, 'gatewise_held_requests_total', 'Requests held while every endpoint of a cluster was down, and what ended the hold (held, left, back).', ['cluster', 'event'] as const, held);
  tallied(registry, 'gatewise_cache_responses_total', 'Requests on routes with a cache, by route and what the cache did: hit, stale (a stale copy answered), updating (a stale-while-revalidate copy answered while a fetch of that stored response was in flight, so it started no revalidation), revalidated (a 304 refreshed the stored copy), collapsed (answered from what another request for the key, which it waited for, stored), miss, bypass (a method the cache does not answer, or a GET or HEAD it does not look up: one with content, or a Host the key does not name).', ['route', 'result'] as const, cacheResults);
  tallied(registry, 'gatewise_cache_recovered_total', 'Failures answered with a stale cached copy instead (recovered from cache), by route and cause: the RFC 9209 error type, or the upstream status ("503").', ['route', 'cause'] as const, recovered);
  tallied(registry, 'gatewise_cache_bypasses_total', 'Requests on routes with a cache that the cache passed by, by route and reason (a fixed list): method (a method the cache does not answer), request-content (a GET with content), unkeyed-host (a Host with a port or a trailing dot the key does not name), unkeyed-field (a field some upstreams read as another URL or method: X-Original-URL, X-Rewrite-URL, X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override), authorization and cookie (a request sent upstream with that field, on a route whose cache.bypassOn names it: its answer may be personal).', ['route', 'reason'] as const, bypasses);
  tallied(registry, 'gatewise_cache_store_refused_total', 'Storable answers to client requests that the store could not keep, by route and reason: too-large (larger than the route\'s maxObjectSize or the whole store), purged (a purge or an invalidation of the key cancelled its store while it came, before a size over the limit refused it), set-cookie (it carried Set-Cookie, which the store never keeps); a background revalidation counts the same as its result in gatewise_cache_revalidations_total.', ['route', 'reason'] as const, storeRefusals);
  tallied(registry, 'gatewise_cache_revalidations_total', 'Background revalidations of stale cached responses (stale-while-revalidate), by route and result: refreshed (a 304 freshened the stored copy), replaced (a new response was stored), kept (the answer was not stored), too-large (a storable answer larger than the route\'s maxObjectSize or the whole store: not stored, the stored copy as it was), purged (the key was purged or invalidated while it ran, before a size over the limit refused the answer: nothing stored), set-cookie (a new answer with Set-Cookie: not stored, the stored copy as it was), dropped, failed, refused (no admission slot).', ['route', 'result'] as const, revalidations);
  tallied(registry, 'gatewise_tls_certificate_reloads_total', 'Certificate files of TLS listeners reloaded after they changed, by listener, file and result (reloaded; failed: the old certificate stays).', ['listener', 'cert', 'result'] as const, certReloads);
  tallied(registry, 'gatewise_tls_acme_orders_total', 'ACME certificate orders of TLS listeners, by listener, result (obtained, renewed, failed) and, for failures, the step that failed (unreachable, account, order, challenge, finalize, storage).', ['listener', 'result', 'reason'] as const, acmeOrders);
  tallied(registry, 'gatewise_auth_lockouts_total', 'Client addresses locked out after too many wrong credentials (admin.lockout, forward.auth.lockout), by face: admin (the bearer token) or forward (proxy users). One per lockout start; the attempts refused during it are in gatewise_requests_total (reason auth_locked_out) on the forward face.', ['face'] as const, lockouts);
  tallied(registry, 'gatewise_auth_lockout_untracked_total', 'Wrong credentials not counted by the lockout (admin.lockout, forward.auth.lockout) because every tracked address (maxAddresses) was locked out, by face. A locked-out address is never forgotten for a newcomer; a newcomer past a table full of lockouts is answered as any wrong credential but not counted. Above zero: maxAddresses is too small for the addresses guessing.', ['face'] as const, untracked);
  sampled(registry, 'gatewise_request_duration_seconds', 'Time from request (or tunnel) start to its end, by face and protocol.', ['face', 'protocol'] as const, duration);
  sampled(registry, 'gatewise_upstream_connect_seconds', 'New upstream connections: time until connected (DNS, TCP and TLS included), by cluster.', ['cluster'] as const, connect);
  sampled(registry, 'gatewise_upstream_tls_seconds', 'New upstream TLS connections: handshake time, by cluster.', ['cluster'] as const, tls);
  sampled(registry, 'gatewise_upstream_response_head_seconds', 'Time from the start of a try to the upstream response head, by cluster.', ['cluster'] as const, head);

  const limits = new Gauge({ name: 'gatewise_admission_limit', help: 'Concurrency limit of a cluster (adaptive limits move), by cluster.', labelNames: ['cluster'] as const, registers: [registry] });
  scraped(registry, 'gatewise_endpoint_state', 'Endpoint standing, one series per state (healthy, unhealthy, unknown health; ejected; draining) set to 1 for the state it is in.', ['cluster', 'endpoint', 'state'] as const, (set) => {
    const t = Date.now();
    for (const c of opts.clusters?.() ?? []) for (const e of c.endpoints) set([c.name, e.nextHop, e.draining ? 'draining' : e.ejectedUntil > t ? 'ejected' : e.health], 1);
  }, 'max');
  scraped(registry, 'gatewise_endpoint_inflight', 'Requests in flight to an endpoint.', ['cluster', 'endpoint'] as const, (set) => {
    for (const c of opts.clusters?.() ?? []) for (const e of c.endpoints) set([c.name, e.nextHop], e.inflight);
  });
  scraped(registry, 'gatewise_admission_queued', 'Requests waiting in a cluster admission queue.', ['cluster'] as const, (set) => {
    for (const c of opts.clusters?.() ?? []) {
      if (c.admission === undefined) continue;
      set([c.name], c.admission.queued);
      limits.set({ cluster: c.name }, c.admission.limit);
    }
  });
  scraped(registry, 'gatewise_tls_certificate_days_left', 'Days until the certificate a TLS listener serves expires (negative: expired), by listener and certificate file.', ['listener', 'cert'] as const, (set) => {
    const t = Date.now();
    for (const c of opts.certificates?.() ?? []) set([c.listener, c.cert], Math.round(((c.notAfter.getTime() - t) / 86_400_000) * 1000) / 1000);
  }, 'max'); // every worker serves the same files: the group's value is theirs, not their sum
  const exits = (fn: (pool: string, s: { id: string; active: number; down: boolean }) => void): void => {
    for (const [name, p] of opts.egress?.()?.pools ?? []) for (const s of p.stats()) fn(name, s);
  };
  scraped(registry, 'gatewise_forward_exit_active', 'Connections open through a forward exit, by pool and exit.', ['pool', 'exit'] as const, (set) => exits((pool, s) => set([pool, s.id], s.active)));
  scraped(registry, 'gatewise_forward_exit_down', 'A forward exit cooling down after failures (1) or usable (0), by pool and exit.', ['pool', 'exit'] as const, (set) => exits((pool, s) => set([pool, s.id], s.down ? 1 : 0)), 'max');
  const state = (fn: (s: { backend: string; degraded: boolean; fallbacks: number; recoveries: number }) => void): void => {
    const s = opts.state?.();
    if (s !== undefined) fn(s);
  };
  scraped(registry, 'gatewise_state_degraded', 'The shared state (Redis, or the primary with --workers) is unavailable and this process runs on local state (1), or not (0), by backend.', ['backend'] as const, (set) => state((s) => set([s.backend], s.degraded ? 1 : 0)), 'max');
  scraped(registry, 'gatewise_state_fallbacks', 'State operations answered from local state because the shared state did not answer within its budget, since start.', ['backend'] as const, (set) => state((s) => set([s.backend], s.fallbacks)));
  scraped(registry, 'gatewise_forward_sticky_sessions', 'Sticky sessions pinned to an exit, by pool.', ['pool'] as const, (set) => {
    for (const [name, p] of opts.egress?.()?.pools ?? []) set([name], p.sessions.size);
  });

  // The label keys of the last record of each face and of the last attempt, with their
  // cells, rebuilt only when a label changed: steady traffic repeats its labels, and a key
  // string built afresh must be flattened and hashed for every map lookup (~1 µs of the
  // ~1.7 µs this subscriber took per record in a microbenchmark; the same string object
  // keeps its hash). Keeping the cells too leaves no map lookup on a repeat (a loop
  // publishing the reverse 1 KiB duel's record: ~0.18 µs to ~0.05 µs per record; in the
  // running gateway this subscriber's share of the main thread fell from 0.83 % to 0.44 %,
  // docs/benchmarks.md §14), and adds
  // to a number in place rather than storing a new one in a map (a byte count past 2^30 is
  // a heap number: one allocation per request per direction before).
  const lastRev = { protocol: '', route: '', cluster: '', status: -2, error: '', reason: '', endedBy: '', cell: requests.cell('') };
  const lastFwd = { protocol: '', status: -2, error: '', reason: '', endedBy: '', plan: '', pool: '', cell: requests.cell(''), traffic: forwardTraffic.cell('') };
  const lastTry = { cluster: '', endpoint: '', connection: '', error: '', cell: attempts.cell(''), connect: connect.list(''), tls: tls.list(''), head: head.list('') };
  /** Per face: its byte cells, and the duration list of its last protocol. */
  const faceOf = (face: string): { up: Cell; down: Cell; protocol: string; duration: Series } => ({
    up: bytes.cell(`${face}${SEP}up`),
    down: bytes.cell(`${face}${SEP}down`),
    protocol: '',
    duration: duration.list(''),
  });
  const faces = { reverse: faceOf('reverse'), forward: faceOf('forward') };
  const countAttempts = (r: ReverseRecord, cluster: string): void => {
    const n = r.attempts.length;
    if (n > 1) retries.add(cluster, n - 1);
    const t = lastTry;
    for (let i = 0; i < n; i++) {
      const a = r.attempts[i]!;
      const connection = a.connection ?? '';
      const aError = a.error ?? '';
      if (t.cluster !== cluster || t.endpoint !== a.endpoint || t.connection !== connection || t.error !== aError) {
        if (t.cluster !== cluster) {
          t.connect = connect.list(cluster);
          t.tls = tls.list(cluster);
          t.head = head.list(cluster);
        }
        t.cluster = cluster;
        t.endpoint = a.endpoint;
        t.connection = connection;
        t.error = aError;
        t.cell = attempts.cell(`${cluster}${SEP}${a.endpoint}${SEP}${connection}${SEP}${aError}`);
      }
      t.cell.n++;
      if (a.connection === 'new' && a.connectedMs !== undefined) sample(t.connect, (a.connectedMs - a.startMs) / 1000);
      if (a.tlsMs !== undefined) sample(t.tls, a.tlsMs / 1000);
      if (a.headersMs !== undefined) sample(t.head, (a.headersMs - a.startMs) / 1000);
    }
  };
  const onRequest = (msg: unknown): void => {
    const r = msg as RequestRecord;
    const status = r.status ?? -1;
    const error = r.error ?? '';
    const reason = r.reason ?? '';
    if (r.face === 'reverse') {
      const cluster = r.cluster ?? '';
      const route = r.route ?? '';
      if (r.background !== undefined) {
        // The cache's own request (background revalidation): its tries count, it is not a client request.
        revalidations.add(`${route}${SEP}${r.revalidation ?? ''}`);
        countAttempts(r, cluster);
        return;
      }
      const c = lastRev;
      if (c.protocol !== r.protocol || c.route !== route || c.cluster !== cluster || c.status !== status || c.error !== error || c.reason !== reason || c.endedBy !== r.endedBy) {
        c.protocol = r.protocol;
        c.route = route;
        c.cluster = cluster;
        c.status = status;
        c.error = error;
        c.reason = reason;
        c.endedBy = r.endedBy;
        c.cell = requests.cell(`reverse${SEP}${r.protocol}${SEP}${route}${SEP}${cluster}${SEP}${status < 0 ? '' : status}${SEP}${error}${SEP}${reason}${SEP}${r.endedBy}`);
      }
      c.cell.n++;
      if (r.cache !== undefined) {
        cacheResults.add(`${r.route ?? ''}${SEP}${r.cache}`);
        if (r.recoveredFrom !== undefined) recovered.add(`${r.route ?? ''}${SEP}${r.recoveredFrom}`);
        if (r.bypass !== undefined) bypasses.add(`${r.route ?? ''}${SEP}${r.bypass}`);
        if (r.storeRefused !== undefined) storeRefusals.add(`${r.route ?? ''}${SEP}${r.storeRefused}`);
      }
      countAttempts(r, cluster);
    } else {
      const plan = r.plan ?? '';
      const pool = r.pool ?? '';
      const c = lastFwd;
      if (c.protocol !== r.protocol || c.status !== status || c.error !== error || c.reason !== reason || c.endedBy !== r.endedBy || c.plan !== plan || c.pool !== pool) {
        c.protocol = r.protocol;
        c.status = status;
        c.error = error;
        c.reason = reason;
        c.endedBy = r.endedBy;
        c.plan = plan;
        c.pool = pool;
        c.cell = requests.cell(`forward${SEP}${r.protocol}${SEP}${SEP}${SEP}${status < 0 ? '' : status}${SEP}${error}${SEP}${reason}${SEP}${r.endedBy}`);
        c.traffic = forwardTraffic.cell(`${r.protocol}${SEP}${plan}${SEP}${pool}${SEP}${error}`);
      }
      c.cell.n++;
      c.traffic.n++;
      if (r.quota !== undefined) quotaHits.add(plan);
    }
    const f = faces[r.face];
    f.up.n += r.bytesUp;
    f.down.n += r.bytesDown;
    if (f.protocol !== r.protocol) {
      f.protocol = r.protocol;
      f.duration = duration.list(`${r.face}${SEP}${r.protocol}`);
    }
    sample(f.duration, r.durationMs / 1000);
  };
  const onOutlier = (msg: unknown): void => {
    const e = msg as { cluster?: string; endpoint: string; event: string };
    outlierEvents.add(`${e.cluster ?? ''}${SEP}${e.endpoint}${SEP}${e.event}`);
  };
  const onHealth = (msg: unknown): void => {
    const e = msg as { cluster?: string; endpoint: string; to: string };
    healthChanges.add(`${e.cluster ?? ''}${SEP}${e.endpoint}${SEP}${e.to}`);
  };
  const onExitFailure = (msg: unknown): void => {
    const e = msg as { pool: string; exit: string; type: string; cooled: boolean };
    exitFailures.add(`${e.pool}${SEP}${e.exit}${SEP}${e.type}${SEP}${e.cooled ? 'true' : 'false'}`);
  };
  const onWait = (msg: unknown): void => {
    const e = msg as { cluster: string; event: string };
    if (e.event !== 'unreachable') held.add(`${e.cluster}${SEP}${e.event}`);
  };
  const onCertificate = (msg: unknown): void => {
    const e = msg as { event: string; listener: string; cert: string };
    if (e.event !== 'loaded') certReloads.add(`${e.listener}${SEP}${e.cert}${SEP}${e.event === 'reloaded' ? 'reloaded' : 'failed'}`);
  };
  const onAcme = (msg: unknown): void => {
    const e = msg as { event: string; listener: string; reason?: string };
    if (e.event === 'obtained' || e.event === 'renewed' || e.event === 'failed') acmeOrders.add(`${e.listener}${SEP}${e.event}${SEP}${e.reason ?? ''}`);
  };
  const onLockout = (msg: unknown): void => {
    lockouts.add((msg as { face: string }).face);
  };
  const onUntracked = (msg: unknown): void => {
    untracked.add((msg as { face: string }).face);
  };
  const onLimit = (msg: unknown): void => {
    const e = msg as { cluster?: string; limit: number };
    limits.set({ cluster: e.cluster ?? '' }, e.limit);
  };
  const channels: Array<[string, (m: unknown) => void]> = [
    [REQUEST_END_CHANNEL, onRequest],
    ['gatewise:upstream:outlier', onOutlier],
    ['gatewise:upstream:health', onHealth],
    ['gatewise:forward:exit-failure', onExitFailure],
    ['gatewise:upstream:endpoint-wait', onWait],
    ['gatewise:upstream:limit', onLimit],
    ['gatewise:tls:certificate', onCertificate],
    ['gatewise:tls:acme', onAcme],
    [AUTH_LOCKOUT_CHANNEL, onLockout],
    [AUTH_UNTRACKED_CHANNEL, onUntracked],
  ];
  for (const [name, fn] of channels) subscribe(name, fn);
  return { registry, detach: () => channels.forEach(([name, fn]) => unsubscribe(name, fn)) };
}

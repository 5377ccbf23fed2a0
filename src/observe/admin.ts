import { createHash, timingSafeEqual } from 'node:crypto';
import { STATUS_CODES, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { isLoopbackAddress } from '../net/ip-address.js';
import { AUTH_LOCKOUT_DEFAULTS, AuthLockout, lockoutLogLine, type AuthLockoutSettings } from '../net/auth-lockout.js';
import { joinLockoutGroup } from '../net/auth-lockout-group.js';
import type { LockoutFleet } from '../net/auth-lockout-fleet.js';
import { reserveOwnListener } from '../net/own-listeners.js';
import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { EgressRouter } from '../egress/egress-router.js';
import type { GateStats } from '../http/connection-gate.js';
import type { PlanEnforcer } from '../tenants/plans.js';
import { DASHBOARD_CSP, DASHBOARD_HTML } from './dashboard.js';
import { explainReason, type LiveTraffic, type UserTraffic } from './live.js';
import { redactSecrets } from './redact.js';
import { browserRefusal, shapeRefusal } from './admin-guard.js';
import { ADMIN_PROBLEMS, AdminProblem, PROBLEM_TYPE, internalProblem, logRouteFailure, problem, problemReply } from './admin-problem.js';
import { createLogger, flushLogger } from './access-log.js';
import { RequestIds } from '../http/request-id.js';

/** What the admin API may read and change in the running gateway. */
export interface AdminControl {
  /** Clusters and their endpoints' status, as JSON-ready data. */
  status(): unknown;
  /** Start or stop draining an endpoint (by URL or host:port). False when unknown. */
  drain(cluster: string, endpoint: string, draining: boolean): boolean;
  /** Per cluster with an admission limit: the limit, requests in flight and queued. */
  admission?(): Record<string, { limit: number; inflight: number; queued: number }>;
  /** The response cache's size (undefined: no route has a cache). */
  cacheStats?(): Record<string, number> | undefined;
  /** Remove stored responses by exact key or key prefix; the number of keys removed (undefined: no cache). */
  purgeCache?(by: { key?: string; prefix?: string }): number | undefined;
}

/** The parts of a running forward proxy the admin API reads (a ForwardProxy has them all). */
export interface AdminForwardView {
  readonly egress: EgressRouter;
  readonly plans: PlanEnforcer;
  connectionStats(): GateStats[];
}

/**
 * The service operations the admin API drives (the forward proxy's `AccountService`). A
 * refusal is thrown as an error with a numeric `status` and a `problem` body (RFC 9457), sent
 * as application/problem+json.
 */
export interface AdminAccounts {
  list(): unknown[];
  get(name: string): unknown;
  create(body: unknown): Promise<unknown>;
  update(name: string, body: unknown): Promise<unknown>;
  setDisabled(name: string, disabled: boolean, reason?: string): Promise<unknown>;
  remove(name: string): Promise<unknown>;
  usage(q: { period: string | null; at: string | null; user: string | null }): Promise<unknown>;
}

export interface AdminOptions {
  /** Default 127.0.0.1. */
  address?: string;
  port: number;
  /** Prometheus registry for /metrics (absent: /metrics answers 404). */
  registry?: Registry;
  /** Readiness for /ready (default: always ready). */
  ready?: () => boolean;
  /** The state layer's health: /ready stays ready while degraded but says so, /status shows it. */
  state?: () => { backend: string; degraded: boolean; since?: string; reason?: string; fallbacks: number; recoveries: number } | undefined;
  /** The reverse gateway's clusters (absent: no reverse gateway runs). A function is asked at each request, so a gateway a reload starts is seen. */
  gateway?: AdminControl | (() => AdminControl | undefined);
  /** The forward proxy (absent: none runs). A function is asked at each request, so a forward proxy a reload starts (or stops) is seen (or gone). */
  forward?: AdminForwardView | (() => AdminForwardView | undefined);
  /** Traffic seen on `gatewise:request:end` (absent: the admin listener makes and attaches its own). */
  live?: LiveTraffic;
  /** The running config (or a function giving it, as a reload replaces it); served by GET /config with its secrets redacted. */
  config?: unknown;
  /** Service operations on forward users (`/accounts`, `/usage`): the forward proxy's AccountService. */
  accounts?: () => AdminAccounts | undefined;
  /** Re-read the config file and apply it (`POST /reload`); absent: the route answers 404. */
  reload?: () => Promise<{ ok: boolean; code?: string }>;
  /**
   * When set, every route but /healthz, /ready, /openapi.json and the dashboard page needs
   * `Authorization: Bearer TOKEN`. A function is asked at each request, so a token a reload
   * changes (or revokes) applies at once.
   */
  token?: string | (() => string | undefined);
  /**
   * Wrong tokens limited per client address (net/auth-lockout.ts; default AUTH_LOCKOUT_DEFAULTS:
   * 10 a minute lock an address out for 1 minute, then longer). A function is asked at each
   * wrong token and lockout check, so a reload's settings apply; it should return the same
   * object while they do not change.
   */
  lockout?: AuthLockoutSettings | (() => AuthLockoutSettings | undefined);
  /**
   * The fleet's wrong-credential count (net/auth-lockout-fleet.ts: the forward proxy's, with
   * `state.redis`), joined as `admin`. Asked at each check of a token, so a reload that starts
   * or stops the forward proxy moves the limiter with it.
   */
  lockoutFleet?: () => LockoutFleet | undefined;
  /**
   * In a worker of `--workers N`: answer /metrics and the JSON API for the whole process
   * group (admin-merge.ts, gathered over IPC by worker-ipc.ts) instead of this worker alone.
   * `perProcessUsage`: each worker counts usage in its own store (quota use is summed).
   */
  group?: { perProcessUsage: boolean; timeoutMs?: number };
  /** The listener's own bounds (defaults: ADMIN_LIMITS). */
  limits?: Partial<AdminLimits>;
  /** Where a route that failed is logged, with the request id its 500 problem names (absent: a logger of `createLogger`'s, to standard output, made at the first failure). */
  logger?: Logger;
}

/** The admin listener's bounds: a few operators and scrapers need few connections and no slow clients. */
export const ADMIN_LIMITS: Readonly<AdminLimits> = { maxConnections: 64, headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, keepAliveTimeoutMs: 2_000 };

/** Bounds of the admin listener's connections. */
export interface AdminLimits {
  /** Connections open at once; a new one past it closes the oldest that is not in a request, or is answered 503 when every one is. */
  maxConnections: number;
  /** Time a client has to send a request head (Node's headersTimeout). */
  headersTimeoutMs: number;
  /** Time a client has to send a whole request, body included (Node's requestTimeout). */
  requestTimeoutMs: number;
  /** How long an idle keep-alive connection is kept. */
  keepAliveTimeoutMs: number;
}

export interface AdminServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

export type Reply = { status: number; body: unknown; type?: string; headers?: Record<string, string> };
export interface Ctx {
  url: URL;
  params: string[];
  req: IncomingMessage;
  /** The caller carries the token, or no token is set and the listener is on loopback: it may read details an open route keeps from others (why /ready's state degraded). */
  trusted?: boolean;
}
export interface Route {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** What the JSON request body holds (OpenAPI), for routes that read one. */
  body?: string;
  /** OpenAPI path template, e.g. `/failures/{requestId}`. */
  path: string;
  summary: string;
  /** No bearer token needed even when one is configured. */
  open?: boolean;
  /** A GET route HEAD also answers (the same status and headers, no body): the probes, for load balancers that probe with HEAD. */
  head?: boolean;
  query?: Array<{ name: string; description: string; required?: boolean; type: 'string' | 'integer' }>;
  responses: Record<string, string>;
  /** The media type of a 200 (default application/json). */
  produces?: string;
  handle(c: Ctx): Reply | Promise<Reply>;
}

const JSON_TYPE = 'application/json';

/** The dashboard page with its Content-Security-Policy (inline script and style allowed by their hashes, API calls to this listener only) and no framing. */
function dashboardPage(): Reply {
  return { status: 200, body: DASHBOARD_HTML, type: 'text/html; charset=utf-8', headers: { 'content-security-policy': DASHBOARD_CSP, 'x-frame-options': 'DENY', 'referrer-policy': 'no-referrer' } };
}

function intParam(url: URL, name: string, dflt: number, max: number): number {
  const v = Number(url.searchParams.get(name) ?? dflt);
  return Number.isInteger(v) && v > 0 ? Math.min(v, max) : dflt;
}

function userView(u: UserTraffic): { user: string; requests: number; bytesUp: number; bytesDown: number; failures: number; lastSeen: string; refusals: Array<ReturnType<typeof explainReason> & { count: number }> } {
  return {
    user: u.user,
    requests: u.requests,
    bytesUp: u.bytesUp,
    bytesDown: u.bytesDown,
    failures: u.failures,
    lastSeen: new Date(u.lastSeen).toISOString(),
    refusals: [...u.reasons]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .map(([code, count]) => ({ ...explainReason(code), count })),
  };
}

/** A user's plan, limits and quota use for the current day and month (from the usage ledger). */
async function userLimits(plans: PlanEnforcer, user: string): Promise<Record<string, unknown>> {
  const plan = plans.planOf(user);
  const quotas: Array<{ quota: string; used: number; limit: number; fraction: number; resetsAt: string }> = [];
  if (plan) {
    for (const period of ['day', 'month'] as const) {
      const lim = period === 'day' ? plan.bytesPerDay : plan.bytesPerMonth;
      if (!lim || (lim.up === undefined && lim.down === undefined)) continue;
      const used = await plans.ledger.read(user, period);
      for (const dir of ['up', 'down'] as const) {
        const limit = lim[dir];
        if (limit === undefined) continue;
        quotas.push({ quota: `bytesPer${period === 'day' ? 'Day' : 'Month'}.${dir}`, used: used[dir], limit, fraction: limit > 0 ? used[dir] / limit : 1, resetsAt: new Date(used.span.resetsAt).toISOString() });
      }
    }
  }
  return {
    plan: plans.planName(user) ?? null,
    limits: plan ? { maxConnections: plan.maxConnections ?? null, requestsPerSecond: plan.requestsPerSecond ?? null, bytesPerDay: plan.bytesPerDay ?? null, bytesPerMonth: plan.bytesPerMonth ?? null, pools: plan.pools ?? null } : null,
    quotas,
  };
}

function routes(o: AdminOptions, live: LiveTraffic, startedAt: number, config: { readonly current: unknown }): Route[] {
  // Asked at each request: a reload may start a face (or stop the forward proxy).
  const gwOf = (): AdminControl | undefined => (typeof o.gateway === 'function' ? o.gateway() : o.gateway);
  const fwdOf = (): AdminForwardView | undefined => (typeof o.forward === 'function' ? o.forward() : o.forward);
  const notRunning = (what: string): Reply => problem('not-running', `no ${what} runs in this process`);
  const table: Route[] = [
    {
      method: 'GET', path: '/', summary: 'The live dashboard: one HTML page (inline script and style, no external assets) that polls this API every second.', open: true,
      responses: { '200': 'The dashboard page.' }, produces: 'text/html',
      handle: () => dashboardPage(),
    },
    {
      method: 'GET', path: '/dashboard', summary: 'The same dashboard page as /.', open: true,
      responses: { '200': 'The dashboard page.' }, produces: 'text/html',
      handle: () => dashboardPage(),
    },
    {
      method: 'GET', path: '/openapi.json', summary: 'This description of the admin API (OpenAPI 3.1).', open: true,
      responses: { '200': 'The OpenAPI document.' },
      handle: () => ({ status: 200, body: openapi(table) }),
    },
    {
      method: 'GET', path: '/healthz', summary: 'Liveness: 200 while the process runs. Says nothing about upstreams. HEAD answers the same without a body.', open: true, head: true,
      responses: { '200': 'Alive (plain text).' }, produces: 'text/plain',
      handle: () => ({ status: 200, body: 'alive: the process runs; this says nothing about upstreams (readiness: /ready)\n' }),
    },
    {
      method: 'GET', path: '/ready', summary: 'Readiness: 200 while accepting traffic, 503 while draining after a stop signal; a degraded shared state is said, and why only to a caller with the token (or to any caller of a loopback listener without one). HEAD answers the same without a body.', open: true, head: true,
      responses: { '200': 'Ready (plain text).', '503': 'Draining (plain text).' }, produces: 'text/plain',
      handle: (c) => {
        const ok = o.ready ? o.ready() : true;
        // Shared state away is not an outage: still ready, on local state, and said. Why it is
        // away (an error that may name an internal host) only to a trusted caller: the route is open.
        const st = o.state?.();
        const state = !st?.degraded ? '' : c.trusted ? `state: degraded (${st.backend} unavailable since ${st.since}: ${st.reason}); limits and sessions are this node's own\n` : 'state: degraded\n';
        return { status: ok ? 200 : 503, body: (ok ? 'ready: accepting traffic\n' : 'not ready: draining after a stop signal\n') + state };
      },
    },
    {
      method: 'GET', path: '/metrics', summary: 'Prometheus metrics of both faces (text exposition format).',
      responses: { '200': 'Metrics.', '404': 'No registry.' }, produces: 'text/plain',
      handle: async () => {
        if (!o.registry) return problem('not-configured', 'no metrics registry was given to the admin listener');
        return { status: 200, body: await o.registry.metrics(), type: o.registry.contentType };
      },
    },
    {
      method: 'GET', path: '/status', summary: 'Overview: readiness, uptime, which faces run, admission limits and queues per cluster, forward listener connection counts (open, waiting, shed, refused).',
      responses: { '200': 'Status.' },
      handle: () => ({
        status: 200,
        body: {
          ready: o.ready ? o.ready() : true,
          startedAt: new Date(startedAt).toISOString(),
          uptimeMs: Date.now() - startedAt,
          faces: { reverse: gwOf() !== undefined, forward: fwdOf() !== undefined },
          admission: gwOf()?.admission?.() ?? {},
          forwardListeners: fwdOf()?.connectionStats() ?? [],
          state: o.state?.(),
        },
      }),
    },
    {
      method: 'GET', path: '/clusters', summary: 'Every cluster of the reverse gateway and the status of its endpoints: available, health, ejected (for how long), draining, in-flight requests, pooled connections.',
      responses: { '200': 'Clusters by name, each an array of endpoints.', '404': 'No reverse gateway runs.' },
      handle: () => {
        const gw = gwOf();
        return gw ? { status: 200, body: gw.status() } : notRunning('reverse gateway');
      },
    },
    {
      method: 'POST', path: '/clusters/{cluster}/drain', summary: 'Stop sending new requests to one endpoint (rolling restarts); in-flight ones finish.',
      query: [{ name: 'endpoint', description: 'The endpoint, as host:port or URL.', required: true, type: 'string' }],
      responses: { '200': 'Draining.', '400': 'No endpoint parameter.', '404': 'No such cluster or endpoint.' },
      handle: (c) => drain(c, true),
    },
    {
      method: 'POST', path: '/clusters/{cluster}/undrain', summary: 'Let traffic back to a drained endpoint.',
      query: [{ name: 'endpoint', description: 'The endpoint, as host:port or URL.', required: true, type: 'string' }],
      responses: { '200': 'Not draining.', '400': 'No endpoint parameter.', '404': 'No such cluster or endpoint.' },
      handle: (c) => drain(c, false),
    },
    {
      method: 'GET', path: '/cache', summary: 'The response cache: keys, stored responses (variants), bytes held, the size bound, evictions, keys with a collapsed request in flight.',
      responses: { '200': 'The store\'s counts.', '404': 'No route has a cache.' },
      handle: () => {
        const gw = gwOf();
        if (!gw) return notRunning('reverse gateway');
        const stats = gw.cacheStats?.();
        return stats === undefined ? noCache() : { status: 200, body: stats };
      },
    },
    {
      method: 'POST', path: '/cache/purge', summary: 'Remove stored responses: one target on every route that stored it (host without port, then path and query: example.com/img/a.png?v=2), or every target with a prefix (example.com/img/).',
      query: [
        { name: 'key', description: 'An exact target (host and path), purged on every route; any spelling of it (host case and port, path encodings, // and dot segments are normalised as a request\'s).', type: 'string' },
        { name: 'prefix', description: 'A key prefix (with its host): every key starting with it.', type: 'string' },
      ],
      responses: { '200': 'Purged: how many keys (one per route that held a target).', '400': 'Neither key nor prefix.', '404': 'No route has a cache.' },
      handle: (c) => {
        const key = c.url.searchParams.get('key') ?? undefined;
        const prefix = c.url.searchParams.get('prefix') ?? undefined;
        if (!key && !prefix) return problem('missing-parameter', 'give the key or the prefix query parameter');
        const gw = gwOf();
        if (!gw) return notRunning('reverse gateway');
        const n = gw.purgeCache?.({ key, prefix });
        return n === undefined ? noCache() : { status: 200, body: { purged: n, key: key ?? null, prefix: prefix ?? null } };
      },
    },
    {
      method: 'GET', path: '/exits', summary: 'Egress pools of the forward proxy: strategy, live sticky sessions, and per exit connections active, uses, and whether it is down (cooling down after failures).',
      responses: { '200': 'Pools by name.', '404': 'No forward proxy runs.' },
      handle: () => {
        const fwd = fwdOf();
        if (!fwd) return notRunning('forward proxy');
        const pools: Record<string, unknown> = {};
        for (const [name, p] of fwd.egress.pools) {
          const stats = new Map(p.stats().map((s) => [s.id, s]));
          pools[name] = { strategy: p.strategy, sessions: p.sessions.size, exits: p.exits.map((e) => ({ exit: e.label, kind: e.kind, weight: e.weight, ...stats.get(e.id), id: undefined })) };
        }
        return { status: 200, body: { pools } };
      },
    },
    {
      method: 'GET', path: '/sessions', summary: 'Live sticky sessions of the forward proxy: pool, user, session id, the exit it is pinned to, age, time left and idle time.',
      query: [{ name: 'limit', description: 'At most this many (default 1000).', type: 'integer' }],
      responses: { '200': 'Sessions.', '404': 'No forward proxy runs.' },
      handle: (c) => {
        const fwd = fwdOf();
        if (!fwd) return notRunning('forward proxy');
        const limit = intParam(c.url, 'limit', 1000, 100_000);
        const now = Date.now();
        const out: unknown[] = [];
        let total = 0;
        for (const [name, p] of fwd.egress.pools) {
          for (const [key, pin] of p.sessions.live()) {
            total++;
            if (out.length >= limit) continue;
            const bar = key.indexOf('|');
            const user = key.slice(0, bar);
            const session = key.slice(bar + 1);
            out.push({ pool: name, user: user === '-' ? null : user, session: session === '*' ? null : session, exit: pin.exitId, ageMs: now - pin.created, expiresInMs: Math.max(0, pin.expires - now), idleMs: now - pin.lastUsed });
          }
        }
        return { status: 200, body: { total, sessions: out } };
      },
    },
    {
      method: 'GET', path: '/users', summary: 'Forward users seen since start, most bytes first: requests, bytes up and down, their plan, limits and quota use (day and month), and their top refusal reasons with what each means.',
      query: [{ name: 'limit', description: 'At most this many users (default 50).', type: 'integer' }],
      responses: { '200': 'Users.', '404': 'No forward proxy runs.' },
      handle: async (c) => {
        const fwd = fwdOf();
        if (!fwd) return notRunning('forward proxy');
        const top = live.users().slice(0, intParam(c.url, 'limit', 50, 1000));
        return { status: 200, body: { users: await Promise.all(top.map(async (u) => ({ ...userView(u), ...(await userLimits(fwd.plans, u.user)) }))) } };
      },
    },
    {
      method: 'GET', path: '/users/{user}', summary: 'One forward user: usage, plan, limits, quota use and top refusal reasons.',
      responses: { '200': 'The user.', '404': 'Not seen since start, or no forward proxy runs.' },
      handle: async (c) => {
        const fwd = fwdOf();
        if (!fwd) return notRunning('forward proxy');
        const u = live.user(c.params[0]!);
        if (!u) return problem('not-found', `user ${c.params[0]} has not been seen since start`);
        return { status: 200, body: { ...userView(u), ...(await userLimits(fwd.plans, u.user)) } };
      },
    },
    {
      method: 'GET', path: '/traffic', summary: 'Requests per second by face and failures per second by cause (reason or RFC 9209 error type) over the last minutes, with totals and each cause in plain words.',
      query: [{ name: 'seconds', description: 'How many seconds back (default 300, at most 600).', type: 'integer' }],
      responses: { '200': 'Per-second counts.' },
      handle: (c) => ({ status: 200, body: live.timeline(intParam(c.url, 'seconds', 300, 600)) }),
    },
    {
      method: 'GET', path: '/failures', summary: 'Recent failures of both faces, newest first, from a bounded ring buffer: each the whole request record (the same fields as its access-log line) with its cause in plain words.',
      query: [{ name: 'limit', description: 'At most this many (default 100).', type: 'integer' }],
      responses: { '200': 'Failures.' },
      handle: (c) => ({ status: 200, body: { failures: live.failures(intParam(c.url, 'limit', 100, 100_000)).map((r) => ({ ...r, explain: explainReason(r.reason ?? r.error ?? '') })) } }),
    },
    {
      method: 'GET', path: '/failures/{requestId}', summary: 'One failure by request id (the X-Request-Id the client saw): the whole record, attempts included.',
      responses: { '200': 'The record.', '404': 'Not a failure, or already out of the ring buffer.' },
      handle: (c) => {
        const r = live.failure(c.params[0]!);
        if (!r) return problem('not-found', `no recent failure with request id ${c.params[0]} (only failures are kept, and only the most recent ones)`);
        return { status: 200, body: { ...r, explain: explainReason(r.reason ?? r.error ?? '') } };
      },
    },
    {
      method: 'GET', path: '/accounts', summary: 'Every forward user (config file and users file) with plan, limits, allowlist, expiry and whether it may authenticate now; never the password hash.',
      responses: { '200': 'Accounts.', '404': 'No forward proxy runs.' },
      handle: () => withAccounts((a) => ({ status: 200, body: { accounts: a.list() } })),
    },
    {
      method: 'POST', path: '/accounts', summary: 'Create a user in the users file (written atomically, applied at once).',
      body: 'An account: name, and password (plain, hashed before it is stored) or passwordHash, or allowFrom; optional plan, maxConnections, maxTunnels, trafficLimit, trafficPeriod, expires, disabled, allowFrom, allow, deny.',
      responses: { '201': 'Created: the account.', '400': 'Invalid input (problem+json naming each field).', '409': 'The name is taken, or no users file is configured.' },
      handle: (c) => withAccounts(async (a) => ({ status: 201, body: await a.create(await jsonBody(c.req)) })),
    },
    {
      method: 'GET', path: '/accounts/{user}', summary: 'One forward user.',
      responses: { '200': 'The account.', '404': 'No such user.' },
      handle: (c) => withAccounts((a) => ({ status: 200, body: a.get(c.params[0]!) })),
    },
    {
      method: 'PATCH', path: '/accounts/{user}', summary: 'Change a user of the users file: any field of POST /accounts but name; null removes a field (a limit, the expiry, the plan).',
      body: 'The fields to change.',
      responses: { '200': 'The account after the change.', '400': 'Invalid input (problem+json naming each field).', '404': 'No such user in the users file.', '409': 'The user is in the config file, or no users file is configured.' },
      handle: (c) => withAccounts(async (a) => ({ status: 200, body: await a.update(c.params[0]!, await jsonBody(c.req)) })),
    },
    {
      method: 'DELETE', path: '/accounts/{user}', summary: 'Delete a user of the users file.',
      responses: { '200': 'Deleted.', '404': 'No such user in the users file.', '409': 'The user is in the config file, or no users file is configured.' },
      handle: (c) => withAccounts(async (a) => ({ status: 200, body: await a.remove(c.params[0]!) })),
    },
    {
      method: 'POST', path: '/accounts/{user}/disable', summary: 'Disable a user (refused from now on, as a wrong password is; open connections keep running).',
      query: [{ name: 'reason', description: 'Why (kept as disabledReason).', type: 'string' }],
      responses: { '200': 'The account, disabled.', '404': 'No such user in the users file.', '409': 'The user is in the config file, or no users file is configured.' },
      handle: (c) => withAccounts(async (a) => ({ status: 200, body: await a.setDisabled(c.params[0]!, true, c.url.searchParams.get('reason') ?? undefined) })),
    },
    {
      method: 'POST', path: '/accounts/{user}/enable', summary: 'Enable a disabled user again (a user over its trafficLimit is disabled again by the next sweep: raise or remove the limit first).',
      responses: { '200': 'The account, enabled.', '404': 'No such user in the users file.', '409': 'The user is in the config file, or no users file is configured.' },
      handle: (c) => withAccounts(async (a) => ({ status: 200, body: await a.setDisabled(c.params[0]!, false) })),
    },
    {
      method: 'GET', path: '/usage', summary: 'Usage by user for one day or month (UTC): bytes up, down, total and requests, with each user\'s trafficLimit for that period.',
      query: [
        { name: 'period', description: 'day (default) or month.', type: 'string' },
        { name: 'at', description: 'Which one: 2026-12-03 or 2026-12 (default: the current one). Days are kept two days, months 32 days.', type: 'string' },
        { name: 'user', description: 'One user (default: every user).', type: 'string' },
      ],
      responses: { '200': 'Usage.', '400': 'Bad period or at (problem+json).', '404': 'No such user, or no forward proxy runs.' },
      handle: (c) => withAccounts(async (a) => ({ status: 200, body: await a.usage({ period: c.url.searchParams.get('period'), at: c.url.searchParams.get('at'), user: c.url.searchParams.get('user') }) })),
    },
    {
      method: 'POST', path: '/reload', summary: 'Re-read the config file and apply it in place (as SIGHUP does): listeners, clusters, routes, pools, plans and users change; requests and tunnels in flight finish on the config they started with. An invalid config is refused with its problems (the same `gatewise check` prints) and the running one stays.',
      responses: { '200': 'Applied: what changed, and settings that need a restart.', '404': 'Not started from a config file.', '422': 'Refused: the new config is invalid (problems by path and line) or could not be applied; the running config stays.' },
      handle: async () => {
        if (!o.reload) return problem('not-configured', 'reload is not available in this process (it was not started from a config file)');
        const r = await o.reload();
        if (r.ok) return { status: 200, body: r };
        // Refused: the problem carries the result's members (ok, file, problems by path and line).
        const { code, error, ...rest } = r as { ok: false; code?: string; error?: string; [k: string]: unknown };
        return problem(code === 'no_config_file' ? 'not-configured' : code === 'invalid' ? 'invalid-config' : 'reload-failed', error ?? 'the reload was refused', undefined, rest);
      },
    },
    {
      method: 'GET', path: '/config', summary: 'The running config with its secrets redacted (passwords and their hashes, tokens, credentials in proxy URLs).',
      responses: { '200': 'The config.', '404': 'Not given to the admin listener.' },
      handle: () => {
        const c = config.current;
        return c === undefined ? problem('not-configured', 'no config was given to the admin listener') : { status: 200, body: c };
      },
    },
  ];
  return table;
  function noCache(): Reply {
    return problem('not-configured', 'no route of this gateway has a cache');
  }
  async function withAccounts(fn: (a: AdminAccounts) => Reply | Promise<Reply>): Promise<Reply> {
    const a = o.accounts?.();
    if (!a) return notRunning('forward proxy');
    try {
      return await fn(a);
    } catch (err) {
      if (err instanceof AdminProblem) return problemReply(err);
      throw err;
    }
  }
  function drain(c: Ctx, draining: boolean): Reply {
    const gw = gwOf();
    if (!gw) return notRunning('reverse gateway');
    const endpoint = c.url.searchParams.get('endpoint');
    if (!endpoint) return problem('missing-parameter', 'give the endpoint query parameter (host:port or URL)');
    const cluster = c.params[0]!;
    return gw.drain(cluster, endpoint, draining)
      ? { status: 200, body: { cluster, endpoint, draining } }
      : problem('not-found', `no endpoint ${endpoint} in cluster ${cluster}`);
  }
}

const PROBLEM_CONTENT = { [PROBLEM_TYPE]: { schema: { $ref: '#/components/schemas/Problem' } } };

/** A problem written on a raw socket (no request object: a refused connection, a parser error), then the connection closed. */
function endWithProblem(sock: Socket, p: { status: number; body: unknown }): void {
  const body = JSON.stringify(p.body, null, 2) + '\n';
  sock.once('finish', () => sock.destroy());
  sock.end(`HTTP/1.1 ${p.status} ${STATUS_CODES[p.status] ?? ''}\r\ncontent-type: ${PROBLEM_TYPE}\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

/** The OpenAPI 3.1 document of a route table. */
function openapi(table: readonly Route[]): unknown {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of table) {
    const params = [...r.path.matchAll(/\{([^}]+)\}/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    for (const q of r.query ?? []) params.push({ name: q.name, in: 'query', required: q.required ?? false, schema: { type: q.type }, description: q.description } as never);
    if (r.method !== 'GET' && !r.body) params.push({ name: 'Gatewise-Admin', in: 'header', required: false, schema: { type: 'string' }, description: 'Send 1 (any value). A request without a body must carry this header, Authorization: Bearer or a JSON Content-Type, none of which a cross-site page can send without a preflight; else 403.' } as never);
    const responses: Record<string, unknown> = {};
    for (const [code, description] of Object.entries(r.responses)) {
      // Every refusal is a problem (admin-problem.ts); a success is the route's own type.
      responses[code] = code.startsWith('2') ? { description, content: { [r.produces ?? JSON_TYPE]: {} } } : { description, content: PROBLEM_CONTENT };
    }
    if (!r.open) responses['401'] = { description: 'A bearer token is configured and the request did not carry it.', content: PROBLEM_CONTENT };
    if (!r.open) responses['429'] = { description: 'A bearer token is configured and too many wrong ones came from this address (admin.lockout): refused until Retry-After, the right token too.', headers: { 'Retry-After': { schema: { type: 'integer' }, description: 'Seconds until the lockout ends.' } }, content: PROBLEM_CONTENT };
    const op = {
      summary: r.summary,
      ...(params.length ? { parameters: params } : {}),
      ...(r.body ? { requestBody: { required: true, description: r.body, content: { [JSON_TYPE]: {} } } } : {}),
      ...(r.open ? { security: [] } : {}),
      responses,
    };
    (paths[r.path] ??= {})[r.method.toLowerCase()] = op;
    if (r.head) paths[r.path]!.head = { ...op, summary: `As GET ${r.path}, without a body.`, responses: Object.fromEntries(Object.entries(r.responses).map(([code, description]) => [code, { description }])) };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Gatewise admin API', version: '1', description: 'Status, live traffic, failures and control of a running Gatewise (reverse gateway and forward proxy). See docs/admin.md.' },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'Only when admin.token is set.' } },
      schemas: {
        Problem: {
          type: 'object',
          description: 'Every refusal of the admin API (RFC 9457): the code is stable, the status is the code\'s (docs/admin.md).',
          required: ['type', 'title', 'status', 'code', 'detail'],
          properties: {
            type: { type: 'string', description: 'tag:gatewise,2026:admin:<code>' },
            title: { type: 'string' },
            status: { type: 'integer' },
            code: { type: 'string', enum: Object.keys(ADMIN_PROBLEMS) },
            detail: { type: 'string', description: 'What was refused and why, for this request.' },
            errors: { type: 'array', items: { type: 'object', properties: { field: { type: 'string' }, message: { type: 'string' } } } },
            requestId: { type: 'string', description: 'On a 500 `internal`: the id under which the gateway\'s log holds the error (what was thrown is not in the answer).' },
          },
        },
      },
    },
    security: [{ bearer: [] }],
    paths,
  };
}

/** A path some route has, asked with a method none of them takes: the methods they take (RFC 9110 §10.2.1 `Allow`), OPTIONS included. */
export interface WrongMethod {
  readonly allow: string;
}

/**
 * The route for `method` at `pathname`; or, when routes have the path but none the method,
 * the methods they take, from the table (what a 405's `Allow` and an OPTIONS answer say:
 * each route's method, HEAD beside a GET that answers it, and OPTIONS, which the listener
 * answers for any path a route has); undefined when no route has the path.
 */
export function match(table: readonly Route[], method: string, pathname: string): { route: Route; params: string[] } | WrongMethod | undefined {
  const parts = pathname.split('/').filter(Boolean);
  let allowed: Set<string> | undefined;
  for (const r of table) {
    const tpl = r.path.split('/').filter(Boolean);
    if (tpl.length !== parts.length) continue;
    const params: string[] = [];
    let ok = true;
    for (let i = 0; i < tpl.length && ok; i++) {
      if (tpl[i]!.startsWith('{')) {
        try {
          params.push(decodeURIComponent(parts[i]!));
        } catch {
          ok = false;
        }
      } else ok = tpl[i] === parts[i];
    }
    if (!ok) continue;
    if (r.method !== method && !(method === 'HEAD' && r.method === 'GET' && r.head)) {
      allowed ??= new Set(['OPTIONS']);
      allowed.add(r.method);
      if (r.method === 'GET' && r.head) allowed.add('HEAD');
      continue;
    }
    return { route: r, params };
  }
  return allowed === undefined ? undefined : { allow: [...allowed].join(', ') };
}

/** A request's JSON body (at most 64 KiB); a bad one is a 400 problem naming the body. */
async function jsonBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > 65536) throw bodyProblem('the request body is larger than 64 KiB');
    chunks.push(c as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw bodyProblem('a JSON object is expected in the request body (Content-Type: application/json)');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw bodyProblem(`the request body is not JSON: ${(err as Error).message}`);
  }
}

function bodyProblem(message: string): AdminProblem {
  return new AdminProblem('invalid-input', 'the request body is not valid', [{ field: '(body)', message }]);
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Whether the request carries the bearer token (compared in constant time). */
function authorized(req: IncomingMessage, want: Buffer): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return m !== null && timingSafeEqual(digest(m[1]!), want);
}

/** The admin routes served (method and OpenAPI path) — for tests and docs. */
export const ADMIN_ROUTES: ReadonlyArray<{ method: string; path: string }> = routes({ port: 0 }, undefined as never, 0, { current: undefined }).flatMap((r) => [{ method: r.method, path: r.path }, ...(r.head ? [{ method: 'HEAD', path: r.path }] : [])]);

/**
 * The admin listener: JSON status of clusters, endpoints, exits, pools, sessions, users and
 * recent failures; the redacted config; drain and undrain; Prometheus `/metrics`;
 * `/healthz` (liveness) and `/ready` (readiness); `/openapi.json`; and the live dashboard at
 * `/`. Bind it to loopback; with `token`, every route but the open ones needs
 * `Authorization: Bearer TOKEN`. See docs/admin.md.
 */
export async function startAdmin(opts: AdminOptions): Promise<AdminServer>;
/** The older form: address, port, registry, readiness and the gateway's control. */
export async function startAdmin(address: string, port: number, registry: Registry, health: () => boolean, control?: AdminControl): Promise<AdminServer>;
export async function startAdmin(a: AdminOptions | string, port?: number, registry?: Registry, health?: () => boolean, control?: AdminControl): Promise<AdminServer> {
  const o: AdminOptions = typeof a === 'string' ? { address: a, port: port!, registry, ready: health, gateway: control } : a;
  const ownLive = o.live === undefined ? new (await import('./live.js')).LiveTraffic().attach() : undefined;
  const live = o.live ?? ownLive!;
  const cfg = o.config;
  const config = typeof cfg === 'function' ? { get current() { return redactSecrets((cfg as () => unknown)()); } } : { current: cfg === undefined ? undefined : redactSecrets(cfg) };
  const table = routes(o, live, Date.now(), config);
  // The token's digest, made again only when the token changes (a reload).
  let seen: { token: string | undefined; digest: Buffer | undefined } = { token: undefined, digest: undefined };
  const wanted = (): Buffer | undefined => {
    const token = typeof o.token === 'function' ? o.token() : o.token;
    if (token !== seen.token) seen = { token, digest: token === undefined ? undefined : digest(token) };
    return seen.digest;
  };
  // A route that fails is logged under a request id its 500 names (admin-problem.ts internalProblem).
  const ids = new RequestIds();
  let ownLogger: Logger | undefined;
  const log = (): Logger => o.logger ?? (ownLogger ??= createLogger());
  // Wrong tokens per client address: a locked-out address gets 429 before its token is compared.
  const lockoutOf = (): AuthLockoutSettings => (typeof o.lockout === 'function' ? o.lockout() : o.lockout) ?? AUTH_LOCKOUT_DEFAULTS;
  const lockout = new AuthLockout('admin', lockoutOf(), (e) => log().warn(...lockoutLogLine(e)));
  // In a worker of --workers N: one count for the group (net/auth-lockout-group.ts).
  const leaveLockoutGroup = joinLockoutGroup('admin', lockout);
  // With Redis: one count for the fleet (net/auth-lockout-fleet.ts), followed as the forward proxy comes and goes.
  let fleet: LockoutFleet | undefined;
  let leaveFleet = (): void => {};
  const lockoutNow = (): AuthLockout => {
    const s = lockoutOf();
    if (s !== lockout.settings) lockout.configure(s);
    const f = o.lockoutFleet?.();
    if (f !== fleet) {
      leaveFleet();
      fleet = f;
      leaveFleet = f?.join('admin', lockout) ?? (() => {});
    }
    return lockout;
  };
  lockoutNow();
  // With Redis: the fleet's lockouts in force, in the table before the first token is checked (bounded by state.timeout).
  await fleet?.learned();
  const group = o.group ? await (await import('./admin-group.js')).adminGroup(o.group, table, match, o.registry, { ids, log }) : undefined;
  const lim: AdminLimits = { ...ADMIN_LIMITS, ...o.limits };
  // Connections open, oldest activity first; `busy`: requests in progress on it. Their deadlines
  // (head, whole request, idle keep-alive) are Node's own, set below.
  const open = new Map<Socket, { busy: number }>();
  // Whether the listener is bound to loopback (set once it listens): without a token, only its own host's callers reach it.
  let loopback = false;
  const server = createServer({
    headersTimeout: lim.headersTimeoutMs,
    requestTimeout: lim.requestTimeoutMs,
    keepAliveTimeout: lim.keepAliveTimeoutMs,
    // Node looks for connections past their deadlines this often (its default, 30 s, would let them overstay).
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(lim.headersTimeoutMs / 2))),
  }, (req: IncomingMessage, res: ServerResponse) => {
    const conn = open.get(req.socket);
    if (conn) {
      const sock = req.socket;
      conn.busy++;
      res.once('close', () => {
        conn.busy--;
        // Active again: the last to be closed to make room.
        if (open.delete(sock)) open.set(sock, conn);
      });
    }
    const send = (r: Reply & { headers?: Record<string, string> }): void => {
      if (res.headersSent) return;
      if (r.headers) for (const [k, v] of Object.entries(r.headers)) res.setHeader(k, v);
      const text = typeof r.body === 'string' ? r.body : JSON.stringify(r.body, null, 2) + '\n';
      // nosniff on every answer: a JSON or text body that carries client data is never read as HTML or script.
      // A HEAD gets the GET's headers, Content-Length included, and Node sends no body.
      res.writeHead(r.status, { 'content-type': r.type ?? (typeof r.body === 'string' ? 'text/plain; charset=utf-8' : JSON_TYPE), 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
      res.end(text);
    };
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://admin');
    } catch {
      return send(problem('bad-target', `the request target ${JSON.stringify(req.url ?? '')} is not a valid URL path`));
    }
    const m = match(table, req.method ?? 'GET', url.pathname);
    if (m === undefined) return send(problem('no-route', `no admin route is at ${url.pathname}; every route is listed in /openapi.json`));
    if ('allow' in m) {
      // RFC 9110: a 405 says what the path takes (§15.5.6), and OPTIONS answers it (§9.3.7),
      // with no content. Before the token check, as /openapi.json tells as much to anyone.
      res.setHeader('allow', m.allow);
      if (req.method === 'OPTIONS') return send({ status: 200, body: '' });
      return send(problem('method-not-allowed', `method ${req.method} is not allowed on ${url.pathname} (Allow: ${m.allow}); see /openapi.json`));
    }
    const want = wanted();
    const refused = browserRefusal(req, want !== undefined);
    if (refused !== undefined) return send(problemReply(refused));
    // With a token: an address that sent too many wrong ones is refused without the token being
    // compared, the right one too (else the lockout would tell which guess was right); an open
    // route still answers it, as a caller without the token. A wrong token counts; none does not.
    const locked = want !== undefined && lockoutNow().lockouts > 0 ? lockout.lockedFor(req.socket.remoteAddress, req.socket) : 0;
    if (locked > 0 && !m.route.open) {
      const seconds = Math.max(1, Math.ceil(locked / 1000));
      res.setHeader('retry-after', String(seconds));
      return send(problem('locked-out', `too many wrong tokens came from this address; retry after ${seconds} s`));
    }
    const trusted = want !== undefined ? locked === 0 && authorized(req, want) : loopback;
    if (want !== undefined && locked === 0 && !trusted && req.headers.authorization !== undefined) lockout.failed(req.socket.remoteAddress, req.socket);
    if (want && !m.route.open && !trusted) {
      res.setHeader('www-authenticate', 'Bearer realm="gatewise-admin"');
      return send(problem('unauthorized', want && req.headers.authorization ? 'the bearer token is not this listener\'s (admin.token)' : 'send Authorization: Bearer TOKEN (admin.token)'));
    }
    // A second guard besides Origin (admin-guard.ts): a body that changes state must be JSON,
    // and a request without one must carry a header a cross-site simple request cannot.
    const shape = shapeRefusal(req);
    if (shape !== undefined) {
      if (shape.code === 'unsupported-media-type') res.setHeader('connection', 'close'); // its body is not read
      return send(problemReply(shape));
    }
    const answer = group?.answers(m.route, url);
    (answer ?? Promise.resolve().then(() => m.route.handle({ url, params: m.params, req, trusted })))
      .then(send, (err: unknown) => {
        if (err instanceof AdminProblem) return send(problemReply(err));
        const requestId = ids.next();
        logRouteFailure(log(), requestId, err, { method: req.method, path: url.pathname });
        send(internalProblem(requestId));
      });
  });
  // What Node's parser refuses (a malformed head, one past its size, one too slow) is a problem
  // too; Node would answer a bare 400, 431 or 408.
  server.on('clientError', (err: Error & { code?: string }, sock: Socket) => {
    if (!sock.writable || (sock as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent) return void sock.destroy();
    const code = err.code === 'HPE_HEADER_OVERFLOW' ? 'head-too-large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'request-timeout' : 'bad-request';
    endWithProblem(sock, problem(code, code === 'bad-request' ? `the request is not valid HTTP/1.1 (${err.code ?? err.message})` : code === 'head-too-large' ? 'the request head is larger than the listener takes (16 KiB)' : 'the request did not arrive in time'));
  });
  server.on('connection', (sock: Socket) => {
    if (open.size >= lim.maxConnections) {
      // Full: the oldest connection not in a request (idle, or still sending its head) makes room,
      // so a flood of idle or slow connections cannot keep a probe or an operator out.
      let victim: Socket | undefined;
      for (const [s, c] of open) {
        if (c.busy === 0) {
          victim = s;
          break;
        }
      }
      if (victim) {
        open.delete(victim);
        victim.destroy();
      } else {
        endWithProblem(sock, problem('busy', `the admin listener has ${lim.maxConnections} connections with a request in progress; try again`));
        return;
      }
    }
    open.set(sock, { busy: 0 });
    sock.once('close', () => open.delete(sock));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.address ?? '127.0.0.1', () => resolve());
  }).catch((err: unknown) => {
    ownLive?.detach();
    group?.close();
    leaveFleet();
    leaveLockoutGroup();
    throw err;
  });
  const addr = server.address() as AddressInfo;
  loopback = isLoopbackAddress(addr.address);
  // This process's forward proxy never dials this listener, whatever its rules (net/own-listeners.ts).
  const release = reserveOwnListener(addr.address, addr.port);
  return {
    server,
    url: `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`,
    close: () =>
      new Promise<void>((r) => {
        release();
        ownLive?.detach();
        group?.close();
        leaveFleet();
        leaveLockoutGroup();
        if (ownLogger) flushLogger(ownLogger);
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

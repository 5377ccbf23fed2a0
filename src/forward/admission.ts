import { Failure } from '../failure/index.js';
import { limitRefusal, type PlanAsk } from '../tenants/index.js';
import type { ForwardContext } from './context.js';
import type { EgressRoute } from '../egress/index.js';
import type { AdmitAsk, AdmitResult, SharedState } from '../state/index.js';
import { admitPlan } from './egress-admission.js';

const ANONYMOUS = '-';

type Release = () => void;

/**
 * The whole admission of one request, tunnel or association once it is authorised: the
 * plan (pool, byte quotas, requests per second), then a concurrency slot. Returns the
 * release function or the refusal. With a store that answers an admission whole (Redis),
 * the plan's checks and the sold limits' leases are one call to it (one round trip, nothing
 * taken when refused); otherwise the plan, then `admit`.
 */
export function admitRequest(ctx: ForwardContext, route: EgressRoute, host: string, kind: 'request' | 'tunnel', nextHop: string): Release | Failure | Promise<Release | Failure> {
  const shared = ctx.shared;
  if (shared !== undefined && shared.combined && route.user !== null) return admitCombined(ctx, shared, route, route.user, host, kind, nextHop);
  const planned = admitPlan(ctx, route, host);
  if (planned instanceof Promise) return planned.then((refusal) => refusal ?? admit(ctx, route.user, kind, nextHop));
  return planned ?? admit(ctx, route.user, kind, nextHop);
}

/** `admitRequest` through `SharedState.admit`: per-node ceilings counted here first (no I/O when they refuse), then one call for the rest. */
function admitCombined(
  ctx: ForwardContext,
  shared: SharedState,
  route: EgressRoute,
  user: string,
  host: string,
  kind: 'request' | 'tunnel',
  nextHop: string,
): Release | Failure | Promise<Release | Failure> {
  const pool = ctx.egress.poolName(route, host);
  if (pool instanceof Failure) return pool;
  const notInPlan = ctx.plans.checkPool(user, pool);
  if (notInPlan) return notInPlan;
  const plan = ctx.plans.ask(user);
  if (plan instanceof Failure) return plan;
  const own = ctx.settings.userLimits.get(user);
  const planMax = own?.maxConnections === undefined ? ctx.plans.maxConnections(user) : undefined;
  const soldConn = own?.maxConnections ?? planMax;
  const soldTun = kind === 'tunnel' ? own?.maxTunnels : undefined;
  let releaseConn: Release | undefined;
  let releaseTun: Release | undefined;
  if (soldConn === undefined) {
    const max = ctx.settings.maxConnectionsPerUser;
    releaseConn = ctx.limits.tryAcquire(user, 'connections', max);
    if (!releaseConn) return connRefused(ctx, user, user, undefined, max, nextHop);
  }
  if (kind === 'tunnel' && soldTun === undefined) {
    const max = ctx.settings.maxTunnelsPerUser;
    releaseTun = ctx.limits.tryAcquire(user, 'tunnels', max);
    if (!releaseTun) {
      releaseConn?.();
      return tunRefused(user, max, nextHop);
    }
  }
  const leases = leasesFor(ctx, user, soldConn, soldTun);
  if (leases.length === 0 && (plan === undefined || (plan.rate === undefined && plan.quota.length === 0))) return settleCombined(ctx, user, plan, leases, { ok: true, release: noop, usage: undefined }, releaseConn, releaseTun, planMax, soldConn, soldTun, nextHop);
  const r = shared.admit(askOf(plan, leases));
  if (!(r instanceof Promise)) return settleCombined(ctx, user, plan, leases, r, releaseConn, releaseTun, planMax, soldConn, soldTun, nextHop);
  return r.then((res) => settleCombined(ctx, user, plan, leases, res, releaseConn, releaseTun, planMax, soldConn, soldTun, nextHop));
}

/**
 * `admitCombined`'s verdict on the store's answer. A function of its arguments rather than a
 * closure made per admission, and one release closure (none when the node took no slot of its
 * own): the combined admission allocated ~0.9 KB per tunnel more than the in-memory one
 * (sampling heap profiler, docs/benchmarks.md §18), a third of it the closures and the ask made here.
 */
function settleCombined(
  ctx: ForwardContext,
  user: string,
  plan: PlanAsk | undefined,
  leases: Leases,
  res: AdmitResult,
  releaseConn: Release | undefined,
  releaseTun: Release | undefined,
  planMax: number | undefined,
  soldConn: number | undefined,
  soldTun: number | undefined,
  nextHop: string,
): Release | Failure {
  const refusal = plan === undefined ? undefined : ctx.plans.settle(user, plan, res);
  if (refusal === undefined && res.ok) return releaseWith(res.release, releaseConn, releaseTun);
  if (res.ok) res.release();
  releaseTun?.();
  releaseConn?.();
  if (refusal !== undefined) return refusal;
  if (!res.ok && res.refused === 'lease' && leases[res.index]?.key.startsWith('tun:')) return tunRefused(user, soldTun!, nextHop);
  return connRefused(ctx, user, user, planMax, soldConn ?? ctx.settings.maxConnectionsPerUser, nextHop);
}

/** The admission's release: the shared one, then this node's own tunnel and connection slots. */
function releaseWith(release: Release, releaseConn: Release | undefined, releaseTun: Release | undefined): Release {
  if (releaseConn === undefined && releaseTun === undefined) return release;
  return () => {
    release();
    releaseTun?.();
    releaseConn?.();
  };
}

/** The store's ask for a plan's ask and leases, kept per plan ask (shared per user and rate: plans.ts) while the lease list is the same. */
const askCache = new WeakMap<object, { leases: Leases; ask: AdmitAsk }>();
const NO_PLAN = {};

function askOf(plan: PlanAsk | undefined, leases: Leases): AdmitAsk {
  const owner = plan ?? NO_PLAN;
  const had = askCache.get(owner);
  if (had !== undefined && had.leases === leases) return had.ask;
  const ask: AdmitAsk = { rate: plan?.rate, quota: plan?.quota, leases };
  askCache.set(owner, { leases, ask });
  return ask;
}

function noop(): void {}

type Leases = ReadonlyArray<{ readonly key: string; readonly max: number }>;
interface CachedLeases {
  conn: number | undefined;
  tun: number | undefined;
  leases: Leases;
}
/** Lease lists per context and user, kept while the limits stay the same (nobody changes one). */
const leaseCache = new WeakMap<ForwardContext, Map<string, CachedLeases>>();
const MAX_CACHED_USERS = 10_000;

/**
 * The shared leases of one admission (`conn:USER` for a sold connection limit, `tun:USER` for
 * a sold tunnel limit), made once per user and limits: an array, one or two objects and their
 * key strings per tunnel less on the Redis path (docs/benchmarks.md section 15).
 */
function leasesFor(ctx: ForwardContext, user: string, conn: number | undefined, tun: number | undefined): Leases {
  let byUser = leaseCache.get(ctx);
  if (byUser === undefined) leaseCache.set(ctx, (byUser = new Map()));
  const had = byUser.get(user);
  if (had !== undefined && had.conn === conn && had.tun === tun) return had.leases;
  const leases: Array<{ key: string; max: number }> = [];
  if (conn !== undefined) leases.push({ key: `conn:${user}`, max: conn });
  if (tun !== undefined) leases.push({ key: `tun:${user}`, max: tun });
  if (byUser.size >= MAX_CACHED_USERS) byUser.clear();
  byUser.set(user, { conn, tun, leases });
  return leases;
}

/**
 * Take a slot for one request (kind 'request') or one tunnel / association (kind
 * 'tunnel', which also counts as a connection). Returns the release function, or the
 * refusal (connection_limit_reached, 503; a plan's maxConnections, 429).
 *
 * With shared state (Redis, or the primary with --workers) the limits a customer bought (a
 * plan's or a user's own maxConnections, a user's own maxTunnels) are leases in the shared
 * store, so they hold across workers and nodes; the per-node ceilings (limits.*PerUser) stay
 * counted here. Without shared state nothing waits: a plain value.
 */
export function admit(ctx: ForwardContext, user: string | null, kind: 'request' | 'tunnel', nextHop: string): Release | Failure | Promise<Release | Failure> {
  const key = user ?? ANONYMOUS;
  const own = user !== null ? ctx.settings.userLimits.get(user) : undefined;
  const planMax = own?.maxConnections === undefined ? ctx.plans.maxConnections(user) : undefined;
  const maxConn = own?.maxConnections ?? planMax ?? ctx.settings.maxConnectionsPerUser;
  if (ctx.shared !== undefined && user !== null && (own?.maxConnections !== undefined || planMax !== undefined || (kind === 'tunnel' && own?.maxTunnels !== undefined))) {
    return admitShared(ctx, user, kind, nextHop, own?.maxConnections ?? planMax, planMax, own?.maxTunnels);
  }
  if (kind === 'request') {
    const releaseConn = ctx.limits.tryAcquire(key, 'connections', maxConn);
    return releaseConn ?? connRefused(ctx, user, key, planMax, maxConn, nextHop);
  }
  const maxTun = own?.maxTunnels ?? ctx.settings.maxTunnelsPerUser;
  const release = ctx.limits.tryAcquireTunnel(key, maxConn, maxTun);
  if (release === 'connections') return connRefused(ctx, user, key, planMax, maxConn, nextHop);
  if (release === 'tunnels') return tunRefused(key, maxTun, nextHop);
  return release;
}

function connRefused(ctx: ForwardContext, user: string | null, key: string, planMax: number | undefined, maxConn: number, nextHop: string): Failure {
  return planMax !== undefined
    ? limitRefusal('too_many_requests', `plan ${ctx.plans.planName(user)}: maxConnections limit of ${planMax} reached; it frees up when one of your connections ends`, 1)
    : new Failure({ type: 'connection_limit_reached', phase: 'admit', nextHop, detail: `user ${key} has ${maxConn} connections open already`, retryAfter: 1 });
}

function tunRefused(key: string, maxTun: number, nextHop: string): Failure {
  return new Failure({ type: 'connection_limit_reached', phase: 'admit', nextHop, detail: `user ${key} has ${maxTun} tunnels open already`, retryAfter: 1 });
}

/** The same with the sold limits as shared leases (each bounded by the state budget); the per-node ceilings counted here. */
async function admitShared(
  ctx: ForwardContext,
  user: string,
  kind: 'request' | 'tunnel',
  nextHop: string,
  soldConn: number | undefined,
  planMax: number | undefined,
  soldTun: number | undefined,
): Promise<Release | Failure> {
  const shared = ctx.shared!;
  const take = async (what: 'connections' | 'tunnels', sold: number | undefined, local: number): Promise<Release | undefined> => {
    if (sold === undefined) return ctx.limits.tryAcquire(user, what, local);
    const r = shared.acquire(`${what === 'connections' ? 'conn' : 'tun'}:${user}`, sold);
    return r instanceof Promise ? await r : r;
  };
  const maxConn = soldConn ?? ctx.settings.maxConnectionsPerUser;
  const releaseConn = await take('connections', soldConn, maxConn);
  if (!releaseConn) return connRefused(ctx, user, user, planMax, maxConn, nextHop);
  if (kind === 'request') return releaseConn;
  const maxTun = soldTun ?? ctx.settings.maxTunnelsPerUser;
  const releaseTun = await take('tunnels', soldTun, maxTun);
  if (!releaseTun) {
    releaseConn();
    return tunRefused(user, maxTun, nextHop);
  }
  return () => {
    releaseTun();
    releaseConn();
  };
}

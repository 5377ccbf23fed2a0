import { Failure } from '../failure/index.js';
import { limitRefusal } from '../tenants/index.js';
import type { ForwardContext } from './context.js';

const ANONYMOUS = '-';

type Release = () => void;

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
  const releaseConn = ctx.limits.tryAcquire(key, 'connections', maxConn);
  if (!releaseConn) return connRefused(ctx, user, key, planMax, maxConn, nextHop);
  if (kind === 'request') return releaseConn;
  const maxTun = own?.maxTunnels ?? ctx.settings.maxTunnelsPerUser;
  const releaseTun = ctx.limits.tryAcquire(key, 'tunnels', maxTun);
  if (!releaseTun) {
    releaseConn();
    return tunRefused(key, maxTun, nextHop);
  }
  return () => {
    releaseTun();
    releaseConn();
  };
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

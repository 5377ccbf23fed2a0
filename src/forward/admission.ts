import { Failure } from '../failure/index.js';
import { limitRefusal } from '../tenants/index.js';
import type { ForwardContext } from './context.js';

const ANONYMOUS = '-';

/**
 * Take a slot for one request (kind 'request') or one tunnel / association (kind
 * 'tunnel', which also counts as a connection). Returns the release function, or the
 * refusal (connection_limit_reached, 503).
 */
export function admit(ctx: ForwardContext, user: string | null, kind: 'request' | 'tunnel', nextHop: string): (() => void) | Failure {
  const key = user ?? ANONYMOUS;
  const own = user !== null ? ctx.settings.userLimits.get(user) : undefined;
  const planMax = own?.maxConnections === undefined ? ctx.plans.maxConnections(user) : undefined;
  const maxConn = own?.maxConnections ?? planMax ?? ctx.settings.maxConnectionsPerUser;
  const releaseConn = ctx.limits.tryAcquire(key, 'connections', maxConn);
  if (!releaseConn) {
    if (planMax !== undefined) {
      return limitRefusal('too_many_requests', `plan ${ctx.plans.planName(user)}: maxConnections limit of ${planMax} reached; it frees up when one of your connections ends`, 1);
    }
    return new Failure({ type: 'connection_limit_reached', phase: 'admit', nextHop, detail: `user ${key} has ${maxConn} connections open already`, retryAfter: 1 });
  }
  if (kind === 'request') return releaseConn;
  const maxTun = own?.maxTunnels ?? ctx.settings.maxTunnelsPerUser;
  const releaseTun = ctx.limits.tryAcquire(key, 'tunnels', maxTun);
  if (!releaseTun) {
    releaseConn();
    return new Failure({ type: 'connection_limit_reached', phase: 'admit', nextHop, detail: `user ${key} has ${maxTun} tunnels open already`, retryAfter: 1 });
  }
  return () => {
    releaseTun();
    releaseConn();
  };
}

import type { Endpoint } from './endpoint.js';

/** Share of its weight an endpoint gets the moment it (re)joins: enough to warm caches and JITs, too little to drown it. */
export const SLOW_START_FLOOR = 0.1;

/**
 * The weight a balancer should use for `endpoint` now. An endpoint that just became ready
 * (`readyAt`, set by the health checker or outlier detector) ramps linearly from 10% to 100%
 * of its weight over `windowMs`, so a freshly restarted server is not hit by its full share
 * while it is cold. `readyAt` 0 (never re-joined, e.g. at startup) or `windowMs` <= 0 gives
 * the full weight: starting all endpoints slow together would only slow everything.
 */
export function effectiveWeight(endpoint: Endpoint, now: number, windowMs: number): number {
  const w = endpoint.weight;
  const readyAt = endpoint.readyAt;
  if (windowMs <= 0 || readyAt === 0) return w;
  const elapsed = now - readyAt;
  if (elapsed >= windowMs) return w;
  if (elapsed <= 0) return w * SLOW_START_FLOOR;
  return w * (SLOW_START_FLOOR + (1 - SLOW_START_FLOOR) * (elapsed / windowMs));
}

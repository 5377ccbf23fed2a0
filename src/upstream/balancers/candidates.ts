import type { Endpoint } from '../endpoint.js';

/** May `ep` take this request: available (health, ejection, draining) and not already tried. */
export function eligible(ep: Endpoint, now: number, exclude: ReadonlySet<Endpoint> | undefined): boolean {
  return ep.available(now) && (exclude === undefined || !exclude.has(ep));
}

/** Whether any endpoint is eligible: the guard before a slow fallback walk, so "none" is found in O(n). */
export function anyEligible(endpoints: readonly Endpoint[], now: number, exclude: ReadonlySet<Endpoint> | undefined): boolean {
  for (let i = 0; i < endpoints.length; i++) if (eligible(endpoints[i]!, now, exclude)) return true;
  return false;
}

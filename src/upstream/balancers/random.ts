import type { Endpoint } from '../endpoint.js';
import { effectiveWeight } from '../slow-start.js';
import type { PickContext } from './balancer.js';
import { WeightedBalancer } from './weighted.js';
import { eligible } from './candidates.js';

/** Draws before giving up on rejection sampling and scanning (all draws rejected ⇒ few eligible). */
const MAX_DRAWS = 8;

/**
 * Weighted random. Keeps no shared cursor, so it needs no coordination and suits many gateway
 * nodes picking at once. A draw is by configured weight over a prefix-sum table (binary search,
 * O(log n); O(1) when weights are equal); an ineligible draw is rejected, and during slow start
 * a draw is kept with probability effective/configured weight. Rejection sampling gives exactly
 * the distribution of effective weights over eligible endpoints without rebuilding the table
 * when status changes. After MAX_DRAWS rejections it scans (O(n)), the same distribution.
 */
export class RandomBalancer extends WeightedBalancer {
  #prefix = new Float64Array(0);
  #total = 0;

  pick(endpoints: readonly Endpoint[], ctx: PickContext, exclude?: ReadonlySet<Endpoint>): Endpoint | undefined {
    this.sync(endpoints);
    const n = endpoints.length;
    if (n === 0 || this.#total <= 0) return undefined;
    const now = ctx.now;
    const slow = this.slowStartMs;
    for (let d = 0; d < MAX_DRAWS; d++) {
      const i = this.uniform ? (Math.random() * n) | 0 : this.#find(Math.random() * this.#total);
      const ep = endpoints[i]!;
      if (!eligible(ep, now, exclude)) continue;
      if (slow > 0 && Math.random() * ep.weight >= effectiveWeight(ep, now, slow)) continue;
      return ep;
    }
    return this.#scan(endpoints, now, exclude);
  }

  /** Index of the first prefix sum above r. */
  #find(r: number): number {
    const p = this.#prefix;
    let lo = 0;
    let hi = p.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (p[mid]! > r) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  #scan(endpoints: readonly Endpoint[], now: number, exclude: ReadonlySet<Endpoint> | undefined): Endpoint | undefined {
    const slow = this.slowStartMs;
    let sum = 0;
    for (let i = 0; i < endpoints.length; i++) {
      const ep = endpoints[i]!;
      if (ep.weight > 0 && eligible(ep, now, exclude)) sum += effectiveWeight(ep, now, slow);
    }
    if (sum <= 0) return undefined;
    let r = Math.random() * sum;
    let last: Endpoint | undefined;
    for (let i = 0; i < endpoints.length; i++) {
      const ep = endpoints[i]!;
      if (ep.weight <= 0 || !eligible(ep, now, exclude)) continue;
      last = ep;
      r -= effectiveWeight(ep, now, slow);
      if (r < 0) return ep;
    }
    return last;
  }

  protected rebuild(endpoints: readonly Endpoint[]): void {
    this.#prefix = new Float64Array(endpoints.length);
    let total = 0;
    for (let i = 0; i < endpoints.length; i++) {
      total += Math.max(0, endpoints[i]!.weight);
      this.#prefix[i] = total;
    }
    this.#total = total;
  }
}

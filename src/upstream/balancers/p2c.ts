import type { Endpoint } from '../endpoint.js';
import type { Balancer, PickContext } from './balancer.js';
import { eligible } from './candidates.js';

/** Random draws spent looking for two distinct eligible endpoints before scanning them all. */
const MAX_DRAWS = 8;

/**
 * Power of two random choices: draw two distinct eligible endpoints at random, send to the
 * cheaper. Nearly as good as asking every endpoint (the max load drops from log n/log log n
 * to log log n) at O(1) per pick, and unlike "always the least" it does not stampede a single
 * endpoint that briefly looks idle, which matters when several gateway nodes pick at once.
 *
 * Subclasses define the cost. When most endpoints are ineligible the random draws may not find
 * two; the pick then scans all of them for the cheapest (O(n), the rare path).
 */
export abstract class PowerOfTwoChoices implements Balancer {
  protected abstract cost(ep: Endpoint, now: number): number;

  pick(endpoints: readonly Endpoint[], ctx: PickContext, exclude?: ReadonlySet<Endpoint>): Endpoint | undefined {
    const n = endpoints.length;
    const now = ctx.now;
    if (n <= 2) return this.#scan(endpoints, now, exclude);
    let first: Endpoint | undefined;
    for (let d = 0; d < MAX_DRAWS; d++) {
      const ep = endpoints[(Math.random() * n) | 0]!;
      if (ep === first || !eligible(ep, now, exclude)) continue;
      if (first === undefined) {
        first = ep;
        continue;
      }
      return this.cost(ep, now) < this.cost(first, now) ? ep : first;
    }
    return this.#scan(endpoints, now, exclude);
  }

  /** Cheapest eligible endpoint; ties go to the first seen from a random start, so equal costs spread. */
  #scan(endpoints: readonly Endpoint[], now: number, exclude: ReadonlySet<Endpoint> | undefined): Endpoint | undefined {
    const n = endpoints.length;
    const start = n > 1 ? (Math.random() * n) | 0 : 0;
    let best: Endpoint | undefined;
    let bestCost = Infinity;
    for (let k = 0; k < n; k++) {
      const i = start + k < n ? start + k : start + k - n;
      const ep = endpoints[i]!;
      if (!eligible(ep, now, exclude)) continue;
      const c = this.cost(ep, now);
      if (best === undefined || c < bestCost) {
        best = ep;
        bestCost = c;
      }
    }
    return best;
  }
}

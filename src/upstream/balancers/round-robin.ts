import type { Endpoint } from '../endpoint.js';
import { effectiveWeight } from '../slow-start.js';
import type { PickContext } from './balancer.js';
import { WeightedBalancer } from './weighted.js';
import { eligible } from './candidates.js';

/**
 * Smooth weighted round robin (nginx): each pick adds every eligible endpoint's weight to its
 * running score, takes the highest and subtracts the eligible total from it. Weights 5,1,1
 * give a,a,b,a,c,a,a — spread out, never five in a row to the heaviest.
 *
 * Cost: O(n) per pick by nature of the algorithm (n = endpoints, small in practice); when all
 * weights are equal and slow start is off, the same sequence is a plain rotation, which is
 * O(1) and taken as a fast path. Scores are kept in a typed array: no allocation per pick.
 */
export class RoundRobinBalancer extends WeightedBalancer {
  #score = new Float64Array(0);
  #cursor = 0;

  pick(endpoints: readonly Endpoint[], ctx: PickContext, exclude?: ReadonlySet<Endpoint>): Endpoint | undefined {
    this.sync(endpoints);
    const n = endpoints.length;
    const now = ctx.now;
    if (this.uniform && this.slowStartMs <= 0) {
      for (let k = 0; k < n; k++) {
        const i = this.#cursor;
        this.#cursor = i + 1 === n ? 0 : i + 1;
        const ep = endpoints[i]!;
        if (eligible(ep, now, exclude)) return ep;
      }
      return undefined;
    }
    const score = this.#score;
    let best = -1;
    let bestScore = 0;
    let total = 0;
    for (let i = 0; i < n; i++) {
      const ep = endpoints[i]!;
      if (!eligible(ep, now, exclude)) continue;
      const w = effectiveWeight(ep, now, this.slowStartMs);
      if (w <= 0) continue;
      const s = (score[i]! += w);
      total += w;
      if (best < 0 || s > bestScore) {
        best = i;
        bestScore = s;
      }
    }
    if (best < 0) return undefined;
    score[best]! -= total;
    return endpoints[best];
  }

  protected rebuild(endpoints: readonly Endpoint[]): void {
    this.#score = new Float64Array(endpoints.length);
    this.#cursor = 0;
  }
}

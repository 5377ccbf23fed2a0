import type { Endpoint } from '../endpoint.js';
import { effectiveWeight } from '../slow-start.js';
import type { Balancer, BalancerOptions, PickContext } from './balancer.js';
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
export class RoundRobinBalancer implements Balancer {
  readonly #slowStartMs: number;
  #endpoints: readonly Endpoint[] = [];
  #score = new Float64Array(0);
  #uniform = true;
  #cursor = 0;

  constructor(endpoints: readonly Endpoint[], opts: BalancerOptions = {}) {
    this.#slowStartMs = opts.slowStartMs ?? 0;
    this.#reset(endpoints);
  }

  pick(endpoints: readonly Endpoint[], ctx: PickContext, exclude?: ReadonlySet<Endpoint>): Endpoint | undefined {
    if (endpoints !== this.#endpoints) this.#reset(endpoints);
    const n = endpoints.length;
    const now = ctx.now;
    if (this.#uniform && this.#slowStartMs <= 0) {
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
      const w = effectiveWeight(ep, now, this.#slowStartMs);
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

  #reset(endpoints: readonly Endpoint[]): void {
    this.#endpoints = endpoints;
    this.#score = new Float64Array(endpoints.length);
    this.#cursor = 0;
    const w0 = endpoints[0]?.weight;
    this.#uniform = endpoints.every((e) => e.weight === w0 && e.weight > 0);
  }
}

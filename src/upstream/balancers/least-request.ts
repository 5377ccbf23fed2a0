import type { Endpoint } from '../endpoint.js';
import { effectiveWeight } from '../slow-start.js';
import type { BalancerOptions } from './balancer.js';
import { PowerOfTwoChoices } from './p2c.js';

/**
 * Least outstanding requests with power of two choices. Load is `(inflight + 1) / weight`:
 * the +1 makes idle endpoints compare by weight (the heavier wins) instead of all tying at 0,
 * and dividing by the slow-start weight keeps a just-returned endpoint lightly loaded.
 */
export class LeastRequestBalancer extends PowerOfTwoChoices {
  readonly #slowStartMs: number;

  constructor(_endpoints: readonly Endpoint[], opts: BalancerOptions = {}) {
    super();
    this.#slowStartMs = opts.slowStartMs ?? 0;
  }

  protected cost(ep: Endpoint, now: number): number {
    return (ep.inflight + 1) / effectiveWeight(ep, now, this.#slowStartMs);
  }
}

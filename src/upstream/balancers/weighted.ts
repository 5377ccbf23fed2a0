import type { Endpoint } from '../endpoint.js';
import type { Balancer, BalancerOptions, PickContext } from './balancer.js';

/**
 * What the weighted balancers share: the slow-start window, the endpoint list their tables
 * were built for (rebuilt when the cluster hands over another list), and whether all
 * weights are equal (their fast paths).
 */
export abstract class WeightedBalancer implements Balancer {
  protected readonly slowStartMs: number;
  protected uniform = true;
  #endpoints: readonly Endpoint[] = [];

  /** The tables are built at the first pick (a subclass's fields do not exist yet while this runs). */
  constructor(_endpoints: readonly Endpoint[], opts: BalancerOptions = {}) {
    this.slowStartMs = opts.slowStartMs ?? 0;
  }

  abstract pick(endpoints: readonly Endpoint[], ctx: PickContext, exclude?: ReadonlySet<Endpoint>): Endpoint | undefined;

  /** Rebuild the tables for `endpoints` (the list changed). */
  protected abstract rebuild(endpoints: readonly Endpoint[]): void;

  /** Call first in `pick`: rebuilds when the list is not the one the tables are for. */
  protected sync(endpoints: readonly Endpoint[]): void {
    if (endpoints !== this.#endpoints) this.#sync(endpoints);
  }

  #sync(endpoints: readonly Endpoint[]): void {
    this.#endpoints = endpoints;
    const w0 = endpoints[0]?.weight;
    this.uniform = endpoints.every((e) => e.weight === w0 && e.weight > 0);
    this.rebuild(endpoints);
  }
}

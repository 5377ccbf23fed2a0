import type { Endpoint } from '../endpoint.js';
import { LeastRequestBalancer } from './least-request.js';
import { MaglevBalancer } from './maglev.js';
import { PeakEwmaBalancer } from './peak-ewma.js';
import { RandomBalancer } from './random.js';
import { RingHashBalancer } from './ring-hash.js';
import { RoundRobinBalancer } from './round-robin.js';

export interface PickContext {
  /** value to hash for consistent hashing (header, cookie or client address), chosen by the caller */
  hashKey?: string;
  now: number;
}

/**
 * Chooses one endpoint per request. Balancers only READ endpoint status (health checks and
 * the outlier detector write it): `pick` returns an endpoint whose `available(ctx.now)` is
 * true and that is not in `exclude` (endpoints already tried by this request), or undefined
 * when there is none (the caller answers 503 destination_unavailable).
 *
 * A balancer keeps per-endpoint state by position, built for the array it was created with;
 * pass the same array on every pick. A different array (membership changed) rebuilds that
 * state on the next pick, so the caller swaps arrays rather than mutating one.
 */
export interface Balancer {
  pick(endpoints: readonly Endpoint[], ctx: PickContext, exclude?: ReadonlySet<Endpoint>): Endpoint | undefined;
}

export type BalancerKind = 'round-robin' | 'least-request' | 'peak-ewma' | 'random' | 'ring-hash' | 'maglev';

export const BALANCER_KINDS: readonly BalancerKind[] = ['round-robin', 'least-request', 'peak-ewma', 'random', 'ring-hash', 'maglev'];

export interface BalancerOptions {
  /** Slow-start window (ms) for the weighted balancers (round-robin, least-request, peak-ewma, random). Default 0: off. Hash balancers ignore it: ramping would move keys. */
  slowStartMs?: number;
  /** peak-ewma: decay window of the latency average (ms). Default 10 000. Use the same value for `observeLatency`. */
  ewmaDecayMs?: number;
  /** ring-hash: virtual nodes per unit of weight. Default 160 (ketama). */
  vnodesPerWeight?: number;
  /** maglev: lookup table size, a prime well above the endpoint count. Default 65 537. */
  tableSize?: number;
}

export function createBalancer(kind: BalancerKind, endpoints: readonly Endpoint[], opts: BalancerOptions = {}): Balancer {
  switch (kind) {
    case 'round-robin':
      return new RoundRobinBalancer(endpoints, opts);
    case 'least-request':
      return new LeastRequestBalancer(endpoints, opts);
    case 'peak-ewma':
      return new PeakEwmaBalancer(endpoints, opts);
    case 'random':
      return new RandomBalancer(endpoints, opts);
    case 'ring-hash':
      return new RingHashBalancer(endpoints, opts);
    case 'maglev':
      return new MaglevBalancer(endpoints, opts);
  }
}

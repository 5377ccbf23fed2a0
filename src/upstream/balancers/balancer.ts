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

/** Makes a balancer for a cluster's endpoints (once per cluster, at start). */
export type BalancerFactory = (endpoints: readonly Endpoint[], opts: BalancerOptions) => Balancer;

/** Balancers by the name a cluster's `balancer:` gives. */
export type BalancerRegistry = ReadonlyMap<string, BalancerFactory>;

/** The built-in balancers, each its own file. */
export const BUILTIN_BALANCERS: BalancerRegistry = new Map<BalancerKind, BalancerFactory>([
  ['round-robin', (e, o) => new RoundRobinBalancer(e, o)],
  ['least-request', (e, o) => new LeastRequestBalancer(e, o)],
  ['peak-ewma', (e, o) => new PeakEwmaBalancer(e, o)],
  ['random', (e, o) => new RandomBalancer(e, o)],
  ['ring-hash', (e, o) => new RingHashBalancer(e, o)],
  ['maglev', (e, o) => new MaglevBalancer(e, o)],
]);

/** The built-ins plus custom balancers; a custom one may not take a built-in's name. */
export function balancerRegistry(custom: Readonly<Record<string, BalancerFactory>> | undefined): BalancerRegistry {
  if (custom === undefined) return BUILTIN_BALANCERS;
  const all = new Map(BUILTIN_BALANCERS);
  for (const [name, factory] of Object.entries(custom)) {
    if (all.has(name)) throw new TypeError(`a custom balancer cannot be named ${name}: that is a built-in balancer`);
    if (typeof factory !== 'function') throw new TypeError(`custom balancer ${name} is not a factory function`);
    all.set(name, factory);
  }
  return all;
}

export function createBalancer(kind: string, endpoints: readonly Endpoint[], opts: BalancerOptions = {}, registry: BalancerRegistry = BUILTIN_BALANCERS): Balancer {
  const factory = registry.get(kind);
  if (factory === undefined) throw new TypeError(`unknown balancer ${kind} (known: ${[...registry.keys()].join(', ')})`);
  return factory(endpoints, opts);
}

import type { Endpoint } from '../endpoint.js';
import type { Balancer, BalancerOptions, PickContext } from './balancer.js';
import { anyEligible, eligible } from './candidates.js';
import { hash32, randomHash } from './hash.js';

export const DEFAULT_VNODES_PER_WEIGHT = 160;
/** Upper bound on ring points; beyond it every endpoint's share of points is scaled down. */
const MAX_RING_POINTS = 1 << 20;

/**
 * Consistent hashing on a ring (ketama): each endpoint owns `vnodesPerWeight × weight` points
 * at hash(origin#i); a key goes to the first point at or after hash(key) (binary search,
 * O(log points)). A point's place depends only on its endpoint's own name, so when an endpoint
 * leaves only the keys it owned move, to the next points — other endpoints' keys stay put.
 *
 * An ineligible owner (down, ejected, excluded by a retry) is skipped by walking clockwise to
 * the next eligible one: the same key always falls back to the same endpoint, and only keys of
 * the missing endpoint move. Slow start is ignored: ramping a weight would move keys.
 * Endpoints are named by `origin`, so two endpoints with the same origin share points.
 */
export class RingHashBalancer implements Balancer {
  readonly #vnodes: number;
  #endpoints: readonly Endpoint[] = [];
  #hashes = new Uint32Array(0);
  #owners = new Int32Array(0);

  constructor(endpoints: readonly Endpoint[], opts: BalancerOptions = {}) {
    this.#vnodes = opts.vnodesPerWeight ?? DEFAULT_VNODES_PER_WEIGHT;
    this.#build(endpoints);
  }

  pick(endpoints: readonly Endpoint[], ctx: PickContext, exclude?: ReadonlySet<Endpoint>): Endpoint | undefined {
    if (endpoints !== this.#endpoints) this.#build(endpoints);
    const hashes = this.#hashes;
    const len = hashes.length;
    if (len === 0) return undefined;
    const h = ctx.hashKey === undefined ? randomHash() : hash32(ctx.hashKey);
    let lo = 0;
    let hi = len;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (hashes[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    const start = lo === len ? 0 : lo;
    const owners = this.#owners;
    const now = ctx.now;
    const first = endpoints[owners[start]!]!;
    if (eligible(first, now, exclude)) return first;
    if (!anyEligible(endpoints, now, exclude)) return undefined;
    for (let k = 1; k < len; k++) {
      const p = start + k < len ? start + k : start + k - len;
      const ep = endpoints[owners[p]!]!;
      if (eligible(ep, now, exclude)) return ep;
    }
    return undefined;
  }

  #build(endpoints: readonly Endpoint[]): void {
    this.#endpoints = endpoints;
    let wanted = 0;
    for (const e of endpoints) wanted += Math.max(0, Math.round(e.weight * this.#vnodes));
    const scale = wanted > MAX_RING_POINTS ? MAX_RING_POINTS / wanted : 1;
    const points: Array<{ hash: number; owner: number; name: string }> = [];
    endpoints.forEach((e, owner) => {
      if (e.weight <= 0) return;
      const count = Math.max(1, Math.round(e.weight * this.#vnodes * scale));
      for (let i = 0; i < count; i++) points.push({ hash: hash32(`${e.origin}#${i}`), owner, name: e.origin });
    });
    // Ties broken by name so every gateway node builds the same ring whatever the config order.
    points.sort((a, b) => a.hash - b.hash || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.#hashes = Uint32Array.from(points, (p) => p.hash);
    this.#owners = Int32Array.from(points, (p) => p.owner);
  }
}

import type { Endpoint } from '../endpoint.js';
import type { Balancer, BalancerOptions, PickContext } from './balancer.js';
import { anyEligible, eligible } from './candidates.js';
import { hash32, randomHash } from './hash.js';

/** Prime; ~100× the endpoint count keeps shares within about 1% of their weights. */
export const DEFAULT_MAGLEV_TABLE_SIZE = 65_537;
const OFFSET_SEED = 0x9e3779b9;
const SKIP_SEED = 0x85ebca6b;

/**
 * Maglev consistent hashing (Google, NSDI '16): each endpoint walks its own permutation of the
 * table slots (offset and skip from hashes of its name) and endpoints take turns claiming their
 * next free slot, heavier ones more turns, until the table is full. A pick is one hash and one
 * array read (O(1)); the table balances better than a ring with the same memory, and when an
 * endpoint leaves the others keep nearly all their slots (a few percent more move than on a ring).
 *
 * An ineligible owner is skipped by reading the following slots until an eligible endpoint
 * appears: deterministic per key, and the slots interleave endpoints so the walk is short and
 * spreads a missing endpoint's keys over the rest. Slow start is ignored (it would move keys).
 */
export class MaglevBalancer implements Balancer {
  readonly #size: number;
  #endpoints: readonly Endpoint[] = [];
  #table = new Int32Array(0);

  constructor(endpoints: readonly Endpoint[], opts: BalancerOptions = {}) {
    this.#size = opts.tableSize ?? DEFAULT_MAGLEV_TABLE_SIZE;
    this.#build(endpoints);
  }

  pick(endpoints: readonly Endpoint[], ctx: PickContext, exclude?: ReadonlySet<Endpoint>): Endpoint | undefined {
    if (endpoints !== this.#endpoints) this.#build(endpoints);
    const table = this.#table;
    const m = table.length;
    if (m === 0) return undefined;
    const start = (ctx.hashKey === undefined ? randomHash() : hash32(ctx.hashKey)) % m;
    const now = ctx.now;
    const first = endpoints[table[start]!]!;
    if (eligible(first, now, exclude)) return first;
    if (!anyEligible(endpoints, now, exclude)) return undefined;
    for (let k = 1; k < m; k++) {
      const p = start + k < m ? start + k : start + k - m;
      const ep = endpoints[table[p]!]!;
      if (eligible(ep, now, exclude)) return ep;
    }
    return undefined;
  }

  #build(endpoints: readonly Endpoint[]): void {
    this.#endpoints = endpoints;
    const m = this.#size;
    // Fill in name order so every gateway node builds the same table whatever the config order.
    const order = endpoints
      .map((e, i) => ({ e, i }))
      .filter((x) => x.e.weight > 0)
      .sort((a, b) => (a.e.origin < b.e.origin ? -1 : a.e.origin > b.e.origin ? 1 : a.i - b.i));
    const k = order.length;
    if (k === 0) {
      this.#table = new Int32Array(0);
      return;
    }
    if (k >= m) throw new RangeError(`maglev table size ${m} must exceed the endpoint count ${k}`);
    const pos = new Float64Array(k);
    const skip = new Float64Array(k);
    const target = new Float64Array(k);
    let maxW = 0;
    for (let j = 0; j < k; j++) {
      const name = order[j]!.e.origin;
      pos[j] = hash32(name, OFFSET_SEED) % m;
      skip[j] = (hash32(name, SKIP_SEED) % (m - 1)) + 1;
      maxW = Math.max(maxW, order[j]!.e.weight);
    }
    const table = new Int32Array(m).fill(-1);
    let filled = 0;
    // Weighted turns: endpoint j claims a slot in round r when r × weight ≥ its running target,
    // which then grows by the largest weight: so it claims ~weight/maxWeight slots per round.
    for (let round = 1; filled < m; round++) {
      for (let j = 0; j < k && filled < m; j++) {
        const w = order[j]!.e.weight;
        if (round * w < target[j]!) continue;
        target[j]! += maxW;
        let c = pos[j]!;
        while (table[c]! >= 0) c = (c + skip[j]!) % m;
        table[c] = order[j]!.i;
        pos[j] = (c + skip[j]!) % m;
        filled++;
      }
    }
    this.#table = table;
  }
}

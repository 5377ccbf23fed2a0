import type { ConnectionPool } from './connection-pool.js';

export interface PoolSetOptions {
  /** The most pools kept; the least recently used one is closed (gracefully) to make room. */
  maxPools: number;
  /**
   * A pool with no connections left unused this long is dropped when a new pool is made. Kept
   * until then so what it learned (the upstream's idle limit) survives a moment without connections.
   */
  emptyTtlMs: number;
  /** A new pool for `key`. */
  create: (key: string) => ConnectionPool;
}

/** How many of the least recently used pools are looked at for staleness when a pool is made. */
const EVICT_SCAN = 8;

interface Entry {
  readonly pool: ConnectionPool;
  usedAt: number;
}

/**
 * Connection pools by key (for the forward proxy: rules scope and origin), what undici's
 * Agent is to its Pools, for `ConnectionPool`. A proxy that visits many origins must not
 * keep a pool for each forever: the set is bounded (`maxPools`, least recently used closed
 * first) and drops pools that have been empty for `emptyTtlMs` when it makes a new one (the
 * few least recently used are looked at; no timer: an empty pool holds no socket, only what
 * it learned).
 *
 * The Map's order is the order of last use: a hit moves its entry to the end, unless it is
 * already the newest (one origin under load costs no Map write per request).
 */
export class PoolSet {
  readonly #opts: PoolSetOptions;
  readonly #pools = new Map<string, Entry>();
  /** Pools dropped but still finishing requests (closed gracefully): `close` destroys them too. */
  readonly #closing = new Set<ConnectionPool>();
  #newest: Entry | undefined;
  #closed = false;

  constructor(opts: PoolSetOptions) {
    this.#opts = opts;
  }

  get size(): number {
    return this.#pools.size;
  }

  /** The pool for `key`, made when there is none; `now` in ms since epoch. */
  get(key: string, now: number): ConnectionPool {
    const pools = this.#pools;
    let e = pools.get(key);
    if (e !== undefined) {
      e.usedAt = now;
      if (e !== this.#newest) {
        pools.delete(key);
        pools.set(key, e);
        this.#newest = e;
      }
      return e.pool;
    }
    if (this.#closed) throw new Error('PoolSet is closed');
    this.#evict(now);
    e = { pool: this.#opts.create(key), usedAt: now };
    pools.set(key, e);
    this.#newest = e;
    return e.pool;
  }

  /**
   * Before a new pool: close the least recently used ones while the set is at its bound, then
   * drop the stale empty ones among the next few least recently used (a few, so making a pool
   * costs O(1); a pool busy for long at the front only delays the others until they come first).
   */
  #evict(now: number): void {
    const pools = this.#pools;
    const ttl = this.#opts.emptyTtlMs;
    let looked = 0;
    for (const [key, e] of pools) {
      if (pools.size < this.#opts.maxPools) {
        if (++looked > EVICT_SCAN) break;
        if (e.pool.size !== 0 || now - e.usedAt <= ttl) continue;
      }
      pools.delete(key);
      if (e === this.#newest) this.#newest = undefined;
      this.#retire(e.pool);
    }
  }

  /** Requests in flight on its connections finish; then the connections close. */
  #retire(pool: ConnectionPool): void {
    const closing = this.#closing;
    closing.add(pool);
    pool
      .close()
      .catch(() => pool.destroy())
      .finally(() => closing.delete(pool));
  }

  /** Close every pool gracefully (requests in flight finish) and start afresh. */
  reset(): void {
    const all = [...this.#pools.values()];
    this.#pools.clear();
    this.#newest = undefined;
    for (const e of all) this.#retire(e.pool);
  }

  /** Destroy every pool; no new ones after this. */
  async close(): Promise<void> {
    this.#closed = true;
    const all = [...[...this.#pools.values()].map((e) => e.pool), ...this.#closing];
    this.#pools.clear();
    this.#closing.clear();
    this.#newest = undefined;
    await Promise.allSettled(all.map((p) => p.destroy()));
  }
}

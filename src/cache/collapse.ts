/**
 * Request collapsing: while one request for a key is on its way upstream (the leader),
 * further misses for the same key wait for it instead of going upstream too; when the
 * leader's response is stored (or turned out not storable, or failed) they are woken and
 * look again. The wait is bounded by the caller (each waiter has its own deadline and
 * leaves the queue then). This is also overload protection for a cold cache.
 */
export interface CollapseWaiter {
  /** The leader finished: look the key up again (a hit, or go upstream). */
  collapseWake(): void;
}

/**
 * Waiters per key behind one leader; bounded so a stampede cannot hold unbounded memory. A miss
 * that finds the queue full (`join` answers 'full') does not wait: it goes upstream at once for
 * itself, as a waiter whose wait ran out does (docs/cache.md, test/cache/collapse-full.test.ts).
 */
export const MAX_WAITERS = 1024;

export class Collapser {
  readonly #leading = new Map<string, CollapseWaiter[]>();

  /** True: the caller leads (goes upstream); false: the caller was queued behind the leader. */
  join(key: string, w: CollapseWaiter): boolean | 'full' {
    const q = this.#leading.get(key);
    if (q === undefined) {
      this.#leading.set(key, []);
      return true;
    }
    if (q.length >= MAX_WAITERS) return 'full';
    q.push(w);
    return false;
  }

  /**
   * Take the key's slot only when nobody holds it, never queueing (a background revalidation:
   * one per stored response, `refresh`, which runs without the slot when another fetch of the
   * key holds it). True: the caller holds it and must `release` it.
   */
  lead(key: string): boolean {
    if (this.#leading.has(key)) return false;
    this.#leading.set(key, []);
    return true;
  }

  /**
   * The stored responses (by identity) a fetch in flight may refresh: a background revalidation
   * of one, or a client's GET that matched it (the key's leader, a request on a route without
   * collapsing, or a waiter that went upstream for itself: before, only the leader, then the
   * waiters, counted) and asks for the whole response
   * (validated with its validators, or `no-cache`; not a `Range` request, whose 206 is never
   * stored), with how many such fetches. A key's variants share its slot, so the slot does not
   * say which stored response the fetch is for: a stale hit on another variant was recorded
   * `updating` and revalidated nothing (review of session 34).
   */
  readonly #refreshing = new Map<object, number>();

  /** A fetch that may refresh `stored` starts; `refreshed` when it is over. */
  refresh(stored: object): void {
    this.#refreshing.set(stored, (this.#refreshing.get(stored) ?? 0) + 1);
  }

  refreshed(stored: object): void {
    const n = this.#refreshing.get(stored);
    if (n === undefined) return;
    if (n <= 1) this.#refreshing.delete(stored);
    else this.#refreshing.set(stored, n - 1);
  }

  /** Whether a fetch that may refresh `stored` is in flight. */
  refreshing(stored: object): boolean {
    return this.#refreshing.has(stored);
  }

  /** Stored responses with a fetch in flight that may refresh them (none once every fetch has ended). */
  get refreshingCount(): number {
    return this.#refreshing.size;
  }

  /** A waiter gave up (its deadline, or its client left). */
  leave(key: string, w: CollapseWaiter): void {
    const q = this.#leading.get(key);
    if (q === undefined) return;
    const i = q.indexOf(w);
    if (i >= 0) q.splice(i, 1);
  }

  /** The leader is done: wake its waiters, in arrival order. */
  release(key: string): void {
    const q = this.#leading.get(key);
    if (q === undefined) return;
    this.#leading.delete(key);
    for (const w of q) w.collapseWake();
  }

  /** Requests waiting behind the leader of a key. */
  waiting(key: string): number {
    return this.#leading.get(key)?.length ?? 0;
  }

  /** Keys with a leader in flight. */
  get inflight(): number {
    return this.#leading.size;
  }
}

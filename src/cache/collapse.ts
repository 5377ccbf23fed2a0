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

/** Waiters per key behind one leader; bounded so a stampede cannot hold unbounded memory. */
const MAX_WAITERS = 1024;

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
   * one per key, and a stale hit that finds one in flight has nothing to wait for). True: the
   * caller holds it and must `release` it.
   */
  lead(key: string): boolean {
    if (this.#leading.has(key)) return false;
    this.#leading.set(key, []);
    return true;
  }

  /** Whether a fetch of the key (a client's leading request, or a background revalidation) is in flight. */
  leading(key: string): boolean {
    return this.#leading.has(key);
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

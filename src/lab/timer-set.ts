/**
 * The lab's pending timers, so `close()` can cancel every delayed answer at once.
 * A timer leaves the set when it fires or is cleared.
 */
export class TimerSet {
  readonly #timers = new Set<NodeJS.Timeout>();

  /** Run `fn` after `ms`; the handle can be passed to `clear`. */
  after(ms: number, fn: () => void): NodeJS.Timeout {
    const timers = this.#timers;
    const handle: NodeJS.Timeout = setTimeout(() => {
      timers.delete(handle);
      fn();
    }, ms);
    timers.add(handle);
    return handle;
  }

  clear(handle: NodeJS.Timeout | undefined): void {
    if (handle === undefined) return;
    clearTimeout(handle);
    this.#timers.delete(handle);
  }

  clearAll(): void {
    for (const handle of this.#timers) clearTimeout(handle);
    this.#timers.clear();
  }

  get size(): number {
    return this.#timers.size;
  }
}

/** Everything a running proxy holds open, so close() can end it all. */
export interface Closable {
  destroy(): void;
}

export class ResourceTracker {
  readonly #open = new Set<Closable>();
  #closed = false;

  get closed(): boolean {
    return this.#closed;
  }

  get size(): number {
    return this.#open.size;
  }

  /** Remember `c` until `forget(c)`. After destroyAll(), destroys it at once. */
  add(c: Closable): void {
    if (this.#closed) c.destroy();
    else this.#open.add(c);
  }

  forget(c: Closable): void {
    this.#open.delete(c);
  }

  /** add(), returning the matching forget (for callers that keep a release function). */
  track(c: Closable): () => void {
    this.add(c);
    return () => this.forget(c);
  }

  /** What is open now (a copy: close() destroys some of it as it goes). */
  list(): Closable[] {
    return [...this.#open];
  }

  destroyAll(): void {
    this.#closed = true;
    for (const c of [...this.#open]) {
      try {
        c.destroy();
      } catch {
        // keep going: close() must end everything
      }
    }
    this.#open.clear();
  }
}

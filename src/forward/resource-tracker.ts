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

  /** Remember `c` until the returned function is called. After close(), destroys at once. */
  track(c: Closable): () => void {
    if (this.#closed) {
      c.destroy();
      return () => {};
    }
    this.#open.add(c);
    return () => {
      this.#open.delete(c);
    };
  }

  /** Remember `c` until `forget(c)`: track() without a closure, for the per-connection path. */
  add(c: Closable): void {
    if (this.#closed) c.destroy();
    else this.#open.add(c);
  }

  forget(c: Closable): void {
    this.#open.delete(c);
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

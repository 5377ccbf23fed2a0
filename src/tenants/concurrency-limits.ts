/**
 * Per-user counters of things in flight (requests, tunnels, associations), with a ceiling.
 * `tryAcquire` hands back a release function that is safe to call more than once.
 */
export type LimitKind = 'connections' | 'tunnels';

export class ConcurrencyLimits {
  readonly #counts = new Map<string, number>();

  #key(user: string, kind: LimitKind): string {
    return `${kind}\0${user}`;
  }

  current(user: string, kind: LimitKind): number {
    return this.#counts.get(this.#key(user, kind)) ?? 0;
  }

  /** Undefined when `user` already holds `max` of `kind`. */
  tryAcquire(user: string, kind: LimitKind, max: number): (() => void) | undefined {
    const key = this.#key(user, kind);
    const n = this.#counts.get(key) ?? 0;
    if (n >= max) return undefined;
    this.#counts.set(key, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#counts.get(key) ?? 1) - 1;
      if (left <= 0) this.#counts.delete(key);
      else this.#counts.set(key, left);
    };
  }
}

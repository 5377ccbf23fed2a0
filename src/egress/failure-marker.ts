/**
 * Failure markers of a pool's exits (gost: each Node carries one). Failures count up;
 * at `threshold` consecutive failures the exit (or the exit for one domain) cools
 * down for `cooldownMs`, doubling each time it trips again, up to `maxCooldownMs`.
 * A success resets the count and the back-off.
 */
export interface FailurePolicy {
  threshold: number;
  cooldownMs: number;
  maxCooldownMs: number;
}

interface Mark {
  failures: number;
  trips: number;
  until: number;
}

const MAX_DOMAIN_MARKS = 10_000;

export class FailureMarker {
  readonly #policy: FailurePolicy;
  readonly #now: () => number;
  readonly #marks = new Map<string, Mark>();

  constructor(policy: FailurePolicy, now: () => number = Date.now) {
    this.#policy = policy;
    this.#now = now;
  }

  #key(exit: string, domain?: string): string {
    return domain === undefined ? exit : `${exit}\0${domain.toLowerCase()}`;
  }

  /** The mark of `k`, made when there is none (the oldest dropped beyond MAX_DOMAIN_MARKS). */
  #mark(k: string): Mark {
    let m = this.#marks.get(k);
    if (!m) {
      if (this.#marks.size >= MAX_DOMAIN_MARKS) {
        const oldest = this.#marks.keys().next();
        if (!oldest.done) this.#marks.delete(oldest.value);
      }
      m = { failures: 0, trips: 0, until: 0 };
      this.#marks.set(k, m);
    }
    return m;
  }

  /** Count a failure; returns true when this failure started a cool-down. */
  fail(exit: string, domain?: string): boolean {
    const k = this.#key(exit, domain);
    const m = this.#mark(k);
    m.failures++;
    if (m.failures >= this.#policy.threshold) {
      const p = this.#policy;
      const ms = Math.min(p.maxCooldownMs, p.cooldownMs * 2 ** m.trips);
      m.trips++;
      m.failures = 0;
      m.until = this.#now() + ms;
      return true;
    }
    return false;
  }

  /** A success through the exit (for the domain): forget its failures. */
  succeed(exit: string, domain?: string): void {
    this.#marks.delete(this.#key(exit, domain));
    if (domain !== undefined) {
      const whole = this.#marks.get(exit);
      if (whole && whole.until <= this.#now()) this.#marks.delete(exit);
    }
  }

  /** Milliseconds left of the cool-down of exactly this mark (the exit, or the exit for one domain); 0 when none. */
  remaining(exit: string, domain?: string): number {
    const m = this.#marks.get(this.#key(exit, domain));
    return m ? Math.max(0, m.until - this.#now()) : 0;
  }

  /** Another node (or worker) found this exit (for the domain) dead: cool it down here too, for `forMs`. */
  coolFor(exit: string, domain: string | undefined, forMs: number): void {
    const k = this.#key(exit, domain);
    const m = this.#mark(k);
    m.until = Math.max(m.until, this.#now() + forMs);
  }

  /** Whether the exit is cooling down as a whole. */
  down(exit: string): boolean {
    const m = this.#marks.get(exit);
    return m !== undefined && m.until > this.#now();
  }

  /** Whether the exit may be used for this domain now. */
  available(exit: string, domain?: string): boolean {
    if (this.down(exit)) return false;
    if (domain === undefined) return true;
    const m = this.#marks.get(this.#key(exit, domain));
    return !(m && m.until > this.#now());
  }

  /** Milliseconds until the exit's whole-exit cool-down ends (0 when none). */
  coolingFor(exit: string, domain?: string): number {
    const a = this.#marks.get(exit)?.until ?? 0;
    const b = domain !== undefined ? (this.#marks.get(this.#key(exit, domain))?.until ?? 0) : 0;
    return Math.max(0, Math.max(a, b) - this.#now());
  }
}

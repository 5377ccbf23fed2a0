/**
 * Sticky sessions: a session key pinned to one exit until its lifetime ends or it sits
 * idle longer than the idle timeout.
 */
export interface SessionPin {
  exitId: string;
  created: number;
  expires: number;
  lastUsed: number;
  idleMs: number;
}

export class SessionTable {
  readonly #pins = new Map<string, SessionPin>();
  readonly #now: () => number;
  readonly #max: number;

  constructor(now: () => number = Date.now, max = 100_000) {
    this.#now = now;
    this.#max = max;
  }

  /** The live pin (touching it), or undefined when missing, expired or idle too long. */
  get(key: string): SessionPin | undefined {
    const p = this.#pins.get(key);
    if (!p) return undefined;
    const now = this.#now();
    if (now >= p.expires || now - p.lastUsed > p.idleMs) {
      this.#pins.delete(key);
      return undefined;
    }
    return p;
  }

  touch(key: string): void {
    const p = this.#pins.get(key);
    if (p) p.lastUsed = this.#now();
  }

  pin(key: string, exitId: string, ttlMs: number, idleMs: number): SessionPin {
    const now = this.#now();
    const old = this.#pins.get(key);
    // A re-pin keeps the session's original lifetime.
    const expires = old && now < old.expires ? old.expires : now + ttlMs;
    this.#pins.delete(key);
    if (this.#pins.size >= this.#max) {
      const oldest = this.#pins.keys().next();
      if (!oldest.done) this.#pins.delete(oldest.value);
    }
    const p: SessionPin = { exitId, created: old?.created ?? now, expires, lastUsed: now, idleMs };
    this.#pins.set(key, p);
    return p;
  }

  /** Whether a pin exists for `key` whose time is not up (its exit may be dead). */
  liveRaw(key: string): SessionPin | undefined {
    return this.get(key);
  }

  /** The live pins (expired and idle ones dropped on the way), for the admin API. */
  *live(): IterableIterator<[string, SessionPin]> {
    const now = this.#now();
    for (const [key, p] of this.#pins) {
      if (now >= p.expires || now - p.lastUsed > p.idleMs) {
        this.#pins.delete(key);
        continue;
      }
      yield [key, p];
    }
  }

  get size(): number {
    return this.#pins.size;
  }
}

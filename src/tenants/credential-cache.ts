import { createHmac, randomBytes } from 'node:crypto';

/** Per process: cache keys mean nothing outside it, and cannot be looked up in precomputed tables. */
const KEY = randomBytes(32);

/**
 * Remembers recent password checks, because scrypt is slow on purpose: the successful
 * ones (so a known client is answered at once), and in a second instance the failed
 * ones (so the same wrong password sent again costs no scrypt run).
 * Keyed by an HMAC of user and password together under a random per-process key, so the
 * cache never holds a password. Bounded in size and time.
 */
export class CredentialCache {
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #touch: boolean;
  readonly #entries = new Map<string, { user: string; expires: number }>();

  /**
   * `touch`: a hit moves the entry to the young end, so eviction drops the least recently
   * used one (a delete and a set per hit; the success cache, read on every request, keeps
   * insertion order instead).
   */
  constructor(ttlMs: number, maxEntries = 10_000, opts: { touch?: boolean } = {}) {
    this.#ttlMs = ttlMs;
    this.#maxEntries = maxEntries;
    this.#touch = opts.touch ?? false;
  }

  static key(user: string, password: string): string {
    // One update of the joined string, and the digest as a 32-character 'binary' (latin1) string (a
    // Map key, never shown): each about 0.2-0.3 µs less than three updates and base64
    // (measured; the HMAC costs about 0.7 µs more than the plain SHA-256 it replaced).
    return createHmac('sha256', KEY).update(`${user}\0${password}`).digest('binary');
  }

  /** The user name when this exact user+password pair was remembered recently. */
  get(user: string, password: string, now = Date.now()): string | undefined {
    return this.#ttlMs <= 0 ? undefined : this.getByKey(CredentialCache.key(user, password), now);
  }

  /** As get(), for a key from CredentialCache.key() (hashed once by a caller that needs it twice). */
  getByKey(k: string, now = Date.now()): string | undefined {
    if (this.#ttlMs <= 0) return undefined;
    const e = this.#entries.get(k);
    if (!e) return undefined;
    if (e.expires <= now) {
      this.#entries.delete(k);
      return undefined;
    }
    if (this.#touch) {
      this.#entries.delete(k);
      this.#entries.set(k, e);
    }
    return e.user;
  }

  remember(user: string, password: string, now = Date.now()): void {
    if (this.#ttlMs > 0) this.rememberByKey(CredentialCache.key(user, password), user, now);
  }

  rememberByKey(k: string, user: string, now = Date.now()): void {
    if (this.#ttlMs <= 0) return;
    this.#entries.delete(k);
    while (this.#entries.size >= this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.#entries.delete(oldest.value);
    }
    this.#entries.set(k, { user, expires: now + this.#ttlMs });
  }

  clear(): void {
    this.#entries.clear();
  }

  /** Forget the entries of users `keep` says no to (a reload changed their password or added them). */
  retain(keep: (user: string) => boolean): void {
    for (const [k, e] of this.#entries) if (!keep(e.user)) this.#entries.delete(k);
  }

  get size(): number {
    return this.#entries.size;
  }
}

import { createHash } from 'node:crypto';

/**
 * Remembers recent successful password checks, because scrypt is slow on purpose.
 * Keyed by a SHA-256 of user and password together, so the cache never holds a password
 * and a wrong password never hits an entry. Bounded in size and time.
 */
export class CredentialCache {
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #entries = new Map<string, { user: string; expires: number }>();

  constructor(ttlMs: number, maxEntries = 10_000) {
    this.#ttlMs = ttlMs;
    this.#maxEntries = maxEntries;
  }

  static key(user: string, password: string): string {
    return createHash('sha256').update(user).update('\0').update(password).digest('base64');
  }

  /** The user name when this exact user+password pair was verified recently. */
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

  get size(): number {
    return this.#entries.size;
  }
}

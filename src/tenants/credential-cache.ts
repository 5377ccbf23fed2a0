import * as crypto from 'node:crypto';

/** Per process: cache keys mean nothing outside it, and cannot be looked up in precomputed tables. */
const KEY = crypto.randomBytes(32);
/** The same secret as a latin1 prefix for the one-shot hash. */
const KEY_PREFIX = KEY.toString('latin1');
/**
 * `crypto.hash` (Node ≥ 20.12): a one-shot digest without a Hash or Hmac object. Older 20.x
 * lines lack it and keep the HMAC.
 */
const oneShot = (crypto as { hash?: (alg: string, data: string, enc: 'binary') => string }).hash;

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
    // The digest as a 32-character 'binary' (latin1) string (a Map key, never shown).
    // SHA-256 of secret prefix + user + password in one `crypto.hash` call rather than an
    // HMAC object: this runs once per authenticated request or tunnel, and `createHmac`
    // (a native Hmac and key import per call) cost 8.8–9.0 µs against 2.1–2.6 µs for the
    // one-shot hash (same machine, 200,000 calls each; docs/benchmarks.md section 14). A
    // keyed prefix hash is enough here: the digests never leave the process, so the length
    // extension that HMAC guards against gives an attacker nothing to forge.
    if (oneShot !== undefined) return oneShot('sha256', `${KEY_PREFIX}${user}\0${password}`, 'binary');
    return crypto.createHmac('sha256', KEY).update(`${user}\0${password}`).digest('binary');
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

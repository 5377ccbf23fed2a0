import * as crypto from 'node:crypto';

/** Per process: cache keys mean nothing outside it, and cannot be looked up in precomputed tables. */
const KEY = crypto.randomBytes(32);
/**
 * `crypto.hash` (Node ≥ 20.12): a one-shot digest without a Hash or Hmac object. Older 20.x
 * lines lack it and use `createHmac`; both give the same HMAC-SHA256.
 */
export const oneShot = (crypto as { hash?: { (alg: string, data: Buffer, enc: 'buffer'): Buffer; (alg: string, data: Buffer, enc: 'binary'): string } }).hash;
/**
 * HMAC-SHA256 (RFC 2104) under one key of at most 64 bytes, as two one-shot hashes: the
 * key blocks are made once, so a digest costs two `crypto.hash` calls and no Hmac object.
 * The digest is a latin1 ('binary') string. Callers must not interleave (it reuses one buffer).
 */
export class OneShotHmac {
  readonly #hash: NonNullable<typeof oneShot>;
  readonly #ipad = Buffer.alloc(64, 0x36);
  /** OPAD, then the inner digest (written per call). */
  readonly #outer = Buffer.alloc(64 + 32, 0x5c);

  constructor(key: Buffer, hash: NonNullable<typeof oneShot>) {
    if (key.length > 64) throw new RangeError('OneShotHmac: keys longer than the SHA-256 block (64 bytes) are not supported');
    this.#hash = hash;
    for (let i = 0; i < key.length; i++) {
      this.#ipad[i]! ^= key[i]!;
      this.#outer[i]! ^= key[i]!;
    }
  }

  digest(message: string): string {
    this.#hash('sha256', Buffer.concat([this.#ipad, Buffer.from(message, 'utf8')]), 'buffer').copy(this.#outer, 64);
    return this.#hash('sha256', this.#outer, 'binary');
  }
}

/** The cache keys' HMAC, when `crypto.hash` exists. */
const HMAC = oneShot === undefined ? undefined : new OneShotHmac(KEY, oneShot);

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
    // The digest as a 32-character 'binary' (latin1) string (a Map key, never shown). The
    // same HMAC-SHA256 as `createHmac` gives (test/tenants/credential-cache.test.ts), made
    // with two one-shot `crypto.hash` calls: this runs once per authenticated request or
    // tunnel, and `createHmac` (a native Hmac object and a key import per call) cost about
    // twice as much (docs/benchmarks.md section 15).
    // The user's length first: RFC 1929 names and passwords may hold a NUL, and without it
    // "a" + "b\0c" and "a\0b" + "c" would be one key (test/tenants/credential-cache.test.ts).
    const message = `${user.length}:${user}\0${password}`;
    if (HMAC !== undefined) return HMAC.digest(message);
    return crypto.createHmac('sha256', KEY).update(message).digest('binary');
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

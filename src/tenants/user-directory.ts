import { CredentialCache } from './credential-cache.js';
import { parsePasswordHash, verifyPassword, type ParsedHash } from './password-hash.js';

export interface UserEntry {
  name: string;
  /** Stored scrypt hash (see password-hash.ts). */
  password: string;
}

/** A fixed hash checked for unknown names, so their timing matches a wrong password. */
const DUMMY_HASH = 'scrypt$16384$8$1$Z2F0ZXdpc2UtZHVtbXk=$3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

/** The users allowed to use the proxy, and the check of their passwords. */
export class UserDirectory {
  #users = new Map<string, ParsedHash>();
  readonly #cache: CredentialCache;
  readonly #dummy = parsePasswordHash(DUMMY_HASH)!;
  /**
   * Password checks in flight, by credential key: clients that present the same name and
   * password at once (a customer opening 50 connections) share one scrypt run instead of
   * queueing 50 on libuv's four threads, which also serve DNS lookups.
   */
  #checks = new Map<string, Promise<boolean>>();

  constructor(users: readonly UserEntry[], opts: { cacheTtlMs: number; cacheMaxEntries?: number }) {
    this.#users = UserDirectory.#table(users);
    this.#cache = new CredentialCache(opts.cacheTtlMs, opts.cacheMaxEntries);
  }

  static #table(users: readonly UserEntry[]): Map<string, ParsedHash> {
    const m = new Map<string, ParsedHash>();
    for (const u of users) {
      const parsed = parsePasswordHash(u.password);
      if (!parsed) throw new TypeError(`user ${JSON.stringify(u.name)}: password is not a scrypt hash`);
      m.set(u.name, parsed);
    }
    return m;
  }

  /** Swap in a new user list at once (a reload); throws, keeping the old list, when an entry is bad. */
  replace(users: readonly UserEntry[]): void {
    const next = UserDirectory.#table(users);
    this.#users = next;
    this.#cache.clear();
    this.#checks = new Map();
  }

  names(): string[] {
    return [...this.#users.keys()];
  }

  has(name: string): boolean {
    return this.#users.has(name);
  }

  get size(): number {
    return this.#users.size;
  }

  /** Password checks running now (one per distinct name and password). */
  get checking(): number {
    return this.#checks.size;
  }

  /**
   * The user's name when the password is right, else undefined. Never throws for bad input.
   * Answered at once (no promise) when this name and password were verified recently.
   */
  authenticate(name: string, password: string): string | undefined | Promise<string | undefined> {
    if (name.length > 255 || password.length > 1024) return undefined;
    const key = CredentialCache.key(name, password);
    if (this.#cache.getByKey(key) !== undefined) return name;
    return this.#check(name, password, key);
  }

  async #check(name: string, password: string, key: string): Promise<string | undefined> {
    const stored = this.#users.get(name);
    const checks = this.#checks;
    let check = checks.get(key);
    if (check === undefined) {
      check = verifyPassword(password, stored ?? this.#dummy).finally(() => checks.delete(key));
      checks.set(key, check);
    }
    const ok = await check;
    // A reload while the check ran: the answer was about the old list.
    if (checks !== this.#checks) return this.authenticate(name, password);
    if (!ok || !stored) return undefined;
    this.#cache.rememberByKey(key, name);
    return name;
  }
}

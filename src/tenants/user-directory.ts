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

  /** The user's name when the password is right, else undefined. Never throws for bad input. */
  async authenticate(name: string, password: string): Promise<string | undefined> {
    if (name.length > 255 || password.length > 1024) return undefined;
    if (this.#cache.get(name, password) !== undefined) return name;
    const stored = this.#users.get(name);
    const ok = await verifyPassword(password, stored ?? this.#dummy);
    if (!ok || !stored) return undefined;
    this.#cache.remember(name, password);
    return name;
  }
}

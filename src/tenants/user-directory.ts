import { Failure } from '../failure/index.js';
import { CredentialCache } from './credential-cache.js';
import { parsePasswordHash, type ParsedHash } from './password-hash.js';
import { PasswordChecks } from './password-checks.js';

export interface UserEntry {
  name: string;
  /** Stored scrypt hash (see password-hash.ts). */
  password: string;
}

export interface UserDirectoryOptions {
  /** How long a successful check is remembered; 0 = never. */
  cacheTtlMs: number;
  cacheMaxEntries?: number;
  /** How long a failed check (this name with this password) is remembered; 0 = never. Default 5 min. */
  failureCacheTtlMs?: number;
  failureCacheMaxEntries?: number;
  /** Password checks waiting or running at once, from everyone (default 32). */
  maxConcurrentChecks?: number;
  /** … from one client address (default 4). */
  maxConcurrentChecksPerSource?: number;
  /** Threads that run scrypt (default 1). */
  checkThreads?: number;
}

/** Who is asking: the client's socket, read only when a password must be checked. */
export interface CheckSource {
  readonly remoteAddress?: string | undefined;
}

/**
 * Who a name and password belong to. `UserDirectory` (users of the config and the users
 * file, scrypt hashes, bounded checks) is the built-in one; a library user may supply
 * another (`startForwardProxy(config, { authProvider })`: LDAP, a database, a token
 * service). Plans and per-user limits still come from the config's users by name.
 */
export interface AuthProvider {
  /** Whether `name` is a user's whole name (not a name carrying username parameters). */
  has(name: string): boolean;
  /**
   * The user the credentials belong to, undefined when they are wrong, or a Failure to
   * refuse otherwise (too many checks, a locked account). A plain value when no I/O is
   * needed: the pipeline does not await it then.
   */
  authenticate(name: string, password: string, source?: CheckSource): string | undefined | Failure | Promise<string | undefined | Failure>;
}

/** A fixed hash checked for unknown names, so their timing matches a wrong password. */
const DUMMY_HASH = 'scrypt$16384$8$1$Z2F0ZXdpc2UtZHVtbXk=$3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

/** The users allowed to use the proxy, and the check of their passwords. */
export class UserDirectory implements AuthProvider {
  #users = new Map<string, ParsedHash>();
  readonly #cache: CredentialCache;
  /** Name and password pairs that failed recently: the same wrong password again costs no scrypt run. */
  readonly #failed: CredentialCache;
  readonly #hashing: PasswordChecks;
  readonly #dummy = parsePasswordHash(DUMMY_HASH)!;
  /**
   * Password checks in flight, by credential key: clients that present the same name and
   * password at once (a customer opening 50 connections) share one scrypt run, which
   * counts once against the bounds of PasswordChecks.
   */
  readonly #checks = new Map<string, { raw: string | undefined; check: Promise<boolean> }>();

  /** The stored hash of each user as written (a reload keeps the cached checks of unchanged ones). */
  #raw: Map<string, string>;

  constructor(users: readonly UserEntry[], opts: UserDirectoryOptions) {
    this.#users = UserDirectory.#table(users);
    this.#raw = new Map(users.map((u) => [u.name, u.password]));
    this.#cache = new CredentialCache(opts.cacheTtlMs, opts.cacheMaxEntries);
    this.#failed = new CredentialCache(opts.failureCacheTtlMs ?? 5 * 60_000, opts.failureCacheMaxEntries ?? 10_000, { touch: true });
    this.#hashing = new PasswordChecks({
      maxConcurrent: opts.maxConcurrentChecks ?? 32,
      maxPerSource: opts.maxConcurrentChecksPerSource ?? 4,
      threads: opts.checkThreads ?? 1,
    });
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
    const before = this.#raw;
    const raw = new Map(users.map((u) => [u.name, u.password]));
    this.#users = next;
    this.#raw = raw;
    // Checks remembered for a user whose hash did not change still hold (a reload every few
    // seconds must not send every client back to scrypt); the rest are forgotten.
    const unchanged = (name: string): boolean => before.has(name) && before.get(name) === raw.get(name);
    this.#cache.retain(unchanged);
    this.#failed.retain(unchanged);
    // Checks in flight stay: each verdict is taken only if the user's hash is still the one it
    // was checked against (else checked again). Dropping them all made every reload restart
    // every first login, so reloads more often than a scrypt run took starved new clients
    // (found by the reload-under-load test on a busy machine: 2 tunnels in 4 s).
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

  /** The bounded, threaded password checks (for tests and metrics). */
  get hashing(): PasswordChecks {
    return this.#hashing;
  }

  /**
   * The user's name when the password is right, else undefined; a Failure (returned, not
   * thrown) when the password cannot be checked now because a bound on password checks is
   * reached. Never throws for bad input. Answered at once (no promise) when this name and
   * password were verified, or found wrong, recently.
   */
  authenticate(name: string, password: string, source?: CheckSource): string | undefined | Failure | Promise<string | undefined | Failure> {
    if (name.length > 255 || password.length > 1024) return undefined;
    const key = CredentialCache.key(name, password);
    if (this.#cache.getByKey(key) !== undefined) return name;
    if (this.#failed.getByKey(key) !== undefined) return undefined;
    const checks = this.#checks;
    const raw = this.#raw.get(name);
    let running = checks.get(key);
    // A check in flight against a hash a reload has since replaced is not shared.
    if (running === undefined || running.raw !== raw) {
      const started = this.#hashing.check(source?.remoteAddress, name, password, this.#users.get(name) ?? this.#dummy);
      if (started instanceof Failure) return started;
      const entry = { raw, check: started.finally(() => checks.get(key) === entry && checks.delete(key)) };
      running = entry;
      checks.set(key, entry);
    }
    return this.#verdict(name, password, key, running.check, raw, source);
  }

  async #verdict(name: string, password: string, key: string, check: Promise<boolean>, raw: string | undefined, source: CheckSource | undefined): Promise<string | undefined | Failure> {
    const ok = await check;
    // A reload changed (or added, or removed) this user while the check ran: the answer was about the old hash.
    if (this.#raw.get(name) !== raw) return this.authenticate(name, password, source);
    if (!ok || !this.#users.has(name)) {
      this.#failed.rememberByKey(key, name);
      return undefined;
    }
    this.#cache.rememberByKey(key, name);
    return name;
  }

  /** End the password-check threads. */
  close(): Promise<void> {
    return this.#hashing.close();
  }
}

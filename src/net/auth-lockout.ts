import { channel } from 'node:diagnostics_channel';
import { canonicalAddress, ipv6Groups } from './ip-canonical.js';

/**
 * Wrong credentials limited per client address, one concept for both faces that check
 * credentials: the admin listener's bearer token and the forward proxy's users (Basic
 * Proxy-Authorization on the HTTP proxy and CONNECT, RFC 1929 on SOCKS5, SOCKS4's USERID).
 *
 * Each address counts its wrong credentials in a fixed window (`windowMs`, from its first
 * failure). At `maxFailures` it is locked out for `lockoutMs`; each further lockout of the
 * same address doubles that, up to `maxLockoutMs`. While locked out, every attempt from it is
 * refused before its credential is looked at: no scrypt run, no token comparison, and a right
 * credential is refused too (else the lockout would tell the guesser which guess was right).
 * A refused attempt is not counted. A success resets nothing: not its own address's count
 * (a client that holds one account could otherwise guess another's between its own logins),
 * and never another address's.
 *
 * An address is an IPv4 address or an IPv6 /64 (one host usually holds a whole /64: counting
 * each of its addresses apart would give it 2^64 windows); `::ffff:a.b.c.d` is `a.b.c.d`.
 * At most `maxAddresses` are tracked. A newcomer past it makes room by forgetting an address
 * that is not locked out (the one that failed least recently), else one whose lockout has
 * ended; an address still locked out is never forgotten for a newcomer (before, an attacker
 * with more than `maxAddresses` addresses pushed a locked one out and guessed again). When
 * every tracked address is still locked out, the newcomer's wrong credential is answered as
 * any other but not counted: it is published on AUTH_UNTRACKED_CHANNEL (the metric
 * `gatewise_auth_lockout_untracked_total`), so an operator sees that `maxAddresses` is too
 * small. Refusing untracked addresses instead would hand whoever holds `maxAddresses`
 * addresses a way to lock every other client out, right passwords included; the password
 * checks' own limits (per source and overall, and scrypt's cost) still bound such a guesser.
 * An address is forgotten once quiet (no failure) for its window and, after a lockout, for as
 * long again as that lockout lasted (then its next lockout starts short again).
 *
 * In a `--workers N` group the workers share one count (net/auth-lockout-group.ts): a worker
 * reports each wrong credential to the primary, which counts them in its own AuthLockout and
 * tells every worker of a lockout (`lockedByGroup`); a worker refuses from its own table,
 * without asking.
 *
 * In a fleet sharing Redis the nodes share one count (net/auth-lockout-fleet.ts): a wrong
 * credential is counted in Redis first (`fleet`), then, when Redis does not answer, in the
 * worker group, then here. A lockout reaches every node on Redis's channel (`lockedByGroup`);
 * each node refuses from its own table, without asking.
 */
export interface AuthLockoutSettings {
  /** Wrong credentials in one window that lock an address out; 0: no limit. */
  readonly maxFailures: number;
  readonly windowMs: number;
  /** The first lockout; each next one doubles. */
  readonly lockoutMs: number;
  readonly maxLockoutMs: number;
  /** Addresses tracked at once. */
  readonly maxAddresses: number;
}

/** 10 wrong credentials a minute lock an address out for 1 minute, then 2, 4 … up to 1 hour. */
export const AUTH_LOCKOUT_DEFAULTS: AuthLockoutSettings = { maxFailures: 10, windowMs: 60_000, lockoutMs: 60_000, maxLockoutMs: 3_600_000, maxAddresses: 10_000 };

/** Published when an address is locked out (metrics count it; the face that owns the limiter logs it). */
export const AUTH_LOCKOUT_CHANNEL = 'gatewise:auth:lockout';

export interface AuthLockoutEvent {
  /** Which credential: `admin` (the bearer token) or `forward` (proxy users). */
  readonly face: string;
  /** The client's address as the socket gave it. */
  readonly address: string;
  /** What is counted: the address, or its IPv6 /64. */
  readonly key: string;
  /** Wrong credentials that tripped it (maxFailures). */
  readonly failures: number;
  readonly lockoutMs: number;
  /** 1 for the first lockout of this address while it is remembered, 2 for the next … */
  readonly strike: number;
}

const lockoutChannel = channel(AUTH_LOCKOUT_CHANNEL);

/** Published when a wrong credential is not counted: every tracked address is locked out (`maxAddresses` too small, or a flood of addresses). */
export const AUTH_UNTRACKED_CHANNEL = 'gatewise:auth:untracked';

export interface AuthUntrackedEvent {
  readonly face: string;
  readonly address: string;
  readonly key: string;
}

const untrackedChannel = channel(AUTH_UNTRACKED_CHANNEL);

/**
 * How a worker's limiter reaches its group (net/auth-lockout-group.ts): `report` hands a wrong
 * credential to the primary, which counts it; false when it cannot (the primary is gone): the
 * limiter then counts it itself.
 */
export interface AuthLockoutShare {
  report(key: string, address: string, settings: AuthLockoutSettings): boolean;
}

/**
 * How a limiter reaches the fleet's count (net/auth-lockout-fleet.ts): `report` hands a wrong
 * credential to Redis; false when it cannot now (Redis is away): the limiter counts it in its
 * group or itself. One it handed on and Redis then did not answer is given back with
 * `failedAside`.
 */
export interface AuthLockoutFleetLink {
  report(key: string, address: string, settings: AuthLockoutSettings): boolean;
}

/** A lockout in force, as the primary tells a worker that joins (`ms`: what is left of it). */
export interface ActiveLockout {
  readonly key: string;
  readonly ms: number;
  readonly lastLockoutMs: number;
  readonly strike: number;
}

/** The log line of a lockout's start (warn), the same for both faces: its fields and its words. */
export function lockoutLogLine(e: AuthLockoutEvent): [Record<string, unknown>, string] {
  const what = e.face === 'admin' ? 'wrong admin tokens' : 'wrong proxy credentials';
  const secs = Math.ceil(e.lockoutMs / 1000);
  return [
    { component: e.face, type: 'auth-lockout', face: e.face, address: e.address, key: e.key, failures: e.failures, lockoutMs: e.lockoutMs, strike: e.strike },
    `${e.address}${e.key !== e.address ? ` (${e.key})` : ''} locked out for ${secs} s after ${e.failures} ${what} (lockout ${e.strike}); its attempts are refused unchecked until then`,
  ];
}

interface Entry {
  windowStart: number;
  failures: number;
  lockedUntil: number;
  /** Length of the last lockout (0: none yet). */
  lastLockoutMs: number;
  strikes: number;
  lastFailure: number;
}

/**
 * Keys of the IPv6 (and IPv4-mapped) connections' addresses, per connection: canonicalising an
 * IPv6 address costs a parse and a few strings, once per connection instead of once per
 * credential check. An IPv4 address is its own key and never looks here.
 */
const connectionKeys = new WeakMap<object, { readonly address: string; readonly key: string | undefined }>();

/** The key an address is counted under: an IPv4 address, or an IPv6 address's /64. */
export function lockoutKey(address: string): string | undefined {
  if (!address.includes(':')) return address;
  const c = canonicalAddress(address);
  if (c === undefined) return undefined;
  if (c.family === 4) return c.address;
  const g = ipv6Groups(c.address)!;
  return `${g[0]!.toString(16)}:${g[1]!.toString(16)}:${g[2]!.toString(16)}:${g[3]!.toString(16)}::/64`;
}

/**
 * `lockoutKey(address)`, kept on `connection` (the socket the address is its peer's) for the
 * next check on it. An IPv4 address: itself, nothing looked up or kept.
 */
export function connectionLockoutKey(address: string, connection: object | undefined): string | undefined {
  if (!address.includes(':')) return address;
  if (connection === undefined) return lockoutKey(address);
  const c = connectionKeys.get(connection);
  if (c !== undefined && c.address === address) return c.key;
  const key = lockoutKey(address);
  connectionKeys.set(connection, { address, key });
  return key;
}

const fresh = (now: number): Entry => ({ windowStart: now, failures: 0, lockedUntil: 0, lastLockoutMs: 0, strikes: 0, lastFailure: now });

export class AuthLockout {
  readonly #face: string;
  #s: AuthLockoutSettings;
  /** Addresses counting wrong credentials, not locked out: least recently failing first (the first a newcomer pushes out). */
  readonly #counting = new Map<string, Entry>();
  /** Addresses locked out (or whose lockout ended, until looked at): never pushed out while locked. */
  readonly #locked = new Map<string, Entry>();
  readonly #onLockout: ((e: AuthLockoutEvent) => void) | undefined;
  readonly #now: () => number;
  #share: AuthLockoutShare | undefined;
  #fleet: AuthLockoutFleetLink | undefined;
  #untracked = 0;
  /** Called for a wrong credential that was not counted (every tracked address locked out); by default it is published on AUTH_UNTRACKED_CHANNEL. */
  onUntracked: (e: AuthUntrackedEvent) => void = (e) => {
    if (untrackedChannel.hasSubscribers) untrackedChannel.publish(e);
  };

  /** `onLockout`: called once per lockout start (the owner logs it); the event is also published on AUTH_LOCKOUT_CHANNEL. */
  constructor(face: string, settings: AuthLockoutSettings = AUTH_LOCKOUT_DEFAULTS, onLockout?: (e: AuthLockoutEvent) => void, now: () => number = () => performance.now()) {
    this.#face = face;
    this.#s = settings;
    this.#onLockout = onLockout;
    this.#now = now;
  }

  /** New settings (a reload): addresses keep their counts and lockouts; a limit turned off forgets them. */
  configure(settings: AuthLockoutSettings): void {
    this.#s = settings;
    if (settings.maxFailures === 0) this.clear();
    // A smaller table (the operator's choice): the counting ones go first, then the oldest lockouts.
    while (this.size > settings.maxAddresses) {
      const from = this.#counting.size > 0 ? this.#counting : this.#locked;
      from.delete(from.keys().next().value!);
    }
  }

  get settings(): AuthLockoutSettings {
    return this.#s;
  }

  get face(): string {
    return this.#face;
  }

  /** Addresses tracked now (with failures counted or locked out). */
  get size(): number {
    return this.#counting.size + this.#locked.size;
  }

  /**
   * Addresses locked out now (or whose lockout ended and was not looked at since). Zero:
   * nothing is refused, a caller may skip reading the address (one field test on the path of
   * a right credential).
   */
  get lockouts(): number {
    return this.#locked.size;
  }

  /** Wrong credentials not counted since this limiter started, because every tracked address was locked out. */
  get untracked(): number {
    return this.#untracked;
  }

  /** In a worker of a group: where wrong credentials go to be counted (undefined: counted here). */
  share(share: AuthLockoutShare | undefined): void {
    this.#share = share;
  }

  /** In a node of a fleet sharing Redis: where wrong credentials go to be counted first (undefined: in the group or here). */
  fleet(link: AuthLockoutFleetLink | undefined): void {
    this.#fleet = link;
  }

  /**
   * How long `address` stays locked out, in ms (0: it may try). Reads no credential.
   * `connection`: the socket `address` came from, which keeps its key for the next check.
   */
  lockedFor(address: string | undefined, connection?: object): number {
    if (address === undefined || this.size === 0) return 0;
    const key = connectionLockoutKey(address, connection);
    if (key === undefined) return 0;
    const now = this.#now();
    if (this.#locked.size > 0) {
      const e = this.#locked.get(key);
      if (e !== undefined) {
        if (e.lockedUntil > now) return e.lockedUntil - now;
        this.#ended(key, e, now);
        return 0;
      }
    }
    if (this.#counting.size > 0) {
      const e = this.#counting.get(key);
      if (e !== undefined && this.#forgettable(e, now)) this.#counting.delete(key);
    }
    return 0;
  }

  /** A wrong credential from `address`; the lockout it starts, in ms, or 0 (in a fleet or a group: 0, Redis or the primary counts it). */
  failed(address: string | undefined, connection?: object): number {
    const s = this.#s;
    if (address === undefined || s.maxFailures === 0) return 0;
    const key = connectionLockoutKey(address, connection);
    if (key === undefined) return 0;
    const now = this.#now();
    if (this.#fleet !== undefined || this.#share !== undefined) {
      // A check under way when the lockout began answers after it: not counted.
      const l = this.#locked.get(key);
      if (l !== undefined && l.lockedUntil > now) return 0;
      if (this.#fleet?.report(key, address, s) === true) return 0;
    }
    return this.#here(key, address, now);
  }

  /** A wrong credential handed to the fleet that Redis did not count (no answer in time): counted in the group or here, as if Redis had been away. */
  failedAside(key: string, address: string): void {
    if (this.#s.maxFailures === 0) return;
    const now = this.#now();
    const l = this.#locked.get(key);
    if (l !== undefined && l.lockedUntil > now) return;
    this.#here(key, address, now);
  }

  /** Counted by the group's primary, else here. */
  #here(key: string, address: string, now: number): number {
    if (this.#share?.report(key, address, this.#s) === true) return 0;
    return this.#count(key, address, now);
  }

  #count(key: string, address: string, now: number): number {
    const s = this.#s;
    this.#sweep(now);
    let e = this.#locked.get(key);
    if (e !== undefined) {
      // A check under way when the lockout began answers after it: not counted (the lockout stands as it is).
      if (e.lockedUntil > now) return 0;
      this.#locked.delete(key);
    } else {
      e = this.#counting.get(key);
      // Least recently failing first: the one the cap drops.
      if (e !== undefined) this.#counting.delete(key);
    }
    if (e === undefined) {
      if (!this.#admit(now)) {
        this.#notTracked(key, address);
        return 0;
      }
      e = fresh(now);
    } else if (this.#forgettable(e, now)) e = fresh(now);
    else if (now - e.windowStart >= s.windowMs) {
      e.windowStart = now;
      e.failures = 0;
    }
    e.lastFailure = now;
    if (++e.failures < s.maxFailures) {
      this.#counting.set(key, e);
      return 0;
    }
    const ms = Math.min(s.maxLockoutMs, e.lastLockoutMs === 0 ? s.lockoutMs : e.lastLockoutMs * 2);
    e.strikes++;
    e.lastLockoutMs = ms;
    e.lockedUntil = now + ms;
    this.#locked.set(key, e);
    const event: AuthLockoutEvent = { face: this.#face, address, key, failures: e.failures, lockoutMs: ms, strike: e.strikes };
    e.failures = 0;
    e.windowStart = now;
    this.#announce(event);
    return ms;
  }

  /**
   * A lockout the group's primary decided (net/auth-lockout-group.ts): `key` is refused here
   * for `ms` from now. `announce`: this worker's wrong credential tripped it, so it logs and
   * publishes it (once in the group: the metric is summed over the workers).
   */
  lockedByGroup(key: string, address: string, ms: number, strike: number, failures: number, announce: boolean, lastLockoutMs = ms): void {
    // A limit turned off here (a reload) takes no lockout from the group either.
    if (ms <= 0 || this.#s.maxFailures === 0) return;
    const now = this.#now();
    let e = this.#locked.get(key);
    if (e !== undefined) this.#locked.delete(key);
    else {
      e = this.#counting.get(key);
      if (e !== undefined) this.#counting.delete(key);
      else if (!this.#admit(now)) {
        this.#notTracked(key, address);
        return;
      } else e = fresh(now);
    }
    e.lockedUntil = now + ms;
    e.lastLockoutMs = lastLockoutMs;
    e.strikes = strike;
    e.failures = 0;
    e.windowStart = now;
    e.lastFailure = now;
    this.#locked.set(key, e);
    if (announce) this.#announce({ face: this.#face, address, key, failures, lockoutMs: ms, strike });
  }

  /** The lockout in force for `address`, with what is left of it, or undefined. */
  activeLockout(address: string): ActiveLockout | undefined {
    const key = lockoutKey(address);
    const e = key === undefined ? undefined : this.#locked.get(key);
    if (key === undefined || e === undefined) return undefined;
    const now = this.#now();
    return e.lockedUntil > now ? { key, ms: e.lockedUntil - now, lastLockoutMs: e.lastLockoutMs, strike: e.strikes } : undefined;
  }

  /** What is left of the lockout of `key` (an address's key: `lockoutKey`), in ms; 0: none. */
  keyLockedFor(key: string): number {
    const e = this.#locked.get(key);
    return e === undefined ? 0 : Math.max(0, e.lockedUntil - this.#now());
  }

  /** The lockouts in force, with what is left of each (the primary tells a worker that joins). */
  activeLockouts(): ActiveLockout[] {
    const now = this.#now();
    const out: ActiveLockout[] = [];
    for (const [key, e] of this.#locked) if (e.lockedUntil > now) out.push({ key, ms: e.lockedUntil - now, lastLockoutMs: e.lastLockoutMs, strike: e.strikes });
    return out;
  }

  /** A wrong credential not counted (every tracked address locked out), made visible. */
  notTracked(key: string, address: string): void {
    this.#notTracked(key, address);
  }

  #notTracked(key: string, address: string): void {
    this.#untracked++;
    this.onUntracked({ face: this.#face, address, key });
  }

  #announce(event: AuthLockoutEvent): void {
    this.#onLockout?.(event);
    if (lockoutChannel.hasSubscribers) lockoutChannel.publish(event);
  }

  /** A lockout that ended: the address counts again (it keeps its strikes until forgotten; in a group the primary keeps them, in a fleet Redis). */
  #ended(key: string, e: Entry, now: number): void {
    this.#locked.delete(key);
    if (this.#share === undefined && this.#fleet === undefined && !this.#forgettable(e, now)) this.#counting.set(key, e);
  }

  /**
   * Room for one more address, by forgetting one that is not locked out: the one that failed
   * least recently, else one whose lockout has ended. False when every tracked address is
   * still locked out. The locked ones are looked at a few at a time from the oldest lockout,
   * each still in force moved to the back, so a scan costs at most a few steps and the next
   * scans go on where it stopped.
   */
  #admit(now: number): boolean {
    const max = this.#s.maxAddresses;
    while (this.size >= max) {
      if (this.#counting.size > 0) {
        this.#counting.delete(this.#counting.keys().next().value!);
        continue;
      }
      let freed = false;
      let n = 0;
      for (const [k, e] of this.#locked) {
        if (n++ >= 8) break;
        this.#locked.delete(k);
        if (e.lockedUntil <= now) {
          freed = true;
          break;
        }
        this.#locked.set(k, e);
      }
      if (!freed) return false;
    }
    return true;
  }

  /** Whether an entry says nothing any more: not locked out, no failure in its window, and quiet for its last lockout's length after it ended. */
  #forgettable(e: Entry, now: number): boolean {
    return e.lockedUntil <= now && now - e.lastFailure >= this.#s.windowMs && now - e.lockedUntil >= e.lastLockoutMs;
  }

  /** Forget a few of the oldest counting entries that say nothing any more (the Map's order is by last failure). */
  #sweep(now: number): void {
    let n = 0;
    for (const [k, e] of this.#counting) {
      if (n++ >= 4 || !this.#forgettable(e, now)) return;
      this.#counting.delete(k);
    }
  }

  /** Forget every address (tests; an operator's reset). */
  clear(): void {
    this.#counting.clear();
    this.#locked.clear();
  }
}

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
 * At most `maxAddresses` are tracked: past it the one that failed least recently is
 * forgotten. An address is forgotten once quiet (no failure) for its window and, after a
 * lockout, for as long again as that lockout lasted (then its next lockout starts short again).
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

/** The key an address is counted under: an IPv4 address, or an IPv6 address's /64. */
export function lockoutKey(address: string): string | undefined {
  if (!address.includes(':')) return address;
  const c = canonicalAddress(address);
  if (c === undefined) return undefined;
  if (c.family === 4) return c.address;
  const g = ipv6Groups(c.address)!;
  return `${g[0]!.toString(16)}:${g[1]!.toString(16)}:${g[2]!.toString(16)}:${g[3]!.toString(16)}::/64`;
}

export class AuthLockout {
  readonly #face: string;
  #s: AuthLockoutSettings;
  readonly #entries = new Map<string, Entry>();
  readonly #onLockout: ((e: AuthLockoutEvent) => void) | undefined;
  readonly #now: () => number;

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
    if (settings.maxFailures === 0) this.#entries.clear();
    while (this.#entries.size > settings.maxAddresses) this.#entries.delete(this.#entries.keys().next().value!);
  }

  get settings(): AuthLockoutSettings {
    return this.#s;
  }

  /** Addresses tracked now (with failures counted or locked out). Zero: nothing to look up, a caller may skip reading the address. */
  get size(): number {
    return this.#entries.size;
  }

  /** How long `address` stays locked out, in ms (0: it may try). Reads no credential. */
  lockedFor(address: string | undefined): number {
    if (address === undefined || this.#entries.size === 0) return 0;
    const key = lockoutKey(address);
    if (key === undefined) return 0;
    const e = this.#entries.get(key);
    if (e === undefined) return 0;
    const now = this.#now();
    if (e.lockedUntil > now) return e.lockedUntil - now;
    if (this.#forgettable(e, now)) this.#entries.delete(key);
    return 0;
  }

  /** A wrong credential from `address`; the lockout it starts, in ms, or 0. */
  failed(address: string | undefined): number {
    const s = this.#s;
    if (address === undefined || s.maxFailures === 0) return 0;
    const key = lockoutKey(address);
    if (key === undefined) return 0;
    const now = this.#now();
    this.#sweep(now);
    let e = this.#entries.get(key);
    if (e === undefined) {
      while (this.#entries.size >= s.maxAddresses) this.#entries.delete(this.#entries.keys().next().value!);
      e = { windowStart: now, failures: 0, lockedUntil: 0, lastLockoutMs: 0, strikes: 0, lastFailure: now };
    } else {
      // Least recently failing first: the one the cap drops.
      this.#entries.delete(key);
      // A check under way when the lockout began answers after it: not counted (the lockout stands as it is).
      if (e.lockedUntil > now) {
        this.#entries.set(key, e);
        return 0;
      }
      if (this.#forgettable(e, now)) e = { windowStart: now, failures: 0, lockedUntil: 0, lastLockoutMs: 0, strikes: 0, lastFailure: now };
      else if (now - e.windowStart >= s.windowMs) {
        e.windowStart = now;
        e.failures = 0;
      }
    }
    this.#entries.set(key, e);
    e.lastFailure = now;
    if (++e.failures < s.maxFailures) return 0;
    const ms = Math.min(s.maxLockoutMs, e.lastLockoutMs === 0 ? s.lockoutMs : e.lastLockoutMs * 2);
    e.strikes++;
    e.lastLockoutMs = ms;
    e.lockedUntil = now + ms;
    const event: AuthLockoutEvent = { face: this.#face, address, key, failures: e.failures, lockoutMs: ms, strike: e.strikes };
    e.failures = 0;
    e.windowStart = now;
    this.#onLockout?.(event);
    if (lockoutChannel.hasSubscribers) lockoutChannel.publish(event);
    return ms;
  }

  /** Whether an entry says nothing any more: not locked out, no failure in its window, and quiet for its last lockout's length after it ended. */
  #forgettable(e: Entry, now: number): boolean {
    return e.lockedUntil <= now && now - e.lastFailure >= this.#s.windowMs && now - e.lockedUntil >= e.lastLockoutMs;
  }

  /** Forget a few of the oldest entries that say nothing any more (the Map's order is by last failure). */
  #sweep(now: number): void {
    let n = 0;
    for (const [k, e] of this.#entries) {
      if (n++ >= 4 || !this.#forgettable(e, now)) return;
      this.#entries.delete(k);
    }
  }

  /** Forget every address (tests; an operator's reset). */
  clear(): void {
    this.#entries.clear();
  }
}

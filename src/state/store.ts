/**
 * The state layer: one small, Redis-shaped interface for what must survive across requests
 * and, with a shared store, across the workers of one machine and the nodes of a fleet.
 *
 * Counters: keys are strings; hash-like keys hold named integer fields. Every write can set
 * an expiry, as Redis INCRBY + PEXPIRE (or HINCRBY + PEXPIRE) would.
 *
 * Fleet operations (each one atomic in the store, a Lua script in Redis): a request-rate
 * check (GCRA), the sticky-session pick, concurrency leases counted per holder (a node or a
 * worker) that lapse when the holder stops renewing them, and exit cool-downs told to every
 * holder. A `MemoryStore` answers them for one process; `shared` stores (`RedisStore`,
 * `IpcStore`) answer them for many, and are always used through `SharedState`, which bounds
 * every wait and falls back to local state.
 */
export interface Store {
  /** True when other processes see the same state (Redis, the primary over IPC). */
  readonly shared: boolean;
  /** Add `n` to the integer at `key` (missing = 0) and return the new value. When
   * `ttlMs` is given and the key has no expiry yet, it expires `ttlMs` from now. */
  incrby(key: string, n: number, ttlMs?: number): Promise<number>;
  /** The same, answered at once, offered by stores that live in this process (MemoryStore). */
  incrbySync?(key: string, n: number, ttlMs?: number): number;
  /** The integer at `key`, or undefined when missing or expired. */
  get(key: string): Promise<number | undefined>;
  /** Add `n` to field `field` of the hash at `key`; expiry as for incrby. */
  hincrby(key: string, field: string, n: number, ttlMs?: number): Promise<number>;
  /** Every field of the hash at `key` ({} when missing or expired). */
  hgetall(key: string): Promise<Record<string, number>>;
  /** Keys starting with `prefix` (SCAN MATCH prefix*). */
  keys(prefix: string): Promise<string[]>;
  /** Milliseconds until `key` expires; undefined when missing or without expiry. */
  pttl(key: string): Promise<number | undefined>;
  del(key: string): Promise<void>;

  /**
   * One request against a rate of `perSecond` with a burst of `burst` (GCRA: the key holds
   * the theoretical arrival time). Resolves to 0 when allowed (and counted), else the
   * milliseconds until one would be.
   */
  rate(key: string, perSecond: number, burst: number): Promise<number>;
  /** The same, answered at once, by stores that live in this process (MemoryStore). */
  rateSync?(key: string, perSecond: number, burst: number): number;
  /**
   * The sticky session at `key`: its exit when pinned, alive (lifetime and idle time) and not
   * in `unusable` (touched: its idle time starts again); otherwise `candidate` is pinned (a
   * re-pin keeps the session's first lifetime). Undefined when there is no usable pin and no
   * candidate (''). `repinned`: a live session moved to `candidate`.
   */
  sessionPick(key: string, candidate: string, unusable: readonly string[], ttlMs: number, idleMs: number): Promise<SessionPick | undefined>;
  /**
   * Concurrency lease: `holder` asks to hold `count` of `key` (its own count after taking one
   * more); granted, and recorded, when the counts of every live holder stay within `max`.
   */
  leaseAcquire(key: string, holder: string, count: number, max: number): Promise<boolean>;
  /** Set `holder`'s count of `key` (after a release; 0 removes it). */
  leaseSet(key: string, holder: string, count: number): Promise<void>;
  /**
   * One whole admission in one step (a single Lua script in Redis: one round trip): read the
   * usage totals of `quota`, refuse when one has reached its limit; check the rate cell;
   * check every lease; then, only when all pass, count the rate cell and record the leases.
   * Nothing is taken when anything refuses. Offered by stores that answer it in one call
   * (`RedisStore`); without it, `SharedState` asks the parts one by one.
   */
  admit?(ask: StoreAdmitAsk): Promise<StoreAdmitAnswer>;
  /** `holder` is alive for `ttlMs` more: its leases count until then. */
  heartbeat(holder: string, ttlMs: number): Promise<void>;
  /** Tell every holder that `scope` (an exit, or an exit for one domain) cools down for `forMs` more milliseconds (a duration, so nodes' clocks need not agree). */
  publishCooldown(scope: string, forMs: number): Promise<void>;
  /** Hear the cool-downs others published (not one's own). */
  onCooldown(listener: (scope: string, forMs: number) => void): void;
  /**
   * A wrong credential of limiter `name` (`forward`, `admin`) from client key `key`, counted
   * fleet-wide (net/auth-lockout-fleet.ts): offered by `RedisStore` (one Lua script). Counts
   * it in the address's window with `settings` (the calling node's); at `maxFailures` locks the
   * key out and publishes the lockout to every other holder (`onLockout`). While the key is
   * locked out already, counts nothing and answers what is left of the lockout.
   */
  lockoutFailed?(name: string, key: string, address: string, settings: LockoutCounting): Promise<LockoutVerdict>;
  /** Hear the lockouts other holders' wrong credentials started (not one's own). */
  onLockout?(listener: (news: LockoutNews) => void): void;
  /**
   * The lockouts in force in the fleet (every limiter name), with what is left of each: what a
   * holder could not hear on the channel (it started later, or its subscription was down).
   * At most LOCKOUTS_KEPT, the longest-lasting.
   */
  lockoutsInForce?(): Promise<LockoutNews[]>;
  /**
   * A lockout a holder decided alone (the store was away) and still in force: `ms` left of it.
   * The store takes it unless it holds one that ends as late already, and then publishes it to
   * the other holders (`onLockout`). Strike and last length: the larger of the two.
   */
  lockoutImpose?(name: string, key: string, address: string, lockout: { ms: number; lastLockoutMs: number; strike: number }, settings: LockoutCounting): Promise<boolean>;
  /** Called each time the lockout channel's subscription is made (again): lockouts published meanwhile were not heard. */
  onLockoutSubscribed?(listener: () => void): void;
  /** For a remote store: whether it is connected now (undefined: always). */
  reachable?(): boolean;
  /** For a remote store: called each time it connects again after being unreachable. */
  onReachable?(listener: () => void): void;
  close(): Promise<void>;
}

/** What `Store.lockoutFailed` counts with (net/auth-lockout.ts AuthLockoutSettings, less the table size). */
export interface LockoutCounting {
  readonly maxFailures: number;
  readonly windowMs: number;
  readonly lockoutMs: number;
  readonly maxLockoutMs: number;
}

/** `Store.lockoutFailed`'s answer: `ms` > 0 while the key is locked out (`tripped`: this wrong credential started it), with its strike and length. */
export interface LockoutVerdict {
  readonly ms: number;
  readonly strike: number;
  readonly lastLockoutMs: number;
  readonly failures: number;
  readonly tripped: boolean;
}

/** A lockout another holder started: `name`'s key locked out for `ms` from when it is heard. */
export interface LockoutNews {
  readonly name: string;
  readonly key: string;
  readonly address: string;
  readonly ms: number;
  readonly strike: number;
  readonly failures: number;
  /** Its length (when told apart from what is left of it: `lockoutsInForce`). */
  readonly lastLockoutMs?: number;
}

export interface SessionPick {
  exitId: string;
  repinned: boolean;
}

/** A byte quota an admission checks in the store: refused when the store's total has reached `up` or `down` (the limit less what this node has not written yet). */
export interface QuotaAsk {
  /** The usage hash (fields up, down). */
  key: string;
  up?: number;
  down?: number;
}

/** The parts of one admission (see `Store.admit`). */
export interface AdmitAsk {
  rate?: { key: string; perSecond: number; burst: number };
  quota?: readonly QuotaAsk[];
  /** Concurrency leases, each within `max` across every live holder. */
  leases?: readonly { key: string; max: number }[];
}

/**
 * `AdmitAsk` as the store sees it: the holder and its count of each lease after taking
 * `want` more. `want` (default 1): take between 1 and `want` of the rate cell or lease (as
 * many as fit; a credit block, src/state/credit.ts), refused only when not even one fits;
 * `granted` in the answer says how many were taken.
 */
export interface StoreAdmitAsk {
  holder: string;
  rate?: { key: string; perSecond: number; burst: number; want?: number };
  quota: readonly QuotaAsk[];
  leases: readonly { key: string; count: number; max: number; want?: number }[];
}

/** The store's verdict. `usage`: the totals read for `quota`, in its order. `granted` (when admitted): how many of the rate cell (0 without one) and of each lease were taken. */
export type StoreAdmitAnswer = { usage: Array<{ up: number; down: number }> } & (
  | { ok: true; granted?: { rate: number; leases: number[] } }
  | { ok: false; refused: 'quota'; index: number; dir: 'up' | 'down' }
  | { ok: false; refused: 'rate'; waitMs: number }
  | { ok: false; refused: 'lease'; index: number }
);

/** Lockouts in force a shared store keeps listed for holders that could not hear them (`lockoutsInForce`): the longest-lasting this many. */
export const LOCKOUTS_KEPT = 10_000;

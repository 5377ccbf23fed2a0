import type { Failure } from '../failure/index.js';
import type { AdmitResult, QuotaAsk, SharedState, Store } from '../state/index.js';
import { formatBytes } from '../text/index.js';
import { limitRefusal } from './limit-refusal.js';
import { UsageLedger, type Direction, type Period, type PeriodSpan } from './usage-ledger.js';

export interface ByteLimits {
  up?: number;
  down?: number;
}

/** What a customer bought. Every limit is optional (absent = unlimited). */
export interface PlanSpec {
  maxConnections?: number;
  requestsPerSecond?: number;
  bytesPerDay?: ByteLimits;
  bytesPerMonth?: ByteLimits;
  /** Egress pools the plan may use (absent = any). */
  pools?: readonly string[];
}

export { periodOf, usageKey, type Period } from './usage-ledger.js';

/** A plan's part of one admission through a store that answers it whole (`SharedState.admit`). */
export interface PlanAsk {
  rate?: { key: string; perSecond: number; burst: number };
  /** Byte quotas whose totals the store reads (not seen in the last second), limits less what waits here. */
  quota: QuotaAsk[];
  /** The period of each `quota` entry. */
  periods: Period[];
}

/** A user's own `trafficLimit`: bytes up and down together per `period`. */
export interface TrafficLimit {
  limit: number;
  period: Period;
}

const PERIODS = ['day', 'month'] as const;
/** The shared asks' empty lists: frozen, so that a push into a shared ask throws instead of leaking into every admission. */
const NO_QUOTA = Object.freeze([]) as unknown as QuotaAsk[];
const NO_PERIODS = Object.freeze([]) as unknown as Period[];
/** Cached asks kept at most (one per user seen; cleared past it). */
const MAX_CACHED_ASKS = 10_000;
const DIRECTIONS = ['up', 'down'] as const;

/** A plan's byte limits for a period; undefined when it limits neither direction. */
function byteLimits(plan: PlanSpec, period: Period): ByteLimits | undefined {
  const limits = period === 'day' ? plan.bytesPerDay : plan.bytesPerMonth;
  return limits === undefined || (limits.up === undefined && limits.down === undefined) ? undefined : limits;
}

/** A plan's limit on one direction of a period; undefined when unlimited. */
function limitOf(plan: PlanSpec | undefined, period: Period, dir: Direction): number | undefined {
  return plan === undefined ? undefined : (period === 'day' ? plan.bytesPerDay : plan.bytesPerMonth)?.[dir];
}

/**
 * A user held at a byte quota: until the period resets, judged against `limit`. It stands
 * only while the usage is at or over the user's current limit: a plan change or a reload
 * that raises (or removes) the limit re-judges it against the usage (`PlanEnforcer.#stands`).
 */
interface Block {
  until: number;
  period: Period;
  /** `total`: the user's own trafficLimit (up and down together). */
  dir: 'up' | 'down' | 'total';
  /** The limit the usage was found at or over. */
  limit: number;
}

/** Blocks per user: [day.up, day.down, month.up, month.down, trafficLimit]. */
type Blocks = [Block | undefined, Block | undefined, Block | undefined, Block | undefined, Block | undefined];
type Slot = 0 | 1 | 2 | 3 | 4;
const TRAFFIC: Slot = 4;

function slot(period: Period, dir: 'up' | 'down' | 'total'): Slot {
  return dir === 'total' ? TRAFFIC : (((period === 'day' ? 0 : 2) + (dir === 'up' ? 0 : 1)) as Slot);
}

/** The plan field a byte quota comes from, e.g. "bytesPerDay.down". */
function quotaName(period: Period, dir: Direction): string {
  return `bytesPer${period === 'day' ? 'Day' : 'Month'}.${dir}`;
}

/**
 * Enforces plans: requests per second (a one-second window counter in the Store),
 * bytes per day and month (usage hashes in the Store, fed by the meter through the
 * batching UsageLedger), allowed pools; and each user's own trafficLimit (bytes up and down
 * together per period) as a byte quota too. Byte quotas are checked when a request, tunnel
 * or association starts, as bytes move (against the ledger's estimate: the user is over
 * quota as soon as a counted chunk crosses the limit, and a tunnel or an HTTP body checks
 * before it counts the next chunk, so that one is cut, neither passed on nor counted) and
 * for every UDP datagram (from a local mirror of "over quota"). A block is judged against
 * the user's current limits, so a plan change or a reload that raises a limit lifts it.
 */
export class PlanEnforcer {
  readonly #plans: ReadonlyMap<string, PlanSpec>;
  #userPlans: ReadonlyMap<string, string>;
  readonly #store: Store;
  readonly #now: () => number;
  /** Usage per user, day and month, written to the Store in batches. */
  readonly ledger: UsageLedger;
  /** Shared asks per user (`#rateOnlyAsk`). */
  readonly #asks = new Map<string, PlanAsk>();
  /** Users held at a byte quota (only they: the per-chunk check of everyone else is one failed lookup). */
  readonly #over = new Map<string, Blocks>();

  readonly #shared: SharedState | undefined;

  /** `shared`: rate cells in the shared store (Redis, or the primary with --workers), bounded by its budget. */
  /** user → trafficLimit (bytes up and down together per period); changed in place by a reload. */
  readonly #traffic: ReadonlyMap<string, TrafficLimit>;

  constructor(plans: ReadonlyMap<string, PlanSpec>, userPlans: ReadonlyMap<string, string>, store: Store, now: () => number = Date.now, shared?: SharedState, traffic: ReadonlyMap<string, TrafficLimit> = new Map()) {
    this.#traffic = traffic;
    this.#shared = shared;
    this.#plans = plans;
    this.#userPlans = userPlans;
    this.#store = store;
    this.#now = now;
    // A write came back with another node's bytes in the total: the quota may be used up.
    this.ledger = new UsageLedger(store, now, { onTotal: (user, span, dir, total) => this.#checkTotal(user, span, dir, total) });
  }

  /** Write all usage counted so far to the Store (before saving state or stopping). */
  flush(): Promise<void> {
    return this.ledger.flush();
  }

  /** Swap the user → plan table (users file reloaded). */
  setUserPlans(userPlans: ReadonlyMap<string, string>): void {
    this.#userPlans = userPlans;
  }

  planName(user: string | null): string | undefined {
    return user === null ? undefined : this.#userPlans.get(user);
  }

  planOf(user: string | null): PlanSpec | undefined {
    const n = this.planName(user);
    return n === undefined ? undefined : this.#plans.get(n);
  }

  maxConnections(user: string | null): number | undefined {
    return this.planOf(user)?.maxConnections;
  }

  /** The refusal when the plan does not include this pool. */
  checkPool(user: string | null, pool: string | undefined): Failure | undefined {
    const plan = this.planOf(user);
    if (!plan?.pools || pool === undefined) return undefined;
    if (plan.pools.includes(pool)) return undefined;
    return limitRefusal('denied', `plan ${this.planName(user)} does not include egress pool ${pool}`);
  }

  /**
   * Admission of one request, tunnel or association: counts it against requestsPerSecond
   * and checks the byte quotas. Returns the refusal (429 with Retry-After) or undefined.
   * Without I/O when it can be (no plan; usage totals the ledger saw in the last second;
   * a store that counts in-process): a plain value, no promise, as this runs for every
   * request and tunnel of a customer.
   */
  admit(user: string | null): Failure | undefined | Promise<Failure | undefined> {
    if (user === null) return undefined;
    const plan = this.planOf(user);
    if (!plan) return this.#trafficOnly(user);
    const now = this.#now();
    const over = this.#blocked(user, now) ?? this.#trafficOver(user, now);
    if (over) return over;
    for (const period of PERIODS) {
      const limits = byteLimits(plan, period);
      if (limits === undefined) continue;
      const used = this.ledger.fresh(user, period, now);
      if (used === undefined) return this.#admitRead(user, plan, now);
      const refusal = this.#quotaRefusal(user, now, limits, used);
      if (refusal) return refusal;
    }
    return this.#countRequest(user, plan, now);
  }

  /**
   * `admit` split for a store that answers a whole admission in one round trip (Redis): what
   * to ask it (the rate cell; the byte quotas whose totals are not known from the last
   * second, with their limits less what waits here), the refusal known without asking
   * (blocked, or over a quota by fresh totals), or undefined when the user has no plan.
   * `settle` then reads the answer.
   */
  ask(user: string | null): Failure | PlanAsk | undefined {
    if (user === null) return undefined;
    const plan = this.planOf(user);
    if (!plan) return this.#trafficOnly(user);
    const now = this.#now();
    const over = this.#blocked(user, now) ?? this.#trafficOver(user, now);
    if (over) return over;
    let ask: PlanAsk | undefined;
    for (const period of PERIODS) {
      const limits = byteLimits(plan, period);
      if (limits === undefined) continue;
      const used = this.ledger.fresh(user, period, now);
      if (used === undefined) {
        const w = this.ledger.waitingFor(user, period);
        ask ??= { quota: [], periods: [] };
        ask.quota.push({ key: w.key, up: limits.up === undefined ? undefined : limits.up - w.up, down: limits.down === undefined ? undefined : limits.down - w.down });
        ask.periods.push(period);
        continue;
      }
      const refusal = this.#quotaRefusal(user, now, limits, used);
      if (refusal) return refusal;
    }
    const rps = plan.requestsPerSecond;
    if (ask === undefined) return this.#rateOnlyAsk(user, rps);
    if (rps !== undefined) ask.rate = { key: `rate:${user}`, perSecond: rps, burst: rps };
    return ask;
  }

  /** Admission of a user without a plan: only their own trafficLimit (none: nothing to do, one size test). */
  #trafficOnly(user: string): Failure | undefined {
    if (this.#traffic.size === 0) return undefined;
    const now = this.#now();
    return this.#blocked(user, now) ?? this.#trafficOver(user, now);
  }

  /** The user's bytes up and down together this period (the ledger's estimate). */
  #total(user: string, period: Period): number {
    return this.ledger.estimate(user, period, 'up') + this.ledger.estimate(user, period, 'down');
  }

  /**
   * The refusal when the user's own trafficLimit is reached (and the block it sets, so that
   * open tunnels and bodies are cut at their next chunk). The once-a-second sweep then
   * disables the user (accounts.ts); this holds them until it has.
   */
  #trafficOver(user: string, now: number): Failure | undefined {
    if (this.#traffic.size === 0) return undefined;
    const t = this.#traffic.get(user);
    if (t === undefined || this.#total(user, t.period) < t.limit) return undefined;
    this.#block(user, 'total', this.ledger.span(t.period, now).resetsAt, t.period, t.limit);
    return this.#blocked(user, now);
  }

  /**
   * The ask of an admission with no quota total to read (nearly every one: the totals come
   * back with each usage write), made once per user and rate and shared: nobody changes an
   * ask. Saves the ask, its two arrays, the rate object and its key string per admission
   * (~0.2 KB per tunnel on the Redis path; docs/benchmarks.md section 15).
   */
  #rateOnlyAsk(user: string, rps: number | undefined): PlanAsk {
    const had = this.#asks.get(user);
    if (had !== undefined && had.rate?.perSecond === rps) return had;
    const ask: PlanAsk = { quota: NO_QUOTA, periods: NO_PERIODS, rate: rps === undefined ? undefined : { key: `rate:${user}`, perSecond: rps, burst: rps } };
    if (this.#asks.size >= MAX_CACHED_ASKS) this.#asks.clear();
    this.#asks.set(user, ask);
    return ask;
  }

  /**
   * The plan's verdict on the answer to `ask`: the totals read are remembered, a quota or rate
   * refusal becomes the 429, and an admitted request counts. Answered from local state
   * (`usage` undefined), the quotas asked are checked against this node's estimate.
   */
  settle(user: string, ask: PlanAsk, res: AdmitResult): Failure | undefined {
    const now = this.#now();
    const plan = this.planOf(user);
    for (let i = 0; i < ask.quota.length; i++) {
      const period = ask.periods[i]!;
      if (res.usage !== undefined) this.ledger.learn(user, period, ask.quota[i]!.key, res.usage[i]!);
      else if (plan !== undefined && res.ok) {
        const limits = byteLimits(plan, period);
        if (limits === undefined) continue;
        const refusal = this.#quotaRefusal(user, now, limits, { span: this.ledger.span(period, now), up: this.ledger.estimate(user, period, 'up'), down: this.ledger.estimate(user, period, 'down') });
        if (refusal) return refusal;
      }
    }
    if (!res.ok) {
      if (res.refused === 'quota') {
        const period = ask.periods[res.index]!;
        const lim = limitOf(plan, period, res.dir);
        if (lim === undefined) return undefined; // the plan changed meanwhile: no such limit now
        this.#block(user, res.dir, this.ledger.span(period, now).resetsAt, period, lim);
        return this.#blocked(user, now);
      }
      if (res.refused === 'rate') return this.#rateVerdict(user, ask.rate!.perSecond, res.waitMs);
      return undefined; // a lease: the caller's refusal
    }
    this.ledger.add(user, 'requests', 1);
    return undefined;
  }

  /** Admission that first reads the user's usage from the store (not seen in the last second). */
  async #admitRead(user: string, plan: PlanSpec, now: number): Promise<Failure | undefined> {
    for (const period of PERIODS) {
      const limits = byteLimits(plan, period);
      if (limits === undefined) continue;
      const refusal = this.#quotaRefusal(user, now, limits, await this.ledger.read(user, period));
      if (refusal) return refusal;
    }
    return this.#countRequest(user, plan, now);
  }

  /** The refusal when usage has reached a byte limit of the period (and the block it sets). */
  #quotaRefusal(user: string, now: number, limits: ByteLimits, used: { span: PeriodSpan; up: number; down: number }): Failure | undefined {
    for (const dir of DIRECTIONS) {
      const lim = limits[dir];
      if (lim !== undefined && used[dir] >= lim) {
        this.#block(user, dir, used.span.resetsAt, used.span.period, lim);
        return this.#blocked(user, now);
      }
    }
    return undefined;
  }

  /**
   * requestsPerSecond, then the request counts as used. GCRA with a burst of one second's
   * worth (`requestsPerSecond` at once, then one every 1/requestsPerSecond s): the same cell
   * in the MemoryStore (answered at once), the primary (--workers) or Redis (one Lua script).
   */
  #countRequest(user: string, plan: PlanSpec, now: number): Failure | undefined | Promise<Failure | undefined> {
    const rps = plan.requestsPerSecond;
    if (rps === undefined) {
      this.ledger.add(user, 'requests', 1);
      return undefined;
    }
    const key = `rate:${user}`;
    if (this.#shared !== undefined) {
      const w = this.#shared.rate(key, rps, rps);
      return typeof w === 'number' ? this.#rateVerdict(user, rps, w) : w.then((ms) => this.#rateVerdict(user, rps, ms));
    }
    const store = this.#store;
    if (store.rateSync !== undefined) return this.#rateVerdict(user, rps, store.rateSync(key, rps, rps));
    return store.rate(key, rps, rps).then((ms) => this.#rateVerdict(user, rps, ms));
  }

  #rateVerdict(user: string, rps: number, waitMs: number): Failure | undefined {
    if (waitMs > 0) {
      return limitRefusal('too_many_requests', `plan ${this.planName(user)}: requestsPerSecond limit of ${rps} reached; resets in ${waitMs} ms`, Math.max(1, Math.ceil(waitMs / 1000)));
    }
    this.ledger.add(user, 'requests', 1);
    return undefined;
  }

  /** Whether a datagram (or more bytes) may move in this direction now; the refusal if not. */
  allowBytes(user: string | null, dir: 'up' | 'down'): Failure | undefined {
    if (user === null) return undefined;
    const o = this.#over.get(user);
    if (!o) return undefined;
    const now = this.#now();
    const b = this.#stands(user, o, slot('month', dir), now) ?? this.#stands(user, o, slot('day', dir), now) ?? this.#stands(user, o, TRAFFIC, now);
    if (o[0] === undefined && o[1] === undefined && o[2] === undefined && o[3] === undefined && o[4] === undefined) this.#over.delete(user);
    return b === undefined ? undefined : this.#refusal(user, b, now);
  }

  /**
   * Count bytes moved for a user (the meter calls this, for every chunk). Negative: bytes taken
   * back, counted by a session that began at `since` (epoch ms; the ledger takes them only from
   * periods that session lies in).
   */
  record(user: string | null, dir: Direction, n: number, since?: number): void {
    if (user === null || n === 0) return;
    this.ledger.add(user, dir, n, since);
    // Bytes taken back (counted, then never delivered: MeterSession.undelivered) only lower the usage.
    if (n < 0) return;
    if (this.#traffic.size !== 0) {
      const t = this.#traffic.get(user);
      if (t !== undefined && this.#total(user, t.period) >= t.limit) this.#block(user, 'total', this.ledger.span(t.period).resetsAt, t.period, t.limit);
    }
    const plan = this.planOf(user);
    if (plan === undefined) return;
    for (const period of PERIODS) {
      const lim = byteLimits(plan, period)?.[dir];
      if (lim !== undefined && this.ledger.estimate(user, period, dir) >= lim) this.#block(user, dir, this.ledger.span(period).resetsAt, period, lim);
    }
  }

  /** The store's total after a write: over the limit (other nodes' bytes included) blocks. */
  #checkTotal(user: string, span: PeriodSpan, dir: Direction, total: number): void {
    const t = this.#traffic.size === 0 ? undefined : this.#traffic.get(user);
    if (t !== undefined && t.period === span.period && this.#total(user, t.period) >= t.limit) this.#block(user, 'total', span.resetsAt, t.period, t.limit);
    const plan = this.planOf(user);
    const lim = plan === undefined ? undefined : byteLimits(plan, span.period)?.[dir];
    if (lim !== undefined && total >= lim) this.#block(user, dir, span.resetsAt, span.period, lim);
  }

  #block(user: string, dir: 'up' | 'down' | 'total', until: number, period: Period, limit: number): void {
    let o = this.#over.get(user);
    if (!o) this.#over.set(user, (o = [undefined, undefined, undefined, undefined, undefined]));
    const i = slot(period, dir);
    const b = o[i];
    if (b === undefined || until > b.until || b.until <= this.#now()) o[i] = { until, period, dir, limit };
    else b.limit = limit;
  }

  /**
   * The block in `o[i]` if it still stands: its period has not reset, and the usage is at or
   * over the user's current limit. A limit not raised since the block leaves it standing
   * (the usage only grows within a period); a raised one is judged against the usage now
   * (the ledger's estimate: this node's last store total plus what waits here; a usage read
   * at the next admission, or the next write's total, blocks again if other nodes' bytes put
   * the user over); a removed one (no limit, another plan, no plan) lifts it.
   */
  #stands(user: string, o: Blocks, i: Slot, now: number): Block | undefined {
    const b = o[i];
    if (b === undefined) return undefined;
    if (b.until > now) {
      const lim = this.#limitNow(user, b);
      if (lim !== undefined && (lim <= b.limit || (b.dir === 'total' ? this.#total(user, b.period) : this.ledger.estimate(user, b.period, b.dir)) >= lim)) {
        b.limit = lim;
        return b;
      }
    }
    o[i] = undefined;
    return undefined;
  }

  /** The user's current limit of the kind `b` holds them at (undefined: none now). */
  #limitNow(user: string, b: Block): number | undefined {
    if (b.dir !== 'total') return limitOf(this.planOf(user), b.period, b.dir);
    const t = this.#traffic.get(user);
    return t !== undefined && t.period === b.period ? t.limit : undefined;
  }

  /** The refusal of the block that ends last among those standing; undefined when none stands. */
  #blocked(user: string, now: number): Failure | undefined {
    const o = this.#over.get(user);
    if (!o) return undefined;
    let last: Block | undefined;
    for (let i = 0; i < 5; i++) {
      const b = this.#stands(user, o, i as Slot, now);
      if (b !== undefined && (last === undefined || b.until > last.until)) last = b;
    }
    if (last === undefined) {
      this.#over.delete(user);
      return undefined;
    }
    return this.#refusal(user, last, now);
  }

  /** The 429 of a standing block: the user's current limit, which the usage is at or over. */
  #refusal(user: string, b: Block, now: number): Failure {
    return limitRefusal(
      'too_many_requests',
      b.dir === 'total'
        ? `user ${user}: trafficLimit of ${formatBytes(b.limit)} per ${b.period} reached; resets at ${new Date(b.until).toISOString()}`
        : `plan ${this.planName(user)}: ${quotaName(b.period, b.dir)} limit of ${formatBytes(b.limit)} reached; resets at ${new Date(b.until).toISOString()}`,
      Math.ceil((b.until - now) / 1000),
    );
  }
}

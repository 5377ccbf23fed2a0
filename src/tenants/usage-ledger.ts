import type { Store } from '../state/index.js';

export type Period = 'day' | 'month';
export type Direction = 'up' | 'down';

const DAY_MS = 86_400_000;
/** How long a usage hash outlives its period (kept for `gatewise usage` and the admin API). */
const KEEP_MS: Record<Period, number> = { day: 2 * DAY_MS, month: 32 * DAY_MS };

export interface PeriodSpan {
  period: Period;
  /** `2026-03-10` or `2026-03`. */
  id: string;
  start: number;
  resetsAt: number;
}

/** The UTC period a moment falls in, and when it ends. */
export function periodOf(period: Period, now: number): PeriodSpan {
  const d = new Date(now);
  if (period === 'day') {
    const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
    return { period, id: new Date(start).toISOString().slice(0, 10), start, resetsAt: start + DAY_MS };
  }
  const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  return { period, id: new Date(start).toISOString().slice(0, 7), start, resetsAt: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) };
}

/** Store key of a user's usage hash for a period (fields: up, down, requests). */
export function usageKey(user: string, period: Period, id: string): string {
  return `usage:${user}:${period}:${id}`;
}

interface Counts {
  up: number;
  down: number;
  requests: number;
}

const zero = (): Counts => ({ up: 0, down: 0, requests: 0 });

/** One user's counts in the current day and month. */
class Account {
  readonly user: string;
  day: PeriodSpan;
  month: PeriodSpan;
  dayKey: string;
  monthKey: string;
  /** Counted here and not yet written to the store (for both periods). */
  pending: Counts = zero();
  /** Writes that failed, owed to one period only (the other period's write may have worked). */
  retry: Record<Period, Counts> = { day: zero(), month: zero() };
  /** Failed writes owed to periods already over, per usage key (undefined: none; the usual case). */
  past: Map<string, { span: PeriodSpan; counts: Counts }> | undefined;
  /** The store's totals at the last write or read, per period (undefined: not seen yet). */
  known: Record<Period, Partial<Record<Direction, number>>> = { day: {}, month: {} };
  /** When `known` last came from the store, per period and direction (0: never). */
  knownAt: Record<Period, Record<Direction, number>> = { day: { up: 0, down: 0 }, month: { up: 0, down: 0 } };
  /** Writes sent per period and direction (a reply is the store's latest total only for the last one sent). */
  sent: Record<Period, Record<Direction, number>> = { day: { up: 0, down: 0 }, month: { up: 0, down: 0 } };
  /** Byte writes in flight per period (a read replaces `known` only when none is). */
  inflight: Record<Period, number> = { day: 0, month: 0 };

  constructor(user: string, day: PeriodSpan, month: PeriodSpan) {
    this.user = user;
    this.day = day;
    this.month = month;
    this.dayKey = usageKey(user, 'day', day.id);
    this.monthKey = usageKey(user, 'month', month.id);
  }

  key(period: Period): string {
    return period === 'day' ? this.dayKey : this.monthKey;
  }

  /** What waits here for a period and direction. */
  waiting(period: Period, dir: Direction): number {
    return this.pending[dir] + this.retry[period][dir];
  }

  get hasPending(): boolean {
    const r = this.retry;
    if (this.past !== undefined) return true;
    return this.pending.up + this.pending.down + this.pending.requests + r.day.up + r.day.down + r.day.requests + r.month.up + r.month.down + r.month.requests !== 0;
  }
}

export interface LedgerOptions {
  /** How long counts may wait before they are written (default 1 s). */
  flushMs?: number;
  /** A write came back: the store's new total for this user, period and direction (other nodes' bytes included). */
  onTotal?: (user: string, span: PeriodSpan, dir: Direction, total: number) => void;
}

/**
 * Usage per user, day and month (bytes up and down, requests), written to the Store in
 * batches: counts gather here and are written at most `flushMs` later, as one
 * HINCRBY per field and period for each user, instead of two Store calls (and two
 * promises and four Dates) for every chunk a tunnel moves. Quotas read `estimate()`:
 * the store's total at the last write or read plus what waits here, which is exact for
 * one node; with a shared store, other nodes' bytes arrive with each write (`onTotal`).
 * A count is written under the period it was made in, also when the period ends before
 * the write.
 */
export class UsageLedger {
  readonly #store: Store;
  readonly #now: () => number;
  readonly #flushMs: number;
  readonly #onTotal: LedgerOptions['onTotal'];
  readonly #accounts = new Map<string, Account>();
  /** Accounts with counts to write. */
  readonly #dirty = new Set<Account>();
  #timer: NodeJS.Timeout | undefined;
  #day: PeriodSpan | undefined;
  #month: PeriodSpan | undefined;
  /** Writes in flight (flush() waits for them). */
  readonly #writes = new Set<Promise<void>>();

  constructor(store: Store, now: () => number = Date.now, opts: LedgerOptions = {}) {
    this.#store = store;
    this.#now = now;
    this.#flushMs = opts.flushMs ?? 1000;
    this.#onTotal = opts.onTotal;
  }

  /** The current day or month (cached until it ends: working it out allocates Dates). */
  span(period: Period, now = this.#now()): PeriodSpan {
    let s = period === 'day' ? this.#day : this.#month;
    if (s === undefined || now < s.start || now >= s.resetsAt) {
      s = periodOf(period, now);
      if (period === 'day') this.#day = s;
      else this.#month = s;
    }
    return s;
  }

  /** The user's account for the current periods; counts of an ended period are written first. */
  #account(user: string, now: number): Account {
    const day = this.span('day', now);
    const month = this.span('month', now);
    let a = this.#accounts.get(user);
    if (a === undefined) {
      a = new Account(user, day, month);
      this.#accounts.set(user, a);
      return a;
    }
    if (a.day !== day || a.month !== month) {
      if (a.hasPending) this.#write(a);
      if (a.day.id !== day.id) {
        a.dayKey = usageKey(user, 'day', day.id);
        a.known.day = {};
        a.knownAt.day = { up: 0, down: 0 };
        a.retry.day = zero();
      }
      if (a.month.id !== month.id) {
        a.monthKey = usageKey(user, 'month', month.id);
        a.known.month = {};
        a.knownAt.month = { up: 0, down: 0 };
        a.retry.month = zero();
      }
      a.day = day;
      a.month = month;
    }
    return a;
  }

  /**
   * Count `n` bytes in a direction, or `n` requests. A negative `n` takes bytes back (counted,
   * then never delivered: MeterSession.undelivered); `since`, when the session that counted them
   * began: they are taken back only from a current period that began before it (the bytes were
   * counted in it), never from a period begun since (before, a take-back after midnight lowered
   * the new day, even below 0, and the old day kept the bytes). A period ended since keeps them:
   * under-counted never, over-counted by at most the bytes taken back.
   */
  add(user: string, field: keyof Counts, n: number, since?: number): void {
    const a = this.#account(user, this.#now());
    if (n < 0 && since !== undefined && field !== 'requests') {
      const inDay = since >= a.day.start;
      const inMonth = since >= a.month.start;
      if (!inMonth) return; // a new month is a new day too
      if (!inDay) a.retry.month[field] += n; // owed to the month only
      else a.pending[field] += n;
    } else a.pending[field] += n;
    this.#dirty.add(a);
    this.#schedule();
  }

  /** One timer for every waiting count. */
  #schedule(): void {
    if (this.#timer === undefined) {
      this.#timer = setTimeout(flushLater, this.#flushMs, this);
      this.#timer.unref();
    }
  }

  /** The best local figure for a user's usage in the current period: last known store total plus what waits here. */
  estimate(user: string, period: Period, dir: Direction): number {
    const a = this.#account(user, this.#now());
    return Math.max(0, (a.known[period][dir] ?? 0) + a.waiting(period, dir));
  }

  /**
   * The estimate for the current period in both directions when the store's totals were
   * seen less than `maxAgeMs` ago (a user with traffic gets them back with every write);
   * undefined when they must be read.
   */
  fresh(user: string, period: Period, now = this.#now(), maxAgeMs = this.#flushMs): { span: PeriodSpan; up: number; down: number } | undefined {
    const a = this.#account(user, now);
    const at = a.knownAt[period];
    if (!(now - at.up < maxAgeMs && now - at.down < maxAgeMs)) return undefined;
    const k = a.known[period];
    return { span: period === 'day' ? a.day : a.month, up: Math.max(0, (k.up ?? 0) + a.waiting(period, 'up')), down: Math.max(0, (k.down ?? 0) + a.waiting(period, 'down')) };
  }

  /** The user's usage hash for the current period and what waits here for it (not yet in the store). */
  waitingFor(user: string, period: Period): { key: string; up: number; down: number } {
    const a = this.#account(user, this.#now());
    return { key: a.key(period), up: a.waiting(period, 'up'), down: a.waiting(period, 'down') };
  }

  /** The store's totals for a period, read elsewhere (the shared admission): remembered as known while `key` is still the current one. */
  learn(user: string, period: Period, key: string, used: { up: number; down: number }): void {
    const now = this.#now();
    const a = this.#account(user, now);
    if (a.key(period) !== key) return;
    learnTotals(a, period, used.up, used.down);
    a.knownAt[period] = { up: now, down: now };
  }

  /** Read the store's usage for the current period (remembered as known), plus what waits here. */
  async read(user: string, period: Period): Promise<{ span: PeriodSpan; up: number; down: number }> {
    const now = this.#now();
    const a = this.#account(user, now);
    const key = a.key(period);
    const used = await this.#store.hgetall(key);
    // The account may have moved on to a new period while the read was in flight.
    if (a.key(period) === key) {
      learnTotals(a, period, used.up ?? 0, used.down ?? 0);
      a.knownAt[period] = { up: this.#now(), down: this.#now() };
    }
    const span = period === 'day' ? a.day : a.month;
    return { span, up: Math.max(0, (used.up ?? 0) + a.waiting(period, 'up')), down: Math.max(0, (used.down ?? 0) + a.waiting(period, 'down')) };
  }

  /** Write every account's waiting counts. */
  flushNow(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    for (const a of this.#dirty) this.#write(a);
    this.#dirty.clear();
  }

  /** Write everything counted so far and wait until the store has it. */
  async flush(): Promise<void> {
    this.flushNow();
    while (this.#writes.size > 0) await Promise.allSettled([...this.#writes]);
  }

  /**
   * A failed write of one period's count: owed to that period only (the other period's
   * write may have worked), so it waits in the account's `retry` and goes out with the next write.
   */
  #requeue(a: Account, span: PeriodSpan, key: string, field: keyof Counts, n: number): void {
    if (a.key(span.period) === key) a.retry[span.period][field] += n;
    else {
      // Its period is over (Redis was away at midnight or a month's end): still owed to it.
      a.past ??= new Map();
      let owed = a.past.get(key);
      if (owed === undefined) a.past.set(key, (owed = { span, counts: zero() }));
      owed.counts[field] += n;
    }
    this.#dirty.add(a);
    this.#schedule();
  }

  /** A period's total went below 0: put `n` back (owed, like any count, if the store is away). */
  #correct(a: Account, span: PeriodSpan, key: string, field: Direction, n: number): void {
    const w = this.#store.hincrby(key, field, n, KEEP_MS[span.period]).then(
      () => undefined,
      () => this.#requeue(a, span, key, field, n),
    );
    this.#writes.add(w);
    void w.finally(() => this.#writes.delete(w));
  }

  #write(a: Account): void {
    const p = a.pending;
    a.pending = zero();
    this.#dirty.delete(a);
    if (a.past !== undefined) {
      const past = a.past;
      a.past = undefined;
      for (const [key, owed] of past) this.#writeCounts(a, owed.span, key, owed.counts);
    }
    for (const span of [a.day, a.month]) {
      const period = span.period;
      const owed = a.retry[period];
      a.retry[period] = zero();
      owed.up += p.up;
      owed.down += p.down;
      owed.requests += p.requests;
      this.#writeCounts(a, span, a.key(period), owed);
    }
  }

  /** One HINCRBY per field of `counts` to `key` (the usage hash of `span`); a failed one stays owed (`#requeue`). */
  #writeCounts(a: Account, span: PeriodSpan, key: string, counts: Counts): void {
    const period = span.period;
    for (const field of ['up', 'down', 'requests'] as const) {
      const n = counts[field];
      if (n === 0) continue;
      const bytes = field !== 'requests';
      let seq = 0;
      if (bytes) {
        seq = ++a.sent[period][field];
        a.inflight[period]++;
      }
      const w = this.#store.hincrby(key, field, n, KEEP_MS[period]).then(
        (total) => {
          if (!bytes) return;
          a.inflight[period]--;
          if (total < 0) {
            // Taken back more than the store holds (it lost its counts: a restart, an expiry): the period stays at 0.
            this.#correct(a, span, key, field, -total);
            total = 0;
          }
          // Only while the account still counts in that period. The last write's reply is the
          // store's total (a take-back lowers it, and so the estimate: before, the estimate kept
          // the maximum and went back up to the bytes taken back); an earlier one's may be older.
          if (a.key(period) === key) {
            const k = a.known[period];
            k[field] = seq === a.sent[period][field] ? total : Math.max(k[field] ?? 0, total);
            a.knownAt[period][field] = this.#now();
          }
          this.#onTotal?.(a.user, span, field, total);
        },
        () => {
          if (bytes) a.inflight[period]--;
          // Not written (the store is unreachable): owed with the next write, to the period it was counted in.
          this.#requeue(a, span, key, field, n);
        },
      );
      this.#writes.add(w);
      void w.finally(() => this.#writes.delete(w));
    }
  }
}

/**
 * The store's totals for a period, read: replace what is known when no write of the period is in
 * flight (a take-back, here or on another node, lowers them), else only raise it (the read may
 * be older than a write's reply).
 */
function learnTotals(a: Account, period: Period, up: number, down: number): void {
  const k = a.known[period];
  if (a.inflight[period] === 0) {
    k.up = Math.max(0, up);
    k.down = Math.max(0, down);
  } else {
    k.up = Math.max(k.up ?? 0, up);
    k.down = Math.max(k.down ?? 0, down);
  }
}

function flushLater(ledger: UsageLedger): void {
  ledger.flushNow();
}

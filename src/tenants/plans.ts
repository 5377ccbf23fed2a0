import type { Failure } from '../failure/index.js';
import type { Store } from '../state/index.js';
import { limitRefusal } from './limit-refusal.js';

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

export type Period = 'day' | 'month';

const DAY_MS = 86_400_000;

/** The UTC period a moment falls in, and when it ends. */
export function periodOf(period: Period, now: number): { id: string; resetsAt: number } {
  const d = new Date(now);
  if (period === 'day') {
    const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
    return { id: new Date(start).toISOString().slice(0, 10), resetsAt: start + DAY_MS };
  }
  const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  return { id: new Date(start).toISOString().slice(0, 7), resetsAt: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) };
}

/** Store key of a user's usage hash for a period (fields: up, down, requests). */
export function usageKey(user: string, period: Period, id: string): string {
  return `usage:${user}:${period}:${id}`;
}

function human(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${Math.round(n * 10) / 10} ${units[i]}`;
}

/**
 * Enforces plans: requests per second (a one-second window counter in the Store),
 * bytes per day and month (usage hashes in the Store, fed by the meter), allowed
 * pools. Byte quotas are checked when a request, tunnel or association starts and for
 * every UDP datagram (from a local mirror of "over quota", refreshed by each count).
 */
export class PlanEnforcer {
  readonly #plans: ReadonlyMap<string, PlanSpec>;
  #userPlans: ReadonlyMap<string, string>;
  readonly #store: Store;
  readonly #now: () => number;
  /** user → direction → epoch ms the block ends. */
  readonly #over = new Map<string, { up: number; down: number; why: { up: string; down: string } }>();

  constructor(plans: ReadonlyMap<string, PlanSpec>, userPlans: ReadonlyMap<string, string>, store: Store, now: () => number = Date.now) {
    this.#plans = plans;
    this.#userPlans = userPlans;
    this.#store = store;
    this.#now = now;
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
    return limitRefusal(403, `plan ${this.planName(user)} does not include egress pool ${pool}`);
  }

  /**
   * Admission of one request, tunnel or association: counts it against requestsPerSecond
   * and checks the byte quotas. Returns the refusal (429 with Retry-After) or undefined.
   */
  admit(user: string | null): Failure | undefined | Promise<Failure | undefined> {
    const plan = this.planOf(user);
    // No plan: nothing to count or check, and no promise (this runs once per tunnel).
    if (!plan || user === null) return undefined;
    return this.#admitPlanned(user, plan);
  }

  async #admitPlanned(user: string, plan: PlanSpec): Promise<Failure | undefined> {
    const name = this.planName(user)!;
    const now = this.#now();
    const over = this.#blocked(user, now);
    if (over) return over;
    for (const period of ['day', 'month'] as const) {
      const limits = period === 'day' ? plan.bytesPerDay : plan.bytesPerMonth;
      if (!limits || (limits.up === undefined && limits.down === undefined)) continue;
      const p = periodOf(period, now);
      const used = await this.#store.hgetall(usageKey(user, period, p.id));
      for (const dir of ['up', 'down'] as const) {
        const lim = limits[dir];
        if (lim !== undefined && (used[dir] ?? 0) >= lim) {
          this.#block(user, dir, p.resetsAt, `bytesPer${period === 'day' ? 'Day' : 'Month'}.${dir}`);
          return this.#blocked(user, now);
        }
      }
    }
    if (plan.requestsPerSecond !== undefined) {
      const sec = Math.floor(now / 1000);
      const n = await this.#store.incrby(`rps:${user}:${sec}`, 1, 2000);
      if (n > plan.requestsPerSecond) {
        const wait = (sec + 1) * 1000 - now;
        return limitRefusal(429, `plan ${name}: requestsPerSecond limit of ${plan.requestsPerSecond} reached; resets in ${wait} ms`, 1);
      }
    }
    await this.#store.hincrby(usageKey(user, 'day', periodOf('day', now).id), 'requests', 1, 2 * DAY_MS);
    await this.#store.hincrby(usageKey(user, 'month', periodOf('month', now).id), 'requests', 1, 32 * DAY_MS);
    return undefined;
  }

  /** Whether a datagram (or more bytes) may move in this direction now; the refusal if not. */
  allowBytes(user: string | null, dir: 'up' | 'down'): Failure | undefined {
    if (user === null) return undefined;
    const o = this.#over.get(user);
    if (!o) return undefined;
    const now = this.#now();
    if (o[dir] > now) return this.#refusal(user, o.why[dir], o[dir], now);
    return undefined;
  }

  /** Count bytes moved for a user (the meter calls this). */
  record(user: string | null, dir: 'up' | 'down', n: number): void {
    if (user === null || n <= 0) return;
    const plan = this.planOf(user);
    const now = this.#now();
    for (const period of ['day', 'month'] as const) {
      const p = periodOf(period, now);
      const lim = (period === 'day' ? plan?.bytesPerDay : plan?.bytesPerMonth)?.[dir];
      this.#store.hincrby(usageKey(user, period, p.id), dir, n, period === 'day' ? 2 * DAY_MS : 32 * DAY_MS).then(
        (total) => {
          if (lim !== undefined && total >= lim) this.#block(user, dir, p.resetsAt, `bytesPer${period === 'day' ? 'Day' : 'Month'}.${dir}`);
        },
        () => {},
      );
    }
  }

  #block(user: string, dir: 'up' | 'down', until: number, why: string): void {
    let o = this.#over.get(user);
    if (!o) this.#over.set(user, (o = { up: 0, down: 0, why: { up: '', down: '' } }));
    if (until > o[dir]) {
      o[dir] = until;
      o.why[dir] = why;
    }
  }

  #blocked(user: string, now: number): Failure | undefined {
    const o = this.#over.get(user);
    if (!o) return undefined;
    for (const dir of ['up', 'down'] as const) if (o[dir] > now) return this.#refusal(user, o.why[dir], o[dir], now);
    if (o.up <= now && o.down <= now) this.#over.delete(user);
    return undefined;
  }

  #refusal(user: string, why: string, until: number, now: number): Failure {
    const plan = this.planOf(user);
    const [field, dir] = why.split('.') as ['bytesPerDay' | 'bytesPerMonth', 'up' | 'down'];
    const lim = plan?.[field]?.[dir];
    return limitRefusal(
      429,
      `plan ${this.planName(user)}: ${why} limit${lim !== undefined ? ` of ${human(lim)}` : ''} reached; resets at ${new Date(until).toISOString()}`,
      Math.ceil((until - now) / 1000),
    );
  }
}

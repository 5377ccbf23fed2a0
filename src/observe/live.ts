import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { ERROR_TYPES, REFUSAL_REASONS, isProxyErrorType } from '../failure/types.js';
import { REQUEST_END_CHANNEL, type RequestRecord } from '../record/index.js';

/**
 * What the admin API and the dashboard show of the traffic, fed by the records of both faces
 * on `gatewise:request:end`: per-second counts by cause over the last minutes, recent
 * failures in a bounded ring (found again by request id), per-user bytes and refusals.
 * Everything is bounded: the ring by `failures`, the timeline by `windowSeconds`, the users
 * by `maxUsers` (the least recently seen user is forgotten first).
 */
export interface LiveOptions {
  /** Failures kept (oldest dropped first). Default 1000. */
  failures?: number;
  /** Seconds of per-second counts kept. Default 600 (ten minutes). */
  windowSeconds?: number;
  /** Users tracked. Default 10 000. */
  maxUsers?: number;
  now?: () => number;
}

/** One second of traffic: requests by face, and failures by cause (error type). */
interface Second {
  t: number;
  reverse: number;
  forward: number;
  errors: Map<string, number>;
}

export interface UserTraffic {
  user: string;
  requests: number;
  bytesUp: number;
  bytesDown: number;
  failures: number;
  lastSeen: number;
  /** Refusals and failures by reason code (a REFUSAL_REASONS key, else the error type). */
  reasons: Map<string, number>;
}

/** The plain words of a reason code or error type (from the failure taxonomy). */
export function explainReason(code: string): { code: string; type: string | undefined; title: string; explain: string } {
  if (Object.prototype.hasOwnProperty.call(REFUSAL_REASONS, code)) {
    const r = REFUSAL_REASONS[code as keyof typeof REFUSAL_REASONS];
    return { code, type: r.type, title: r.title, explain: r.explain };
  }
  if (isProxyErrorType(code)) {
    const t = ERROR_TYPES[code];
    return { code, type: code, title: t.title, explain: t.explain };
  }
  return { code, type: undefined, title: code, explain: 'Not in the failure taxonomy.' };
}

/** The cause a failed record is counted under: its reason when it has one, else its error type. */
function causeOf(r: RequestRecord): string | undefined {
  if (r.error === undefined) return undefined;
  return r.reason ?? r.error;
}

export class LiveTraffic {
  readonly #now: () => number;
  /** A clock given in the options (tests): records are counted at its time, else at their own `time`. */
  readonly #clocked: boolean;
  readonly #window: number;
  readonly #max: number;
  readonly #maxUsers: number;
  readonly #ring: RequestRecord[] = [];
  #head = 0;
  readonly #byId = new Map<string, RequestRecord>();
  readonly #seconds: Second[] = [];
  readonly #users = new Map<string, UserTraffic>();
  readonly #totals = { reverse: 0, forward: 0, failures: 0 };
  readonly #byCause = new Map<string, number>();
  readonly #onRecord = (m: unknown): void => this.add(m as RequestRecord);

  constructor(opts: LiveOptions = {}) {
    this.#now = opts.now ?? Date.now;
    this.#clocked = opts.now !== undefined;
    this.#window = opts.windowSeconds ?? 600;
    this.#max = opts.failures ?? 1000;
    this.#maxUsers = opts.maxUsers ?? 10_000;
  }

  /** Subscribe to `gatewise:request:end`. */
  attach(): this {
    subscribe(REQUEST_END_CHANNEL, this.#onRecord);
    return this;
  }

  detach(): void {
    unsubscribe(REQUEST_END_CHANNEL, this.#onRecord);
  }

  add(r: RequestRecord): void {
    // The cache's background revalidations are the gateway's own requests, not traffic (metrics count them).
    if (r.face === 'reverse' && r.background !== undefined) return;
    this.#totals[r.face]++;
    // A record's `time` is when it finished, read just before it was published: no second clock read per record.
    const sec = this.#second(Math.floor((this.#clocked ? this.#now() : r.time) / 1000));
    sec[r.face]++;
    const cause = causeOf(r);
    if (cause !== undefined) {
      this.#totals.failures++;
      sec.errors.set(cause, (sec.errors.get(cause) ?? 0) + 1);
      this.#byCause.set(cause, (this.#byCause.get(cause) ?? 0) + 1);
      this.#keep(r);
    }
    if (r.face === 'forward' && r.user !== undefined) {
      let u = this.#users.get(r.user);
      if (u) this.#users.delete(r.user); // re-inserted below: the map's order is least recently seen first
      else {
        if (this.#users.size >= this.#maxUsers) this.#users.delete(this.#users.keys().next().value!);
        u = { user: r.user, requests: 0, bytesUp: 0, bytesDown: 0, failures: 0, lastSeen: 0, reasons: new Map() };
      }
      this.#users.set(r.user, u);
      u.requests++;
      u.bytesUp += r.bytesUp;
      u.bytesDown += r.bytesDown;
      u.lastSeen = r.time;
      if (cause !== undefined) {
        u.failures++;
        u.reasons.set(cause, (u.reasons.get(cause) ?? 0) + 1);
      }
    }
  }

  #keep(r: RequestRecord): void {
    if (this.#ring.length < this.#max) this.#ring.push(r);
    else {
      const old = this.#ring[this.#head]!;
      if (this.#byId.get(old.requestId) === old) this.#byId.delete(old.requestId);
      this.#ring[this.#head] = r;
      this.#head = (this.#head + 1) % this.#max;
    }
    this.#byId.set(r.requestId, r);
  }

  #second(t: number): Second {
    const last = this.#seconds[this.#seconds.length - 1];
    if (last && last.t === t) return last;
    const s: Second = { t, reverse: 0, forward: 0, errors: new Map() };
    this.#seconds.push(s);
    while (this.#seconds.length > 0 && this.#seconds[0]!.t <= t - this.#window) this.#seconds.shift();
    return s;
  }

  /** Recent failures, newest first. */
  failures(limit = this.#max): RequestRecord[] {
    const out: RequestRecord[] = [];
    const n = this.#ring.length;
    for (let i = 0; i < n && out.length < limit; i++) out.push(this.#ring[(this.#head - 1 - i + 2 * n) % n]!);
    return out;
  }

  failure(requestId: string): RequestRecord | undefined {
    return this.#byId.get(requestId);
  }

  /**
   * Per-second counts for the last `seconds` seconds, oldest first, zero-filled: requests by
   * face and failures by cause; with totals since start and the causes' plain words.
   */
  timeline(seconds = 300): {
    now: number;
    seconds: Array<{ t: number; reverse: number; forward: number; errors: Record<string, number> }>;
    totals: { reverse: number; forward: number; failures: number };
    causes: Array<{ code: string; type: string | undefined; title: string; explain: string; count: number; lastMinute: number }>;
  } {
    const now = Math.floor(this.#now() / 1000);
    const span = Math.min(Math.max(1, seconds), this.#window);
    const byT = new Map(this.#seconds.map((s) => [s.t, s]));
    const out = [];
    const lastMinute = new Map<string, number>();
    for (let t = now - span + 1; t <= now; t++) {
      const s = byT.get(t);
      out.push({ t: t * 1000, reverse: s?.reverse ?? 0, forward: s?.forward ?? 0, errors: s ? Object.fromEntries(s.errors) : {} });
      if (s && t > now - 60) for (const [c, n] of s.errors) lastMinute.set(c, (lastMinute.get(c) ?? 0) + n);
    }
    const causes = [...this.#byCause]
      .sort((a, b) => b[1] - a[1])
      .map(([code, count]) => ({ ...explainReason(code), count, lastMinute: lastMinute.get(code) ?? 0 }));
    return { now: now * 1000, seconds: out, totals: { ...this.#totals }, causes };
  }

  /** Users seen, most bytes first. */
  users(): UserTraffic[] {
    return [...this.#users.values()].sort((a, b) => b.bytesUp + b.bytesDown - (a.bytesUp + a.bytesDown));
  }

  user(name: string): UserTraffic | undefined {
    return this.#users.get(name);
  }
}

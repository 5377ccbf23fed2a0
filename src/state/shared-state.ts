import { randomUUID } from 'node:crypto';
import { MemoryStore } from './memory-store.js';
import { creditBlock, type CreditPolicy } from './credit.js';
import type { AdmitAsk, SessionPick, Store, StoreAdmitAnswer } from './store.js';

/** pino-shaped, so the state layer needs no logger of its own. */
export interface StateLog {
  warn(obj: Record<string, unknown>, msg: string): void;
  info(obj: Record<string, unknown>, msg: string): void;
}

export interface SharedStateOptions {
  /** Longest a request waits for the shared store before local state answers (default 50 ms); time this node's event loop was blocked is not counted, up to 4 budgets in all. */
  budgetMs?: number;
  /** A holder's leases lapse this long after its last heartbeat (default 15 s; heartbeats every third of it). */
  leaseTtlMs?: number;
  /** While degraded, one request in this interval tries the shared store again (default 1 s). */
  probeMs?: number;
  /** This node's (or worker's) name for its leases; default a random id. */
  holder?: string;
  /** What the store is, for logs and health: 'redis' or 'ipc'. */
  backend: 'redis' | 'ipc';
  log?: StateLog;
  now?: () => number;
  /**
   * Credit blocks for `admit` (src/state/credit.ts): undefined, one store call per admission
   * as it comes. Given: the admissions of one event-loop turn go in one call, and a node keeps
   * up to a block of each limit to spend locally.
   */
  credit?: CreditPolicy;
}

export interface StateHealth {
  backend: 'memory' | 'redis' | 'ipc';
  /** The shared store did not answer in time or is unreachable: limits and sessions are this node's own. */
  degraded: boolean;
  /** Since when (ISO), while degraded. */
  since?: string;
  /** Why it degraded (the last error's code, or "timeout"). */
  reason?: string;
  /** Operations answered from local state because the shared store did not answer. */
  fallbacks: number;
  /** Times the shared store came back and this node reconciled. */
  recoveries: number;
}

/** What `SharedState.admit` answers: a store's verdict, with the release of the leases when admitted. `usage` is undefined when answered from local state. */
export type AdmitResult = { usage: StoreAdmitAnswer['usage'] | undefined } & (
  | { ok: true; release: () => void }
  | { ok: false; refused: 'quota'; index: number; dir: 'up' | 'down' }
  | { ok: false; refused: 'rate'; waitMs: number }
  | { ok: false; refused: 'lease'; index: number }
);

const TIMED_OUT = Symbol('timeout');
/** However blocked this node's event loop was, an operation waits at most this many budgets for the store. */
const MAX_WAIT_BUDGETS = 4;
/** How long released leases wait to be told to the store together. */
const RELEASE_BATCH_MS = 20;

/** Admissions of one event-loop turn with the same keys, answered by one store call. */
interface AdmitBatch {
  ask: AdmitAsk;
  waiters: Array<{ ask: AdmitAsk; resolve: (r: AdmitResult) => void }>;
}

interface Waiter {
  deadline: number;
  /** The deadline is moved by the time this node's event loop was blocked, never past this. */
  latest: number;
  done: boolean;
  resolve: (v: unknown) => void;
}

/**
 * What one node (or worker) uses to reach a shared store (`RedisStore`, `IpcStore`): every
 * operation a request waits for is bounded by `budgetMs`; past it, or when the store fails,
 * the node turns *degraded* (one warning line, `health()` says so, `fallbacks` counts) and
 * answers from local state at once, without asking the store, until a probe succeeds or the
 * store reports it is reachable again. Then it *reconciles*: usage deltas the ledger could
 * not write are written by the ledger itself (its failed writes stay owed), and this node's
 * counts of the leases it holds are stated again, the slots granted locally while degraded
 * included (local leases count the store's slots held here too, so a node alone stays
 * within the limit); sessions and rate cells taken while degraded stay local (they start
 * afresh in the store).
 *
 * The deadlines are one FIFO and one timer (the budget is the same for every operation, so
 * deadlines expire in order), not a timer per operation.
 *
 * The budget is the store's time, not this node's: degraded means the store is away, not that
 * this node is busy (a burst of its own connections held the event loop past the budget while
 * Redis had answered long before, and the node then let every limit go local: review F3). So
 * (1) a sweep that fires late (the event loop was blocked: no command written, no answer
 * read) moves every pending deadline by that lag, at most to `MAX_WAIT_BUDGETS` budgets after
 * the operation began, and (2) an operation past its deadline times out only after the poll
 * phase that follows (a `setImmediate`): an answer already in the socket is read first.
 */
export class SharedState {
  readonly remote: Store;
  readonly local: MemoryStore;
  readonly holder: string;
  readonly #budgetMs: number;
  readonly #probeMs: number;
  readonly #leaseTtlMs: number;
  readonly #backend: 'redis' | 'ipc';
  readonly #log: StateLog | undefined;
  readonly #now: () => number;
  readonly #waiters: Waiter[] = [];
  #sweep: NodeJS.Timeout | undefined;
  /** When the armed sweep should fire (a later one measures how long the event loop was blocked). */
  #sweepDue = 0;
  /** Operations past their deadline, timed out after the next poll phase unless answered by then. */
  #late: Waiter[] = [];
  readonly #heartbeat: NodeJS.Timeout;
  #degradedSince = 0;
  #reason = '';
  #lastProbe = 0;
  #fallbacks = 0;
  #recoveries = 0;
  /** Leases the shared store granted, per key: this holder's count there. */
  readonly #held = new Map<string, number>();
  /** Keys whose count the store may not have (a lease write failed). */
  readonly #dirty = new Set<string>();
  /** Leases granted locally (while degraded) and not yet handed to the store (`#recover`), per key. */
  readonly #localHeld = new Map<string, number>();
  readonly #cooldownListeners: Array<(scope: string, forMs: number) => void> = [];
  /** Keys with releases not yet told to the store. */
  readonly #released = new Set<string>();
  /**
   * Lease counts written so far (`#setLease`). A count written while an ask of this node is
   * in flight includes what the ask wants (`#count`); when the ask then gets less, the node
   * states its count again if a write went out meanwhile (`#restate`).
   */
  #leaseWrites = 0;
  #releaseTimer: NodeJS.Timeout | undefined;
  readonly #credit: CreditPolicy | undefined;
  /** Credit held here unspent, per key: rate tokens counted in the store, lease slots recorded there (part of `#held`). */
  readonly #spare = new Map<string, number>();
  /** Rate credit asked beyond the waiting admissions and not answered yet, per key (so a node holds at most a block; lease slots count what `#held` says). */
  readonly #asking = new Map<string, number>();
  /** Keys whose spare credit was used since the last heartbeat (the others drop theirs then). */
  readonly #spareUsed = new Set<string>();
  readonly #batches = new Map<string, AdmitBatch>();
  #flushing = false;
  /** The store the usage ledger writes to: writes go to the shared store (a failed one stays owed in the ledger), reads are bounded. */
  readonly usage: Store;

  constructor(remote: Store, opts: SharedStateOptions) {
    this.remote = remote;
    this.#now = opts.now ?? Date.now;
    this.local = new MemoryStore({ now: this.#now });
    this.holder = opts.holder ?? randomUUID();
    this.#budgetMs = opts.budgetMs ?? 50;
    this.#probeMs = opts.probeMs ?? 1000;
    this.#leaseTtlMs = opts.leaseTtlMs ?? 15_000;
    this.#backend = opts.backend;
    this.#credit = opts.credit;
    this.#log = opts.log;
    this.usage = new UsageView(this);
    remote.onCooldown((scope, until) => {
      for (const l of this.#cooldownListeners) l(scope, until);
    });
    remote.onReachable?.(() => {
      // A Redis restarted empty knows no heartbeat: write this holder's at once (before the
      // leases restated by the recovery, same connection), or the other nodes would drop this
      // node's leases as a dead holder's until its next periodic heartbeat and let more in.
      this.remote.heartbeat(this.holder, this.#leaseTtlMs).catch(() => {});
      if (this.degraded) this.#recover();
    });
    this.#beat();
    this.#heartbeat = setInterval(() => this.#beat(), Math.max(100, Math.floor(this.#leaseTtlMs / 3)));
    this.#heartbeat.unref();
  }

  get degraded(): boolean {
    return this.#degradedSince !== 0;
  }

  health(): StateHealth {
    const h: StateHealth = { backend: this.#backend, degraded: this.degraded, fallbacks: this.#fallbacks, recoveries: this.#recoveries };
    if (this.degraded) {
      h.since = new Date(this.#degradedSince).toISOString();
      h.reason = this.#reason;
    }
    return h;
  }

  #beat(): void {
    this.#returnIdleSpare();
    this.remote.heartbeat(this.holder, this.#leaseTtlMs).then(
      () => {
        if (this.degraded && this.remote.reachable?.() !== false) this.#recover();
      },
      (err: unknown) => this.#degrade(err),
    );
  }

  #degrade(err: unknown): void {
    this.#reason = err === TIMED_OUT ? `no answer within ${this.#budgetMs} ms` : ((err as { code?: string }).code ?? (err as Error)?.message ?? String(err));
    if (this.degraded) return;
    this.#degradedSince = this.#now();
    this.#lastProbe = this.#degradedSince;
    this.#log?.warn(
      { component: 'state', type: 'lifecycle', event: 'state-degraded', backend: this.#backend, reason: this.#reason },
      `shared state (${this.#backend}) unavailable (${this.#reason}): limits, sessions, leases and wrong-credential lockout counts are this node's own until it is back; usage is kept and written then`,
    );
  }

  #recover(): void {
    if (!this.degraded) return;
    const lasted = this.#now() - this.#degradedSince;
    this.#degradedSince = 0;
    this.#recoveries++;
    // The slots granted locally meanwhile become this holder's in the store (their releases
    // then tell it), so later admissions anywhere count them. Then restate this holder's counts
    // of the leases it holds, and of keys whose release may have been lost (a Redis restarted
    // empty knows none of them).
    for (const [key, n] of this.#localHeld) this.#held.set(key, (this.#held.get(key) ?? 0) + n);
    this.#localHeld.clear();
    const keys = new Set([...this.#held.keys(), ...this.#dirty]);
    for (const key of keys) this.#setLease(key);
    this.#log?.info(
      { component: 'state', type: 'lifecycle', event: 'state-recovered', backend: this.#backend, degradedMs: lasted, leasesRestated: keys.size },
      `shared state (${this.#backend}) is back after ${lasted} ms; usage owed is written with the next batch, new sessions and limits use it again`,
    );
  }

  /** Whether this operation should go to the shared store (false while degraded, except one probe per interval). */
  #tryRemote(): boolean {
    if (!this.degraded) return true;
    const now = this.#now();
    if (this.remote.reachable?.() === false || now - this.#lastProbe < this.#probeMs) return false;
    this.#lastProbe = now;
    return true;
  }

  /** `p`, or TIMED_OUT after the budget. */
  #bounded<T>(p: Promise<T>): Promise<T | typeof TIMED_OUT> {
    return new Promise((resolve, reject) => {
      const now = this.#now();
      const w: Waiter = { deadline: now + this.#budgetMs, latest: now + MAX_WAIT_BUDGETS * this.#budgetMs, done: false, resolve: resolve as (v: unknown) => void };
      this.#waiters.push(w);
      this.#arm();
      p.then(
        (v) => {
          if (w.done) return;
          w.done = true;
          resolve(v);
        },
        (err: unknown) => {
          if (w.done) return;
          w.done = true;
          reject(err);
        },
      );
    });
  }

  #arm(): void {
    if (this.#sweep !== undefined) return;
    const every = Math.max(1, Math.ceil(this.#budgetMs / 4));
    this.#sweepDue = this.#now() + every;
    this.#sweep = setTimeout(() => this.#expire(), every);
  }

  #expire(): void {
    this.#sweep = undefined;
    const now = this.#now();
    const q = this.#waiters;
    const lag = now - this.#sweepDue;
    if (lag > this.#budgetMs / 4) {
      // The event loop was blocked for `lag`: this node could not write commands nor read
      // answers meanwhile, and that time is not the store's. (Deadlines and their caps both
      // follow the start order, so the queue stays in deadline order.)
      for (const w of q) if (!w.done) w.deadline = Math.min(w.deadline + lag, w.latest);
    }
    let i = 0;
    while (i < q.length && (q[i]!.done || q[i]!.deadline <= now)) {
      const w = q[i]!;
      if (!w.done) {
        if (this.#late.length === 0) setImmediate(() => this.#timeOutLate());
        this.#late.push(w);
      }
      i++;
    }
    if (i > 0) q.splice(0, i);
    // Drop settled ones further on too, so the queue does not grow with fast answers.
    if (q.length > 256) {
      const live = q.filter((w) => !w.done);
      q.length = 0;
      q.push(...live);
    }
    if (q.length > 0) this.#arm();
  }

  /** After the poll phase that followed the sweep: what is still unanswered times out. */
  #timeOutLate(): void {
    const late = this.#late;
    this.#late = [];
    for (const w of late) {
      if (w.done) continue;
      w.done = true;
      w.resolve(TIMED_OUT);
    }
  }

  /** The shared answer within the budget, else `fallback()` (and the node degrades). */
  #ask<T>(remote: () => Promise<T>, fallback: () => T): T | Promise<T> {
    if (!this.#tryRemote()) {
      this.#fallbacks++;
      return fallback();
    }
    return this.#bounded(remote()).then(
      (v) => {
        if (v === TIMED_OUT) {
          this.#degrade(TIMED_OUT);
          this.#fallbacks++;
          return fallback();
        }
        if (this.degraded) this.#recover();
        return v;
      },
      (err: unknown) => {
        this.#degrade(err);
        this.#fallbacks++;
        return fallback();
      },
    );
  }

  /** A read the request path waits for: the store's answer within the budget, else `fallback`. */
  read<T>(remote: () => Promise<T>, fallback: () => T): T | Promise<T> {
    return this.#ask(remote, fallback);
  }

  /** GCRA for a request: 0 = allowed, else ms until one is. */
  rate(key: string, perSecond: number, burst: number): number | Promise<number> {
    return this.#ask(
      () => this.remote.rate(key, perSecond, burst),
      () => this.local.rateSync(key, perSecond, burst),
    );
  }

  sessionPick(key: string, candidate: string, unusable: readonly string[], ttlMs: number, idleMs: number): SessionPick | undefined | Promise<SessionPick | undefined> {
    return this.#ask(
      () => this.remote.sessionPick(key, candidate, unusable, ttlMs, idleMs),
      () => this.local.sessionPickSync(key, candidate, unusable, ttlMs, idleMs),
    );
  }

  /**
   * A concurrency lease on `key` within `max` across every holder: the release function, or
   * undefined when `max` are held. Granted by the store, or locally while degraded (then
   * this node counts alone).
   */
  acquire(key: string, max: number): (() => void) | undefined | Promise<(() => void) | undefined> {
    const local = (): (() => void) | undefined => this.#localLease(key, max);
    if (!this.#tryRemote()) {
      this.#fallbacks++;
      return local();
    }
    const mine = this.#count(key, 1);
    const writes = this.#leaseWrites;
    const undo = (): void => this.#drop(key, false);
    return this.#bounded(this.remote.leaseAcquire(key, this.holder, mine, max)).then(
      (granted) => {
        if (granted === TIMED_OUT) {
          // The store may still grant it: state our count again once it answers.
          undo();
          this.#dirty.add(key);
          this.#degrade(TIMED_OUT);
          this.#fallbacks++;
          return local();
        }
        if (this.degraded) this.#recover();
        if (!granted) {
          undo();
          this.#restate(key, writes);
          return undefined;
        }
        return once(() => this.#drop(key, true));
      },
      (err: unknown) => {
        undo();
        this.#dirty.add(key);
        this.#degrade(err);
        this.#fallbacks++;
        return local();
      },
    );
  }

  /**
   * A lease counted by this node alone (while degraded): within `max` together with the slots
   * the store granted this node before (`#held`: open or spare), so a node alone never holds
   * more than the plan. Its release: one fewer granted locally, or, once the store is back and
   * the local slots were handed to it (`#recover`), one fewer held there (told to the store).
   */
  #localLease(key: string, max: number): (() => void) | undefined {
    const n = this.#localHeld.get(key) ?? 0;
    if (n + (this.#held.get(key) ?? 0) >= max) return undefined;
    this.#localHeld.set(key, n + 1);
    return once(() => {
      const local = this.#localHeld.get(key) ?? 0;
      if (local === 0) {
        this.#drop(key, true);
        return;
      }
      if (local === 1) this.#localHeld.delete(key);
      else this.#localHeld.set(key, local - 1);
    });
  }

  /** This holder's count of `key` for the store: the slots it holds there plus `n`, and those granted locally not yet handed over. */
  #count(key: string, n: number): number {
    const mine = (this.#held.get(key) ?? 0) + n;
    this.#held.set(key, mine);
    return this.#localHeld.size === 0 ? mine : mine + (this.#localHeld.get(key) ?? 0);
  }

  /** Whether the store answers a whole admission in one call (`Store.admit`: Redis). */
  get combined(): boolean {
    return this.remote.admit !== undefined;
  }

  /**
   * A whole admission (byte quotas whose totals must be read, the rate cell, the leases) in
   * one call to the store, bounded by the budget: one round trip per request or tunnel. Only
   * for stores with `admit` (see `combined`). Nothing is taken when it is refused. Answered
   * from local state when the store does not answer (the quota then reads as nothing: the
   * caller's own estimate decides).
   */
  admit(ask: AdmitAsk): AdmitResult | Promise<AdmitResult> {
    if (this.#credit !== undefined) return this.#admitCredit(ask);
    if (!this.#tryRemote()) {
      this.#fallbacks++;
      return this.#admitLocal(ask);
    }
    const leases = ask.leases ?? [];
    const counts = leases.map((l) => ({ key: l.key, count: this.#count(l.key, 1), max: l.max }));
    const writes = this.#leaseWrites;
    const undo = (): void => {
      for (const l of leases) this.#drop(l.key, false);
    };
    return this.#bounded(this.remote.admit!({ holder: this.holder, rate: ask.rate, quota: ask.quota ?? [], leases: counts })).then(
      (answer): AdmitResult => {
        if (answer === TIMED_OUT) {
          // The store may still grant the leases: state our counts again once it answers.
          undo();
          for (const l of leases) this.#dirty.add(l.key);
          this.#degrade(TIMED_OUT);
          this.#fallbacks++;
          return this.#admitLocal(ask);
        }
        if (this.degraded) this.#recover();
        if (!answer.ok) {
          undo();
          for (const l of leases) this.#restate(l.key, writes);
          return answer;
        }
        return {
          ok: true,
          usage: answer.usage,
          release:
            leases.length === 0
              ? noop
              : once(() => {
                  for (const l of leases) this.#drop(l.key, true);
                }),
        };
      },
      (err: unknown): AdmitResult => {
        undo();
        for (const l of leases) this.#dirty.add(l.key);
        this.#degrade(err);
        this.#fallbacks++;
        return this.#admitLocal(ask);
      },
    );
  }

  /**
   * `admit` with credit blocks (src/state/credit.ts): from credit held here when there is some
   * for every part and no quota total must be read (no I/O at all); else joined to the
   * admissions of this event-loop turn with the same keys, answered together by one store
   * call that also takes up to a block of spare credit.
   */
  #admitCredit(ask: AdmitAsk): AdmitResult | Promise<AdmitResult> {
    if ((ask.quota === undefined || ask.quota.length === 0) && this.#takeSpare(ask)) return this.#creditAdmitted(ask, undefined);
    if (!this.#tryRemote()) {
      this.#fallbacks++;
      return this.#admitLocal(ask);
    }
    const sig = batchKey(ask);
    let batch = this.#batches.get(sig);
    if (batch === undefined) {
      batch = { ask, waiters: [] };
      this.#batches.set(sig, batch);
      if (!this.#flushing) {
        this.#flushing = true;
        // After the I/O callbacks of this turn: every admission they started joins its batch.
        setImmediate(() => this.#flushBatches());
      }
    }
    const b = batch;
    return new Promise((resolve) => b.waiters.push({ ask, resolve }));
  }

  #flushBatches(): void {
    this.#flushing = false;
    const batches = [...this.#batches.values()];
    this.#batches.clear();
    for (const b of batches) this.#sendBatch(b);
  }

  /** Extra credit to ask for `key` with a block of `block`: enough to hold a block again, counting what is held and asked already. */
  #extra(key: string, block: number): number {
    const extra = Math.max(0, block - (this.#spare.get(key) ?? 0) - (this.#asking.get(key) ?? 0));
    if (extra > 0) this.#asking.set(key, (this.#asking.get(key) ?? 0) + extra);
    return extra;
  }

  #asked(key: string, extra: number): void {
    if (extra === 0) return;
    const left = (this.#asking.get(key) ?? 0) - extra;
    if (left <= 0) this.#asking.delete(key);
    else this.#asking.set(key, left);
  }

  #sendBatch(batch: AdmitBatch): void {
    const n = batch.waiters.length;
    const ask = batch.ask;
    const policy = this.#credit!;
    const leases = ask.leases ?? [];
    const rate = ask.rate;
    const rateExtra = rate === undefined ? 0 : this.#extra(rate.key, creditBlock(policy, rate.perSecond));
    // Lease slots: spare ones held here serve the waiters first (set aside until the answer),
    // the extra asked fills what this node holds (open, spare and asked for) up to a block, and
    // a lease the spare covers whole is not sent: the store records only slots this node does
    // not hold yet. Asking `n` more, and enough to refill the spare alone, whenever the rate
    // cell ran dry grew this node's slots past a block while some were open, and their
    // releases then trimmed them back with a write: ~0.05 HSET per tunnel on the service bench
    // (bench/redis-trips.ts) and a lease hash read in every script, for nothing.
    const leaseExtra = leases.map((l) => Math.max(0, creditBlock(policy, l.max) - (this.#held.get(l.key) ?? 0)));
    const reserved = leases.map((l) => this.#setAside(l.key, n));
    const wants = leases.map((_, i) => n - reserved[i]! + leaseExtra[i]!);
    /** The leases asked of the store: their indexes in `leases`. */
    const sent: number[] = [];
    const counts: Array<{ key: string; count: number; max: number; want: number }> = [];
    leases.forEach((l, i) => {
      if (wants[i] === 0) return;
      // Optimistic, as in `admit`: this holder's counts include what it asks for, so a release
      // batch written meanwhile never states less than the store may grant.
      const mine = this.#count(l.key, wants[i]!);
      sent.push(i);
      counts.push({ key: l.key, count: mine, max: l.max, want: wants[i]! });
    });
    const settled = (): void => {
      if (rate !== undefined) this.#asked(rate.key, rateExtra);
      leases.forEach((l, i) => this.#addSpare(l.key, reserved[i]!));
    };
    const writes = this.#leaseWrites;
    /** The slots asked for and not granted, no longer held; stated again when a count with them went out meanwhile. */
    const unheld = (granted: readonly number[] | undefined, restate: boolean): void => {
      sent.forEach((i, j) => {
        const short = wants[i]! - (granted?.[j] ?? 0);
        this.#unhold(leases[i]!.key, short);
        if (restate && short > 0) this.#restate(leases[i]!.key, writes);
      });
    };
    const failed = (): void => {
      for (const i of sent) this.#dirty.add(leases[i]!.key);
    };
    const storeAsk = { holder: this.holder, rate: rate === undefined ? undefined : { key: rate.key, perSecond: rate.perSecond, burst: rate.burst, want: n + rateExtra } /* not `{ ...rate, want }`: new V8 maps per request in Node 20 (egress/dialer.ts withSignal) */, quota: ask.quota ?? [], leases: counts };
    this.#bounded(this.remote.admit!(storeAsk)).then(
      (answer) => {
        settled();
        if (answer === TIMED_OUT) {
          unheld(undefined, false);
          failed();
          this.#degrade(TIMED_OUT);
          this.#fallbacks += n;
          for (const w of batch.waiters) w.resolve(this.#admitLocal(w.ask));
          return;
        }
        if (this.degraded) this.#recover();
        if (!answer.ok) {
          unheld(undefined, true);
          const refused: AdmitResult = answer.refused === 'lease' ? { ...answer, index: sent[answer.index] ?? answer.index } : answer;
          for (const w of batch.waiters) w.resolve(refused);
          return;
        }
        const granted = answer.granted ?? { rate: n, leases: sent.map((i) => wants[i]!) };
        unheld(granted.leases, true);
        if (rate !== undefined) this.#addSpare(rate.key, granted.rate);
        sent.forEach((i, j) => this.#addSpare(leases[i]!.key, granted.leases[j]!));
        // The waiters in order: each takes one of every part, from what came back (and any
        // credit released meanwhile); one left without is refused as the store would have.
        for (const w of batch.waiters) {
          const short = this.#shortPart(w.ask);
          if (short === undefined) {
            this.#takeSpare(w.ask);
            w.resolve(this.#creditAdmitted(w.ask, answer.usage));
          } else if (short === -1) {
            w.resolve({ ok: false, refused: 'rate', waitMs: Math.max(1, Math.ceil(1000 / w.ask.rate!.perSecond)), usage: answer.usage });
          } else w.resolve({ ok: false, refused: 'lease', index: short, usage: answer.usage });
        }
      },
      (err: unknown) => {
        settled();
        unheld(undefined, false);
        failed();
        this.#degrade(err);
        this.#fallbacks += n;
        for (const w of batch.waiters) w.resolve(this.#admitLocal(w.ask));
      },
    );
  }

  /** Up to `n` of the spare credit of `key` taken out of spare (still held), for a batch's waiters; how many. */
  #setAside(key: string, n: number): number {
    const spare = this.#spare.get(key) ?? 0;
    const r = Math.min(n, spare);
    if (r === 0) return 0;
    if (r === spare) this.#spare.delete(key);
    else this.#spare.set(key, spare - r);
    return r;
  }

  #addSpare(key: string, n: number): void {
    if (n > 0) this.#spare.set(key, (this.#spare.get(key) ?? 0) + n);
  }

  /** Which part has no spare credit: undefined (none short), -1 the rate cell, else the lease index. */
  #shortPart(ask: AdmitAsk): number | undefined {
    if (ask.rate !== undefined && (this.#spare.get(ask.rate.key) ?? 0) < 1) return -1;
    const leases = ask.leases ?? [];
    for (let i = 0; i < leases.length; i++) if ((this.#spare.get(leases[i]!.key) ?? 0) < 1) return i;
    return undefined;
  }

  /** One of every part from spare credit, when there is some for each (else nothing taken). */
  #takeSpare(ask: AdmitAsk): boolean {
    if (this.#shortPart(ask) !== undefined) return false;
    if (ask.rate !== undefined) {
      this.#spend(ask.rate.key);
      this.#spareUsed.add(ask.rate.key);
    }
    for (const l of ask.leases ?? []) {
      this.#spend(l.key);
      this.#spareUsed.add(l.key);
    }
    return true;
  }

  #spend(key: string): void {
    const left = this.#spare.get(key)! - 1;
    if (left === 0) this.#spare.delete(key);
    else this.#spare.set(key, left);
  }

  #creditAdmitted(ask: AdmitAsk, usage: StoreAdmitAnswer['usage'] | undefined): AdmitResult {
    const leases = ask.leases ?? [];
    if (leases.length === 0) return { ok: true, usage, release: noop };
    // One closure with its own flag rather than `once` around a closure: one function less per
    // admission on the credit path (docs/benchmarks.md §18, sampling heap profile).
    let done = false;
    return {
      ok: true,
      usage,
      release: () => {
        if (done) return;
        done = true;
        for (const l of leases) this.#giveBack(l.key, creditBlock(this.#credit!, l.max));
      },
    };
  }

  /** A lease slot given back: kept as spare credit up to a block; past it, no longer held (told to the store with the release batch). */
  #giveBack(key: string, block: number): void {
    const spare = (this.#spare.get(key) ?? 0) + 1;
    if (spare <= block) {
      this.#spare.set(key, spare);
      return;
    }
    if (block > 0) this.#spare.set(key, block);
    else this.#spare.delete(key);
    this.#unhold(key, spare - block);
    this.#tellReleased(key);
  }

  /** `n` fewer of `key` held here (not told to the store). */
  #unhold(key: string, n: number): void {
    if (n <= 0) return;
    const left = (this.#held.get(key) ?? n) - n;
    if (left <= 0) this.#held.delete(key);
    else this.#held.set(key, left);
  }

  /**
   * At each heartbeat: the spare credit of a user not admitted since the last one is dropped
   * (so the map does not grow with every user ever seen): lease slots go back to the store;
   * rate tokens are forgotten (counted in the cell long enough ago that it has refilled).
   */
  #returnIdleSpare(): void {
    if (this.#credit === undefined) return;
    for (const [key, n] of this.#spare) {
      if (this.#spareUsed.has(key)) continue;
      this.#spare.delete(key);
      if (!this.#held.has(key)) continue;
      this.#unhold(key, n);
      this.#tellReleased(key);
    }
    this.#spareUsed.clear();
  }

  /** `admit` from local state: the rate cell, then the leases, counted by this node alone. */
  #admitLocal(ask: AdmitAsk): AdmitResult {
    if (ask.rate) {
      const waitMs = this.local.rateSync(ask.rate.key, ask.rate.perSecond, ask.rate.burst);
      if (waitMs > 0) return { ok: false, refused: 'rate', waitMs, usage: undefined };
    }
    const releases: Array<() => void> = [];
    const leases = ask.leases ?? [];
    for (let i = 0; i < leases.length; i++) {
      const r = this.#localLease(leases[i]!.key, leases[i]!.max);
      if (r === undefined) {
        for (const x of releases) x();
        return { ok: false, refused: 'lease', index: i, usage: undefined };
      }
      releases.push(r);
    }
    return {
      ok: true,
      usage: undefined,
      release: once(() => {
        for (const x of releases) x();
      }),
    };
  }

  /** One lease of `key` given back (or never granted); tell the store this holder's new count when `tell`. */
  #drop(key: string, tell: boolean): void {
    const left = (this.#held.get(key) ?? 1) - 1;
    if (left <= 0) this.#held.delete(key);
    else this.#held.set(key, left);
    if (tell) this.#tellReleased(key);
  }

  #tellReleased(key: string): void {
    // Releases are told in batches (one count per key every RELEASE_BATCH_MS), not one write
    // per connection's end: meanwhile the others see this holder's count too high, which only
    // refuses sooner, never lets more through.
    this.#released.add(key);
    if (this.#releaseTimer === undefined) {
      this.#releaseTimer = setTimeout(() => {
        this.#releaseTimer = undefined;
        for (const k of this.#released) this.#setLease(k);
        this.#released.clear();
      }, RELEASE_BATCH_MS);
      this.#releaseTimer.unref();
    }
  }

  /**
   * After an ask of `key` got fewer slots than it wanted: if a lease count was written since
   * the ask went out (`writes`: `#leaseWrites` then), it may have been this key's and included
   * them, and the store would keep them as this holder's until told again. Counted over all
   * keys, not per key (no map to keep): a refusal may then cost a needless write, at most one
   * per key per release batch. (Asks that time out or fail are restated by `#recover`.)
   */
  #restate(key: string, writes: number): void {
    if (this.#leaseWrites !== writes) this.#tellReleased(key);
  }

  #setLease(key: string): void {
    this.#leaseWrites++;
    this.#dirty.delete(key);
    this.remote.leaseSet(key, this.holder, this.#held.get(key) ?? 0).catch(() => this.#dirty.add(key));
  }

  /** This node found `scope` dead for `forMs`: tell the others (fire and forget). */
  publishCooldown(scope: string, forMs: number): void {
    if (this.degraded && this.remote.reachable?.() === false) return;
    this.remote.publishCooldown(scope, forMs).catch(() => {});
  }

  onCooldown(listener: (scope: string, forMs: number) => void): void {
    this.#cooldownListeners.push(listener);
  }

  async close(): Promise<void> {
    clearInterval(this.#heartbeat);
    if (this.#sweep) clearTimeout(this.#sweep);
    if (this.#releaseTimer) clearTimeout(this.#releaseTimer);
    for (const w of this.#waiters) if (!w.done) {
      w.done = true;
      w.resolve(TIMED_OUT);
    }
    // Give back this holder's leases at once rather than when its heartbeat lapses.
    await Promise.allSettled([...this.#held.keys()].map((k) => this.remote.leaseSet(k, this.holder, 0)));
    await this.local.close();
    await this.remote.close();
  }
}

function noop(): void {}

/** Admissions with the same keys (user, kind, quota periods) go in one batch. */
function batchKey(ask: AdmitAsk): string {
  let k = ask.rate?.key ?? '';
  for (const q of ask.quota ?? []) k += `\n${q.key}`;
  k += '\n';
  for (const l of ask.leases ?? []) k += `\n${l.key}`;
  return k;
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}

/**
 * The Store the usage ledger sees. Counts are written to the shared store without a budget
 * (no request waits for them; the ledger batches them once a second) and a failed write
 * rejects, so the ledger keeps the count owed and writes it again: that is how usage counted
 * while the store was away reaches it. Reads (a quota check of a user not seen for a second)
 * wait at most the budget; without an answer they read as nothing, and the ledger's own
 * figure (last known total plus what waits) decides.
 */
class UsageView implements Store {
  readonly shared = true;
  readonly #s: SharedState;
  constructor(s: SharedState) {
    this.#s = s;
  }
  incrby(key: string, n: number, ttlMs?: number): Promise<number> {
    return this.#s.remote.incrby(key, n, ttlMs);
  }
  hincrby(key: string, field: string, n: number, ttlMs?: number): Promise<number> {
    return this.#s.remote.hincrby(key, field, n, ttlMs);
  }
  async get(key: string): Promise<number | undefined> {
    return this.#s.read(() => this.#s.remote.get(key), () => undefined);
  }
  async hgetall(key: string): Promise<Record<string, number>> {
    return this.#s.read(() => this.#s.remote.hgetall(key), () => ({}));
  }
  keys(prefix: string): Promise<string[]> {
    return this.#s.remote.keys(prefix);
  }
  pttl(key: string): Promise<number | undefined> {
    return this.#s.remote.pttl(key);
  }
  del(key: string): Promise<void> {
    return this.#s.remote.del(key);
  }
  rate(key: string, perSecond: number, burst: number): Promise<number> {
    return Promise.resolve(this.#s.rate(key, perSecond, burst));
  }
  sessionPick(key: string, candidate: string, unusable: readonly string[], ttlMs: number, idleMs: number): Promise<SessionPick | undefined> {
    return Promise.resolve(this.#s.sessionPick(key, candidate, unusable, ttlMs, idleMs));
  }
  leaseAcquire(key: string, holder: string, count: number, max: number): Promise<boolean> {
    return this.#s.remote.leaseAcquire(key, holder, count, max);
  }
  leaseSet(key: string, holder: string, count: number): Promise<void> {
    return this.#s.remote.leaseSet(key, holder, count);
  }
  heartbeat(holder: string, ttlMs: number): Promise<void> {
    return this.#s.remote.heartbeat(holder, ttlMs);
  }
  publishCooldown(scope: string, forMs: number): Promise<void> {
    this.#s.publishCooldown(scope, forMs);
    return Promise.resolve();
  }
  onCooldown(listener: (scope: string, forMs: number) => void): void {
    this.#s.onCooldown(listener);
  }
  close(): Promise<void> {
    return this.#s.close();
  }
}

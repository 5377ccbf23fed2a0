import { readFile, rename, writeFile } from 'node:fs/promises';
import type { SessionPick, Store } from './store.js';

interface Entry {
  value: number | Map<string, number>;
  /** Epoch ms; 0 = never. */
  expires: number;
}

/** What `MemoryStore.dump()` writes and `load()` reads (the `gatewise usage` state file). */
export interface StoreDump {
  version: 1;
  savedAt: string;
  entries: Array<{ key: string; value: number | Record<string, number>; expires: number }>;
}

/**
 * The default Store: a Map in this process, expiry checked on read and swept
 * periodically. Optionally dumped to a JSON file (`dump`) so `gatewise usage` can read it.
 */
export class MemoryStore implements Store {
  readonly shared: boolean = false;
  readonly #entries = new Map<string, Entry>();
  readonly #sessions = new Map<string, { exitId: string; expires: number; lastUsed: number; idleMs: number }>();
  /** Lease key → holder → count; holder → when its heartbeat lapses (absent: never, this process). */
  readonly #leases = new Map<string, Map<string, number>>();
  readonly #holders = new Map<string, number>();
  readonly #cooldownListeners: Array<(scope: string, forMs: number) => void> = [];
  readonly #now: () => number;
  readonly #sweep: NodeJS.Timeout;

  constructor(opts: { now?: () => number; sweepMs?: number } = {}) {
    this.#now = opts.now ?? Date.now;
    this.#sweep = setInterval(() => this.#sweepExpired(), opts.sweepMs ?? 60_000);
    this.#sweep.unref();
  }

  #live(key: string): Entry | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    if (e.expires !== 0 && e.expires <= this.#now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return e;
  }

  #sweepExpired(): void {
    const now = this.#now();
    for (const [k, e] of this.#entries) if (e.expires !== 0 && e.expires <= now) this.#entries.delete(k);
    for (const [k, p] of this.#sessions) if (now >= p.expires || now - p.lastUsed > p.idleMs) this.#sessions.delete(k);
  }

  #touch(e: Entry, ttlMs: number | undefined): void {
    if (ttlMs !== undefined && ttlMs > 0 && e.expires === 0) e.expires = this.#now() + ttlMs;
  }

  async incrby(key: string, n: number, ttlMs?: number): Promise<number> {
    return this.incrbySync(key, n, ttlMs);
  }

  /** Synchronous form, for the hot path of the in-process default. */
  incrbySync(key: string, n: number, ttlMs?: number): number {
    let e = this.#live(key);
    if (!e || typeof e.value !== 'number') {
      e = { value: 0, expires: 0 };
      this.#entries.set(key, e);
    }
    e.value = (e.value as number) + n;
    this.#touch(e, ttlMs);
    return e.value;
  }

  async get(key: string): Promise<number | undefined> {
    const e = this.#live(key);
    return e && typeof e.value === 'number' ? e.value : undefined;
  }

  async hincrby(key: string, field: string, n: number, ttlMs?: number): Promise<number> {
    let e = this.#live(key);
    if (!e || typeof e.value === 'number') {
      e = { value: new Map(), expires: 0 };
      this.#entries.set(key, e);
    }
    const m = e.value as Map<string, number>;
    const v = (m.get(field) ?? 0) + n;
    m.set(field, v);
    this.#touch(e, ttlMs);
    return v;
  }

  async hgetall(key: string): Promise<Record<string, number>> {
    const e = this.#live(key);
    if (!e || typeof e.value === 'number') return {};
    return Object.fromEntries(e.value);
  }

  async keys(prefix: string): Promise<string[]> {
    const out: string[] = [];
    for (const k of [...this.#entries.keys()]) if (k.startsWith(prefix) && this.#live(k)) out.push(k);
    return out;
  }

  async pttl(key: string): Promise<number | undefined> {
    const e = this.#live(key);
    if (!e || e.expires === 0) return undefined;
    return e.expires - this.#now();
  }

  async del(key: string): Promise<void> {
    this.#entries.delete(key);
  }

  async rate(key: string, perSecond: number, burst: number): Promise<number> {
    return this.rateSync(key, perSecond, burst);
  }

  /**
   * GCRA (the generic cell rate algorithm, as the Lua script in redis-store.ts): the key
   * holds the theoretical arrival time (TAT); a request is allowed when TAT - now is within
   * the burst tolerance, and moves TAT one emission interval on.
   */
  rateSync(key: string, perSecond: number, burst: number): number {
    const now = this.#now();
    const interval = 1000 / perSecond;
    const tolerance = interval * Math.max(0, burst - 1);
    const e = this.#live(key);
    const tat = e && typeof e.value === 'number' ? Math.max(e.value, now) : now;
    const wait = tat - tolerance - now;
    // Within half a millisecond counts as on time: TAT is a sum of float intervals on an
    // epoch-ms base, whose rounding (~0.2 µs a step) adds up over a burst.
    if (wait > 0.5) return Math.ceil(wait);
    const next = tat + interval;
    this.#entries.set(key, { value: next, expires: Math.ceil(next) + 1 });
    return 0;
  }

  async sessionPick(key: string, candidate: string, unusable: readonly string[], ttlMs: number, idleMs: number): Promise<SessionPick | undefined> {
    return this.sessionPickSync(key, candidate, unusable, ttlMs, idleMs);
  }

  sessionPickSync(key: string, candidate: string, unusable: readonly string[], ttlMs: number, idleMs: number): SessionPick | undefined {
    const now = this.#now();
    let p = this.#sessions.get(key);
    if (p && (now >= p.expires || now - p.lastUsed > p.idleMs)) {
      this.#sessions.delete(key);
      p = undefined;
    }
    if (p && !unusable.includes(p.exitId)) {
      p.lastUsed = now;
      return { exitId: p.exitId, repinned: false };
    }
    if (candidate === '') return undefined;
    if (p) {
      p.exitId = candidate;
      p.lastUsed = now;
      p.idleMs = idleMs;
      return { exitId: candidate, repinned: true };
    }
    this.#sessions.set(key, { exitId: candidate, expires: now + ttlMs, lastUsed: now, idleMs });
    return { exitId: candidate, repinned: false };
  }

  async leaseAcquire(key: string, holder: string, count: number, max: number): Promise<boolean> {
    const now = this.#now();
    let m = this.#leases.get(key);
    let others = 0;
    if (m) {
      for (const [h, n] of m) {
        if (h === holder) continue;
        const alive = this.#holders.get(h);
        if (alive !== undefined && alive <= now) m.delete(h);
        else others += n;
      }
    }
    if (others + count > max) return false;
    if (!m) this.#leases.set(key, (m = new Map()));
    m.set(holder, count);
    return true;
  }

  async leaseSet(key: string, holder: string, count: number): Promise<void> {
    const m = this.#leases.get(key);
    if (count > 0) {
      if (m) m.set(holder, count);
      else this.#leases.set(key, new Map([[holder, count]]));
    } else if (m) {
      m.delete(holder);
      if (m.size === 0) this.#leases.delete(key);
    }
  }

  async heartbeat(holder: string, ttlMs: number): Promise<void> {
    this.#holders.set(holder, this.#now() + ttlMs);
  }

  /** Drop every lease of a holder at once (the IPC host, when a worker exits). */
  dropHolder(holder: string): void {
    for (const [k, m] of this.#leases) {
      m.delete(holder);
      if (m.size === 0) this.#leases.delete(k);
    }
    this.#holders.delete(holder);
  }

  async publishCooldown(scope: string, forMs: number): Promise<void> {
    for (const l of this.#cooldownListeners) l(scope, forMs);
  }

  onCooldown(listener: (scope: string, forMs: number) => void): void {
    this.#cooldownListeners.push(listener);
  }

  /** Everything live, as JSON-ready data. */
  dump(): StoreDump {
    this.#sweepExpired();
    const entries: StoreDump['entries'] = [];
    for (const [key, e] of this.#entries) {
      entries.push({ key, value: typeof e.value === 'number' ? e.value : Object.fromEntries(e.value), expires: e.expires });
    }
    return { version: 1, savedAt: new Date(this.#now()).toISOString(), entries };
  }

  /** Write `dump()` to a file atomically (write a temp file, rename). */
  async save(file: string): Promise<void> {
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(this.dump()));
    await rename(tmp, file);
  }

  /** Read a file written by `save` into this store (entries already expired are skipped). */
  async load(file: string): Promise<void> {
    const data = JSON.parse(await readFile(file, 'utf8')) as StoreDump;
    const now = this.#now();
    for (const e of data.entries ?? []) {
      if (e.expires !== 0 && e.expires <= now) continue;
      this.#entries.set(e.key, { value: typeof e.value === 'number' ? e.value : new Map(Object.entries(e.value)), expires: e.expires });
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#sweep);
  }
}

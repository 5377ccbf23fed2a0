import { readFile, rename, writeFile } from 'node:fs/promises';
import type { Store } from './store.js';

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
  readonly #entries = new Map<string, Entry>();
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

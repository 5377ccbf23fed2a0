import type { CacheEntry, VaryValues } from './entry.js';

/** Where the cache keeps its entries. */
export interface CacheStore {
  /** The variants stored under a key, newest first; marks the key recently used. */
  get(key: string): readonly CacheEntry[] | undefined;
  /** Store a response: it replaces the variant selected by the same Vary values. False when it cannot be kept. */
  put(entry: CacheEntry): boolean;
  /** Remove a key with all its variants. */
  delete(key: string): boolean;
  /** Remove every key starting with `prefix` (of one `route`'s keys only, when given); returns how many keys went. */
  deletePrefix(prefix: string, route?: string): number;
  /** Bytes held, entries (variants) held, keys held. */
  readonly bytes: number;
  readonly entries: number;
  readonly keys: number;
  readonly maxBytes: number;
  /** Entries evicted to make room (not purged or replaced). */
  readonly evictions: number;
}

/** The route a key belongs to (`cacheKey`: the target, a space, the route; a target has no space). */
export function routeOfKey(key: string): string {
  return key.slice(key.indexOf(' ') + 1);
}

/** Most variants kept per key: a Vary over a field with many values must not fill the store under one key. */
const MAX_VARIANTS = 16;

/**
 * In-memory store bounded in bytes, least recently used keys evicted first. The LRU order
 * is the Map's insertion order (a use re-inserts the key), so a lookup costs a delete and a
 * set and no list nodes.
 */
export class MemoryStore implements CacheStore {
  readonly maxBytes: number;
  readonly #map = new Map<string, CacheEntry[]>();
  #bytes = 0;
  #entries = 0;
  /** Entries evicted to make room (not purged or replaced). */
  evictions = 0;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get entries(): number {
    return this.#entries;
  }

  get keys(): number {
    return this.#map.size;
  }

  get(key: string): readonly CacheEntry[] | undefined {
    const list = this.#map.get(key);
    if (list === undefined) return undefined;
    this.#map.delete(key);
    this.#map.set(key, list);
    return list;
  }

  put(entry: CacheEntry): boolean {
    if (entry.size > this.maxBytes) return false;
    const key = entry.key;
    const old = this.#map.get(key);
    const list: CacheEntry[] = [entry];
    this.#bytes += entry.size;
    this.#entries++;
    if (old !== undefined) {
      this.#map.delete(key);
      for (const e of old) {
        if (sameSelection(e.varyValues, entry.varyValues) || list.length >= MAX_VARIANTS) {
          this.#bytes -= e.size;
          this.#entries--;
        } else {
          list.push(e);
        }
      }
    }
    this.#map.set(key, list);
    this.#evict(key);
    return true;
  }

  delete(key: string): boolean {
    const list = this.#map.get(key);
    if (list === undefined) return false;
    this.#map.delete(key);
    for (const e of list) {
      this.#bytes -= e.size;
      this.#entries--;
    }
    return true;
  }

  deletePrefix(prefix: string, route?: string): number {
    let n = 0;
    for (const key of [...this.#map.keys()]) if (key.startsWith(prefix) && (route === undefined || routeOfKey(key) === route) && this.delete(key)) n++;
    return n;
  }

  /** Drop least recently used keys (never `keep`, the one just stored) until within the bound. */
  #evict(keep: string): void {
    if (this.#bytes <= this.maxBytes) return;
    for (const key of this.#map.keys()) {
      if (this.#bytes <= this.maxBytes) break;
      if (key === keep) continue;
      const n = this.#map.get(key)!.length;
      this.delete(key);
      this.evictions += n;
    }
    // Only the newest key is left and still too big together: keep its newest variant only.
    if (this.#bytes > this.maxBytes) {
      const list = this.#map.get(keep);
      if (list !== undefined) {
        while (list.length > 1 && this.#bytes > this.maxBytes) {
          const e = list.pop()!;
          this.#bytes -= e.size;
          this.#entries--;
          this.evictions++;
        }
      }
    }
  }
}

function sameSelection(a: VaryValues, b: VaryValues): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The state layer: one small, Redis-shaped interface for counters that must survive
 * across requests (and later across gateway nodes). Keys are strings; hash-like keys
 * hold named integer fields. Every write can set an expiry, as Redis INCRBY + PEXPIRE
 * (or HINCRBY + PEXPIRE) would.
 */
export interface Store {
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
  close(): Promise<void>;
}

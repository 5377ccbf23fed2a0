import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { SessionPick, Store } from './store.js';

export interface RedisStoreOptions {
  /** `redis://[user:password@]host:port/db` (or `rediss://` for TLS). */
  url: string;
  /** Put before every key and the cool-down channel (default `gatewise:`), so several fleets can share one Redis. */
  keyPrefix?: string;
  /** Give up connecting after this long (default 2000 ms); ioredis then retries in the background. */
  connectTimeoutMs?: number;
}

/*
 * The scripts. Each runs atomically in Redis; times come from Redis (TIME), so the nodes'
 * clocks need not agree. Key layout under the prefix P: counters and rate cells at P+key,
 * sessions at P+"sess:"+key (hash exit, expires), leases at P+"lease:"+key (hash holder → count),
 * holders' heartbeats at P+"node:"+holder. The lease script reads heartbeat keys it builds
 * itself, so this needs one Redis (or a primary with replicas), not Redis Cluster.
 */
const NOW_MS = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)";

/** INCRBY/HINCRBY, and an expiry when the key has none yet. */
const INCR_TTL = `
local v
if ARGV[3] == '' then v = redis.call('INCRBY', KEYS[1], ARGV[1]) else v = redis.call('HINCRBY', KEYS[1], ARGV[3], ARGV[1]) end
if ARGV[2] ~= '0' and redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v`;

/** GCRA. ARGV: emission interval (ms), burst tolerance (ms). Returns 0 (allowed) or ms to wait. */
const RATE = `${NOW_MS}
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0.5 then return math.ceil(wait) end
local nxt = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', nxt), 'PX', math.ceil(nxt - now) + 1)
return 0`;

/** Sticky session. ARGV: candidate ('' = none), ttl ms, idle ms, unusable exits joined by newlines. Returns {exit, repinned} or nil. */
const SESSION = `${NOW_MS}
local cur = redis.call('HMGET', KEYS[1], 'exit', 'expires')
local idle = tonumber(ARGV[3])
if cur[1] then
  local exp = tonumber(cur[2])
  if exp > now then
    local bad = false
    for u in string.gmatch(ARGV[4], '[^\\n]+') do if u == cur[1] then bad = true end end
    if not bad then
      redis.call('PEXPIRE', KEYS[1], math.min(idle, exp - now))
      return {cur[1], 0}
    end
    if ARGV[1] == '' then return nil end
    redis.call('HSET', KEYS[1], 'exit', ARGV[1])
    redis.call('PEXPIRE', KEYS[1], math.min(idle, exp - now))
    return {ARGV[1], 1}
  end
end
if ARGV[1] == '' then return nil end
local exp = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'exit', ARGV[1], 'expires', exp)
redis.call('PEXPIRE', KEYS[1], math.min(idle, exp - now))
return {ARGV[1], 0}`;

/** Lease. ARGV: holder, its count after taking one, max, node-key prefix. Holders without a live heartbeat are dropped. */
const LEASE = `
local h = redis.call('HGETALL', KEYS[1])
local others = 0
for i = 1, #h, 2 do
  if h[i] ~= ARGV[1] then
    if redis.call('EXISTS', ARGV[4] .. h[i]) == 1 then others = others + tonumber(h[i + 1])
    else redis.call('HDEL', KEYS[1], h[i]) end
  end
end
if others + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], 86400000)
return 1`;

type Scripted = Redis & {
  gwIncr(key: string, n: number, ttl: number, field: string): Promise<number>;
  gwRate(key: string, interval: number, tolerance: number): Promise<number>;
  gwSession(key: string, candidate: string, ttl: number, idle: number, unusable: string): Promise<[string, number] | null>;
  gwLease(key: string, holder: string, count: number, max: number, nodePrefix: string): Promise<number>;
};

/**
 * The Store in Redis, through ioredis: counters with INCRBY/HINCRBY, the fleet operations as
 * Lua scripts (EVALSHA, loaded once), cool-downs on a pub/sub channel (a second connection,
 * as Redis requires for a subscriber). Commands fail at once while disconnected (no offline
 * queue): `SharedState` then answers from local state, and ioredis reconnects in the
 * background.
 */
export class RedisStore implements Store {
  readonly shared = true;
  readonly #redis: Scripted;
  readonly #sub: Redis;
  readonly #prefix: string;
  readonly #channel: string;
  /** Tells this store's own cool-down messages apart from others'. */
  readonly #id = randomUUID();
  readonly #cooldownListeners: Array<(scope: string, forMs: number) => void> = [];
  readonly #reachableListeners: Array<() => void> = [];

  constructor(opts: RedisStoreOptions) {
    this.#prefix = opts.keyPrefix ?? 'gatewise:';
    this.#channel = `${this.#prefix}cooldown`;
    const common = {
      connectTimeout: opts.connectTimeoutMs ?? 2000,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      // Reconnect forever, at most every 2 s.
      retryStrategy: (times: number) => Math.min(100 * times, 2000),
      lazyConnect: false,
    };
    this.#redis = new Redis(opts.url, { ...common, enableAutoPipelining: true }) as Scripted;
    this.#redis.defineCommand('gwIncr', { numberOfKeys: 1, lua: INCR_TTL });
    this.#redis.defineCommand('gwRate', { numberOfKeys: 1, lua: RATE });
    this.#redis.defineCommand('gwSession', { numberOfKeys: 1, lua: SESSION });
    this.#redis.defineCommand('gwLease', { numberOfKeys: 1, lua: LEASE });
    // ioredis reports connection errors as 'error' events; SharedState logs the state change.
    this.#redis.on('error', () => {});
    this.#redis.on('ready', () => {
      for (const l of this.#reachableListeners) l();
    });
    this.#sub = new Redis(opts.url, { ...common, enableOfflineQueue: true });
    this.#sub.on('error', () => {});
    this.#sub.on('message', (_ch: string, msg: string) => this.#onMessage(msg));
    void this.#sub.subscribe(this.#channel).catch(() => {});
  }

  /** Resolves once connected (or rejects after `ms`); the store works either way. */
  async connected(ms: number): Promise<boolean> {
    if (this.#redis.status === 'ready') return true;
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(t);
        this.#redis.off('ready', onReady);
        resolve(ok);
      };
      const onReady = (): void => done(true);
      const t = setTimeout(done, ms, false);
      this.#redis.on('ready', onReady);
    });
  }

  reachable(): boolean {
    return this.#redis.status === 'ready';
  }

  onReachable(listener: () => void): void {
    this.#reachableListeners.push(listener);
  }

  #onMessage(msg: string): void {
    // id \n ms \n scope (the scope may hold newlines itself: last).
    const a = msg.indexOf('\n');
    const b = msg.indexOf('\n', a + 1);
    if (a < 0 || b < 0 || msg.slice(0, a) === this.#id) return;
    const forMs = Number(msg.slice(a + 1, b));
    if (!Number.isFinite(forMs)) return;
    for (const l of this.#cooldownListeners) l(msg.slice(b + 1), forMs);
  }

  incrby(key: string, n: number, ttlMs?: number): Promise<number> {
    return this.#redis.gwIncr(this.#prefix + key, n, ttlMs ?? 0, '');
  }

  async get(key: string): Promise<number | undefined> {
    const v = await this.#redis.get(this.#prefix + key);
    return v === null ? undefined : Number(v);
  }

  hincrby(key: string, field: string, n: number, ttlMs?: number): Promise<number> {
    return this.#redis.gwIncr(this.#prefix + key, n, ttlMs ?? 0, field);
  }

  async hgetall(key: string): Promise<Record<string, number>> {
    const h = await this.#redis.hgetall(this.#prefix + key);
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(h)) out[k] = Number(v);
    return out;
  }

  async keys(prefix: string): Promise<string[]> {
    const out: string[] = [];
    let cursor = '0';
    const match = `${this.#prefix}${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
    do {
      const [next, batch] = await this.#redis.scan(cursor, 'MATCH', match, 'COUNT', 500);
      cursor = next;
      for (const k of batch) out.push(k.slice(this.#prefix.length));
    } while (cursor !== '0');
    return out;
  }

  async pttl(key: string): Promise<number | undefined> {
    const v = await this.#redis.pttl(this.#prefix + key);
    return v < 0 ? undefined : v;
  }

  async del(key: string): Promise<void> {
    await this.#redis.del(this.#prefix + key);
  }

  rate(key: string, perSecond: number, burst: number): Promise<number> {
    const interval = 1000 / perSecond;
    return this.#redis.gwRate(this.#prefix + key, interval, interval * Math.max(0, burst - 1));
  }

  async sessionPick(key: string, candidate: string, unusable: readonly string[], ttlMs: number, idleMs: number): Promise<SessionPick | undefined> {
    const r = await this.#redis.gwSession(`${this.#prefix}sess:${key}`, candidate, ttlMs, idleMs, unusable.join('\n'));
    return r === null ? undefined : { exitId: r[0], repinned: r[1] === 1 };
  }

  async leaseAcquire(key: string, holder: string, count: number, max: number): Promise<boolean> {
    return (await this.#redis.gwLease(`${this.#prefix}lease:${key}`, holder, count, max, `${this.#prefix}node:`)) === 1;
  }

  async leaseSet(key: string, holder: string, count: number): Promise<void> {
    const k = `${this.#prefix}lease:${key}`;
    if (count > 0) await this.#redis.hset(k, holder, count);
    else await this.#redis.hdel(k, holder);
  }

  async heartbeat(holder: string, ttlMs: number): Promise<void> {
    await this.#redis.set(`${this.#prefix}node:${holder}`, '1', 'PX', ttlMs);
  }

  async publishCooldown(scope: string, forMs: number): Promise<void> {
    await this.#redis.publish(this.#channel, `${this.#id}\n${forMs}\n${scope}`);
  }

  onCooldown(listener: (scope: string, forMs: number) => void): void {
    this.#cooldownListeners.push(listener);
  }

  async close(): Promise<void> {
    this.#redis.disconnect();
    this.#sub.disconnect();
  }
}

import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { LOCKOUTS_KEPT, type LockoutCounting, type LockoutNews, type LockoutVerdict, type SessionPick, type Store, type StoreAdmitAnswer, type StoreAdmitAsk } from './store.js';

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

/**
 * A whole admission in one script, so a tunnel's admission is one round trip (it was a rate
 * script, then a lease script per sold limit, waited for one after the other). It also takes
 * several at once: a node's batch of admissions of one event-loop turn plus its credit block
 * (src/state/credit.ts) asks for up to `want` of the rate cell and of each lease and gets as
 * many as fit (at least one, else refused, nothing taken).
 * KEYS: the rate cell (when ARGV[3] is not ''), the quota usage hashes, the lease hashes.
 * ARGV: holder, node-key prefix, emission interval ('' = no rate), burst tolerance, rate want,
 * the number of quota hashes and each one's up and down limit ('' = none), the number of
 * leases and each one's count after taking its want, max and want. Checks in the order the
 * in-process path refuses (quota, rate, leases) and writes only when all pass. Returns
 * {verdict, a, b, rate granted, lease granted 1..n, up1, down1, ...}: verdict 0 = admitted,
 * 1 = quota (a = index, b = 0 up / 1 down), 2 = rate (a = ms to wait), 3 = lease (a = index);
 * the grants (0 when refused); then the usage totals read. Integers only (RESP integers: no
 * string parsing in the node).
 */
const ADMIT = `${NOW_MS}
local holder = ARGV[1]
local np = ARGV[2]
local hasRate = ARGV[3] ~= ''
local nq = tonumber(ARGV[6])
local L = 7 + 2 * nq
local nl = tonumber(ARGV[L])
local k = 1
if hasRate then k = 2 end
local out = {0, 0, 0, 0}
for j = 1, nl do out[4 + j] = 0 end
local verdict = nil
for i = 1, nq do
  local u = redis.call('HMGET', KEYS[k], 'up', 'down')
  k = k + 1
  local up = tonumber(u[1] or '0')
  local down = tonumber(u[2] or '0')
  out[#out + 1] = up
  out[#out + 1] = down
  if not verdict then
    local lu = ARGV[5 + 2 * i]
    local ld = ARGV[6 + 2 * i]
    if lu ~= '' and up >= tonumber(lu) then verdict = {1, i, 0}
    elseif ld ~= '' and down >= tonumber(ld) then verdict = {1, i, 1} end
  end
end
if verdict then
  out[1] = verdict[1] out[2] = verdict[2] out[3] = verdict[3]
  return out
end
local nxt = 0
local gr = 0
if hasRate then
  local interval = tonumber(ARGV[3])
  local tolerance = tonumber(ARGV[4])
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  local wait = tat - tolerance - now
  if wait > 0.5 then
    out[1] = 2 out[2] = math.ceil(wait)
    return out
  end
  gr = math.min(tonumber(ARGV[5]), math.floor((now + tolerance + 0.5 - tat) / interval) + 1)
  nxt = tat + gr * interval
end
local counts = {}
for j = 1, nl do
  local key = KEYS[k + j - 1]
  local h = redis.call('HGETALL', key)
  local others = 0
  for i = 1, #h, 2 do
    if h[i] ~= holder then
      if redis.call('EXISTS', np .. h[i]) == 1 then others = others + tonumber(h[i + 1])
      else redis.call('HDEL', key, h[i]) end
    end
  end
  local want = tonumber(ARGV[L + 3 * j])
  local base = tonumber(ARGV[L + 3 * j - 2]) - want
  local avail = tonumber(ARGV[L + 3 * j - 1]) - others - base
  if avail < 1 then
    out[1] = 3 out[2] = j
    return out
  end
  local g = math.min(want, avail)
  out[4 + j] = g
  counts[j] = base + g
end
if hasRate then
  out[4] = gr
  redis.call('SET', KEYS[1], string.format('%.3f', nxt), 'PX', math.ceil(nxt - now) + 1)
end
for j = 1, nl do
  local key = KEYS[k + j - 1]
  redis.call('HSET', key, holder, counts[j])
  redis.call('PEXPIRE', key, 86400000)
end
return out`;

/**
 * A lockout in force, listed for the holders that could not hear it (`lockoutsInForce`):
 * KEYS[2], a sorted set of "name:key" by end time (Redis's clock), the hash of each at the
 * hash prefix + member. Ended ones are dropped; past ARGV[cap] those that end soonest go.
 * Expects `now`, `ms` (its length from now) and the member in scope.
 */
const LIST_LOCKOUT = `
redis.call('ZADD', KEYS[2], now + ms, member)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local over = redis.call('ZCARD', KEYS[2]) - cap
if over > 0 then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1) end
if redis.call('PTTL', KEYS[2]) < ms then redis.call('PEXPIRE', KEYS[2], ms) end`;

/**
 * A wrong credential, counted fleet-wide (net/auth-lockout-fleet.ts), as AuthLockout counts
 * it in one process: a fixed window from the first failure; at maxFailures a lockout of
 * lockoutMs, each next one of the same key doubled up to maxLockoutMs; while locked out a
 * failure is not counted (a check under way when the lockout began). KEYS[1]: the key's hash
 * (ws: window start, f: failures in it, until, last: last lockout's length, strikes); KEYS[2]:
 * the lockouts in force (LIST_LOCKOUT). ARGV: maxFailures, windowMs, lockoutMs, maxLockoutMs,
 * the store's id, the channel, limiter name, client key, address, the list's cap. The hash
 * expires once it says nothing (quiet for the window and, after a lockout, for as long again
 * as it lasted), so Redis forgets an address as a node does. A lockout is published in the
 * script (one round trip): id, name, ms, strike, failures, key, address, a line each. Returns
 * {ms left, strike, last lockout's length, failures, tripped}.
 */
const LOCKOUT = `${NOW_MS}
local h = redis.call('HMGET', KEYS[1], 'ws', 'f', 'until', 'last', 'strikes')
local maxf = tonumber(ARGV[1])
local win = tonumber(ARGV[2])
local ws = tonumber(h[1] or '-1')
local f = tonumber(h[2] or '0')
local untl = tonumber(h[3] or '0')
local last = tonumber(h[4] or '0')
local strikes = tonumber(h[5] or '0')
if untl > now then return {untl - now, strikes, last, 0, 0} end
if ws < 0 or now - ws >= win then
  ws = now
  f = 0
end
f = f + 1
if f < maxf then
  redis.call('HSET', KEYS[1], 'ws', ws, 'f', f)
  redis.call('PEXPIRE', KEYS[1], math.max(win, untl + last - now))
  return {0, strikes, last, f, 0}
end
local ms = tonumber(ARGV[3])
if last > 0 then ms = last * 2 end
ms = math.min(tonumber(ARGV[4]), ms)
strikes = strikes + 1
redis.call('HSET', KEYS[1], 'ws', now, 'f', 0, 'until', now + ms, 'last', ms, 'strikes', strikes)
redis.call('PEXPIRE', KEYS[1], math.max(win, 2 * ms))
local member = ARGV[7] .. ':' .. ARGV[8]
local cap = tonumber(ARGV[10])
${LIST_LOCKOUT}
redis.call('PUBLISH', ARGV[6], ARGV[5] .. '\\n' .. ARGV[7] .. '\\n' .. ms .. '\\n' .. strikes .. '\\n' .. f .. '\\n' .. ARGV[8] .. '\\n' .. ARGV[9])
return {ms, strikes, ms, f, 1}`;

/**
 * A lockout a node decided alone while Redis was away, still in force (net/auth-lockout-fleet.ts):
 * taken unless the key is locked out here until as late already (1 s of slack: the same
 * lockout heard by several nodes, pushed back by each), then listed and published as LOCKOUT
 * publishes one (failures 0). KEYS as LOCKOUT's. ARGV: ms left, its length, strike, windowMs,
 * the store's id, the channel, limiter name, client key, address, the list's cap. Returns 1
 * when taken.
 */
const IMPOSE = `${NOW_MS}
local h = redis.call('HMGET', KEYS[1], 'until', 'last', 'strikes')
local untl = tonumber(h[1] or '0')
local ms = tonumber(ARGV[1])
if untl > now and now + ms <= untl + 1000 then return 0 end
local last = math.max(tonumber(h[2] or '0'), tonumber(ARGV[2]))
local strikes = math.max(tonumber(h[3] or '0'), tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'ws', now, 'f', 0, 'until', now + ms, 'last', last, 'strikes', strikes)
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[4]), ms + last))
local member = ARGV[7] .. ':' .. ARGV[8]
local cap = tonumber(ARGV[10])
${LIST_LOCKOUT}
redis.call('PUBLISH', ARGV[6], ARGV[5] .. '\\n' .. ARGV[7] .. '\\n' .. ms .. '\\n' .. strikes .. '\\n0\\n' .. ARGV[8] .. '\\n' .. ARGV[9])
return 1`;

/**
 * The lockouts in force (KEYS[1], LIST_LOCKOUT's set), ended ones dropped. ARGV: the hash
 * prefix, the cap. Returns {member, ms left, last lockout's length, strike, ...}.
 */
const IN_FORCE = `${NOW_MS}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local m = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, k in ipairs(m) do
  local h = redis.call('HMGET', ARGV[1] .. k, 'until', 'last', 'strikes')
  local u = tonumber(h[1] or '0')
  if u > now then
    out[#out + 1] = k
    out[#out + 1] = u - now
    out[#out + 1] = tonumber(h[2] or '0')
    out[#out + 1] = tonumber(h[3] or '0')
  end
end
return out`;

type Scripted = Redis & {
  gwLockout(key: string, list: string, maxFailures: number, windowMs: number, lockoutMs: number, maxLockoutMs: number, id: string, channel: string, name: string, clientKey: string, address: string, cap: number): Promise<number[]>;
  gwImpose(key: string, list: string, ms: number, last: number, strike: number, windowMs: number, id: string, channel: string, name: string, clientKey: string, address: string, cap: number): Promise<number>;
  gwInForce(list: string, hashPrefix: string, cap: number): Promise<Array<string | number>>;
  gwAdmit(numKeys: number, ...keysAndArgs: Array<string | number>): Promise<number[]>;
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
  /** Lockouts of the fleet's wrong-credential count (`lockoutFailed`): their own channel. */
  readonly #lockoutChannel: string;
  readonly #lockoutListeners: Array<(news: LockoutNews) => void> = [];
  readonly #reachableListeners: Array<() => void> = [];
  readonly #subscribedListeners: Array<() => void> = [];
  /** The lockouts in force, listed (LIST_LOCKOUT). */
  readonly #lockoutList: string;
  /** The socket is corked until this turn ends (`#r`). */
  #corked = false;

  constructor(opts: RedisStoreOptions) {
    this.#prefix = opts.keyPrefix ?? 'gatewise:';
    this.#channel = `${this.#prefix}cooldown`;
    this.#lockoutChannel = `${this.#prefix}lockout`;
    this.#lockoutList = `${this.#prefix}lockouts`;
    const common = {
      connectTimeout: opts.connectTimeoutMs ?? 2000,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      // Reconnect forever, at most every 2 s.
      retryStrategy: (times: number) => Math.min(100 * times, 2000),
      lazyConnect: false,
    };
    // No auto-pipelining: with it every command goes through a new ioredis Pipeline (a
    // dozen properties copied per defined script, a promise, an exec), and the commands this
    // store sends are few (credit blocks: ~0.13 per tunnel, from timers and batches). A lone
    // EVALSHA cost 125–180 µs of CPU with it and 67–80 µs without (this machine, 5,000
    // sequential calls each; docs/benchmarks.md section 15). What auto-pipelining gave, the
    // commands of one turn in one write (Redis then runs them back to back, as the GCRA
    // tests expect of a burst), `#r()` keeps by corking the socket until the turn ends.
    this.#redis = new Redis(opts.url, { ...common, enableAutoPipelining: false }) as Scripted;
    this.#redis.defineCommand('gwIncr', { numberOfKeys: 1, lua: INCR_TTL });
    this.#redis.defineCommand('gwRate', { numberOfKeys: 1, lua: RATE });
    this.#redis.defineCommand('gwSession', { numberOfKeys: 1, lua: SESSION });
    this.#redis.defineCommand('gwLease', { numberOfKeys: 1, lua: LEASE });
    this.#redis.defineCommand('gwLockout', { numberOfKeys: 2, lua: LOCKOUT });
    this.#redis.defineCommand('gwImpose', { numberOfKeys: 2, lua: IMPOSE });
    this.#redis.defineCommand('gwInForce', { numberOfKeys: 1, lua: IN_FORCE });
    // The number of keys varies (rate cell, quota hashes, leases): given first at each call.
    this.#redis.defineCommand('gwAdmit', { lua: ADMIT });
    // ioredis reports connection errors as 'error' events; SharedState logs the state change.
    this.#redis.on('error', () => {});
    this.#redis.on('ready', () => {
      for (const l of this.#reachableListeners) l();
    });
    this.#sub = new Redis(opts.url, { ...common, enableOfflineQueue: true });
    this.#sub.on('error', () => {});
    this.#sub.on('message', (ch: string, msg: string) => (ch === this.#lockoutChannel ? this.#onLockout(msg) : this.#onMessage(msg)));
    void this.#sub.subscribe(this.#channel, this.#lockoutChannel).catch(() => {});
    // Each (re)connection: subscribed again (ioredis does too; twice is harmless), and once
    // Redis confirms it, the listeners learn what was published while nobody here listened.
    this.#sub.on('ready', () => {
      this.#sub.subscribe(this.#channel, this.#lockoutChannel).then(
        () => {
          for (const l of this.#subscribedListeners) l();
        },
        () => {},
      );
    });
  }

  /**
   * The client, its socket corked until the end of this turn: every command sent in the
   * turn leaves in one write (a writev), as with ioredis' auto-pipelining but without a
   * Pipeline per turn. Nothing is corked while the client is not ready (ioredis then
   * refuses the command itself: no offline queue).
   */
  #r(): Scripted {
    const r = this.#redis;
    if (!this.#corked && r.status === 'ready') {
      const stream = (r as unknown as { stream?: { cork(): void; uncork(): void } }).stream;
      if (stream !== undefined) {
        stream.cork();
        this.#corked = true;
        process.nextTick(() => {
          this.#corked = false;
          stream.uncork();
        });
      }
    }
    return r;
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

  #onLockout(msg: string): void {
    // id, name, ms, strike, failures, key, address: a line each (LOCKOUT).
    const p = msg.split('\n');
    if (p.length !== 7 || p[0] === this.#id) return;
    const ms = Number(p[2]);
    const strike = Number(p[3]);
    const failures = Number(p[4]);
    if (!(ms > 0) || !Number.isFinite(ms) || !Number.isFinite(strike) || !Number.isFinite(failures)) return;
    const news: LockoutNews = { name: p[1]!, key: p[5]!, address: p[6]!, ms, strike, failures };
    for (const l of this.#lockoutListeners) l(news);
  }

  async lockoutFailed(name: string, key: string, address: string, s: LockoutCounting): Promise<LockoutVerdict> {
    const r = await this.#r().gwLockout(`${this.#prefix}lockout:${name}:${key}`, this.#lockoutList, s.maxFailures, s.windowMs, s.lockoutMs, s.maxLockoutMs, this.#id, this.#lockoutChannel, name, key, address, LOCKOUTS_KEPT);
    return { ms: r[0]!, strike: r[1]!, lastLockoutMs: r[2]!, failures: r[3]!, tripped: r[4] === 1 };
  }

  onLockout(listener: (news: LockoutNews) => void): void {
    this.#lockoutListeners.push(listener);
  }

  async lockoutsInForce(): Promise<LockoutNews[]> {
    const r = await this.#r().gwInForce(this.#lockoutList, `${this.#prefix}lockout:`, LOCKOUTS_KEPT);
    const out: LockoutNews[] = [];
    for (let i = 0; i + 3 < r.length; i += 4) {
      // "name:key": the name has no colon, an IPv6 key has some.
      const member = String(r[i]);
      const c = member.indexOf(':');
      const ms = Number(r[i + 1]);
      if (c <= 0 || !(ms > 0)) continue;
      const key = member.slice(c + 1);
      out.push({ name: member.slice(0, c), key, address: key, ms, strike: Number(r[i + 3]), failures: 0, lastLockoutMs: Number(r[i + 2]) });
    }
    return out;
  }

  async lockoutImpose(name: string, key: string, address: string, l: { ms: number; lastLockoutMs: number; strike: number }, s: LockoutCounting): Promise<boolean> {
    const r = await this.#r().gwImpose(`${this.#prefix}lockout:${name}:${key}`, this.#lockoutList, Math.ceil(l.ms), l.lastLockoutMs, l.strike, s.windowMs, this.#id, this.#lockoutChannel, name, key, address, LOCKOUTS_KEPT);
    return r === 1;
  }

  onLockoutSubscribed(listener: () => void): void {
    this.#subscribedListeners.push(listener);
  }

  incrby(key: string, n: number, ttlMs?: number): Promise<number> {
    return this.#r().gwIncr(this.#prefix + key, n, ttlMs ?? 0, '');
  }

  async get(key: string): Promise<number | undefined> {
    const v = await this.#r().get(this.#prefix + key);
    return v === null ? undefined : Number(v);
  }

  hincrby(key: string, field: string, n: number, ttlMs?: number): Promise<number> {
    return this.#r().gwIncr(this.#prefix + key, n, ttlMs ?? 0, field);
  }

  async hgetall(key: string): Promise<Record<string, number>> {
    const h = await this.#r().hgetall(this.#prefix + key);
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(h)) out[k] = Number(v);
    return out;
  }

  async keys(prefix: string): Promise<string[]> {
    const out: string[] = [];
    let cursor = '0';
    const match = `${this.#prefix}${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
    do {
      const [next, batch] = await this.#r().scan(cursor, 'MATCH', match, 'COUNT', 500);
      cursor = next;
      for (const k of batch) out.push(k.slice(this.#prefix.length));
    } while (cursor !== '0');
    return out;
  }

  async pttl(key: string): Promise<number | undefined> {
    const v = await this.#r().pttl(this.#prefix + key);
    return v < 0 ? undefined : v;
  }

  async del(key: string): Promise<void> {
    await this.#r().del(this.#prefix + key);
  }

  rate(key: string, perSecond: number, burst: number): Promise<number> {
    const interval = 1000 / perSecond;
    return this.#r().gwRate(this.#prefix + key, interval, interval * Math.max(0, burst - 1));
  }

  async sessionPick(key: string, candidate: string, unusable: readonly string[], ttlMs: number, idleMs: number): Promise<SessionPick | undefined> {
    const r = await this.#r().gwSession(`${this.#prefix}sess:${key}`, candidate, ttlMs, idleMs, unusable.join('\n'));
    return r === null ? undefined : { exitId: r[0], repinned: r[1] === 1 };
  }

  async leaseAcquire(key: string, holder: string, count: number, max: number): Promise<boolean> {
    return (await this.#r().gwLease(`${this.#prefix}lease:${key}`, holder, count, max, `${this.#prefix}node:`)) === 1;
  }

  async admit(ask: StoreAdmitAsk): Promise<StoreAdmitAnswer> {
    const p = this.#prefix;
    const keys: string[] = [];
    const args: Array<string | number> = [ask.holder, `${p}node:`];
    if (ask.rate) {
      const interval = 1000 / ask.rate.perSecond;
      keys.push(p + ask.rate.key);
      args.push(interval, interval * Math.max(0, ask.rate.burst - 1), ask.rate.want ?? 1);
    } else args.push('', '', 0);
    args.push(ask.quota.length);
    for (const q of ask.quota) {
      keys.push(p + q.key);
      args.push(q.up ?? '', q.down ?? '');
    }
    const nl = ask.leases.length;
    args.push(nl);
    for (const l of ask.leases) {
      keys.push(`${p}lease:${l.key}`);
      args.push(l.count, l.max, l.want ?? 1);
    }
    const r = await this.#r().gwAdmit(keys.length, ...keys, ...args);
    const usage: Array<{ up: number; down: number }> = [];
    for (let i = 4 + nl; i + 1 < r.length; i += 2) usage.push({ up: r[i]!, down: r[i + 1]! });
    switch (r[0]) {
      case 0: {
        const leases: number[] = [];
        for (let j = 0; j < nl; j++) leases.push(r[4 + j]!);
        return { ok: true, usage, granted: { rate: r[3]!, leases } };
      }
      case 1:
        return { ok: false, refused: 'quota', index: r[1]! - 1, dir: r[2] === 1 ? 'down' : 'up', usage };
      case 2:
        return { ok: false, refused: 'rate', waitMs: r[1]!, usage };
      default:
        return { ok: false, refused: 'lease', index: r[1]! - 1, usage };
    }
  }

  async leaseSet(key: string, holder: string, count: number): Promise<void> {
    const k = `${this.#prefix}lease:${key}`;
    if (count > 0) await this.#r().hset(k, holder, count);
    else await this.#r().hdel(k, holder);
  }

  async heartbeat(holder: string, ttlMs: number): Promise<void> {
    await this.#r().set(`${this.#prefix}node:${holder}`, '1', 'PX', ttlMs);
  }

  async publishCooldown(scope: string, forMs: number): Promise<void> {
    await this.#r().publish(this.#channel, `${this.#id}\n${forMs}\n${scope}`);
  }

  onCooldown(listener: (scope: string, forMs: number) => void): void {
    this.#cooldownListeners.push(listener);
  }

  async close(): Promise<void> {
    this.#redis.disconnect();
    this.#sub.disconnect();
  }
}

import { channel } from 'node:diagnostics_channel';
import CachePolicy from 'http-cache-semantics';
import { deltaSeconds, parseCacheControl, type Directives } from './cache-control.js';
import { Collapser } from './collapse.js';
import { CacheEntry, type VaryValues } from './entry.js';
import { routeOfKey, type CacheStore } from './memory-store.js';
import type { DiskTier } from './disk-store.js';
import type { Forward } from './cache-status.js';

/** Request header values as Node gives them. */
export type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>;

/** What a route's cache is allowed to do (compiled from `routes[].cache`). */
export interface RouteCache {
  /** The store and the collapsing of the gateway's one cache. */
  readonly cache: ResponseCache;
  /** The route's name: part of its keys (`cacheKey`), so no other route answers from its responses. */
  readonly route: string;
  /** Failure types (RFC 9209) and upstream statuses ("502") a stale copy may answer for, without the response's stale-if-error. */
  readonly serveStaleOn: ReadonlySet<string>;
  /** How stale a copy may be to answer for a `serveStaleOn` failure, ms. */
  readonly maxStaleMs: number;
  /** How long a miss waits for another request for the same key to fill it (0: no collapsing), ms. */
  readonly collapseWaitMs: number;
  /** Responses with larger bodies are passed through and not stored, bytes. */
  readonly maxObjectBytes: number;
  /** A GET or HEAD sent upstream with `Authorization` / `Cookie` passes the store by (`bypassOn`). */
  readonly bypassAuthorization: boolean;
  readonly bypassCookie: boolean;
}

/** The outcome of a lookup. */
export type Lookup =
  | { readonly kind: 'fresh'; readonly entry: CacheEntry }
  /** Stale, and the response allows answering with it while it is revalidated (RFC 5861 §3). */
  | { readonly kind: 'revalidate-behind'; readonly entry: CacheEntry }
  /**
   * Go forward. `entry`: a stored response that matched and may be validated (a
   * conditional request) and may answer for an error (stale-if-error).
   */
  | { readonly kind: 'forward'; readonly fwd: Forward; readonly entry: CacheEntry | undefined; readonly variants?: readonly CacheEntry[] }
  /** Not in memory but on disk: `load` it, then look again. */
  | { readonly kind: 'on-disk' };

/**
 * A store under way: a response for `key` still being received (a client's miss, a background
 * revalidation) or a disk read of it. A purge or an invalidation that covers the key marks it
 * cancelled, and what it brings is then not stored (`ResponseCache.begin`).
 */
export class StoreTicket {
  cancelled = false;
  constructor(readonly key: string) {}
}

/**
 * The one rule that names a store refused for its size (a `Content-Length` or a body over the
 * route's `maxObjectSize`, or larger than the whole store) when a purge may also have cancelled
 * it, called at the moment the size refuses it: the first to decide the store names it. A purge
 * (the operator's act) that arrived before names it `purged`, whatever the size; one that comes
 * after the size refused the store changes nothing: `too-large`. A client's request
 * (`gateway/cache-phase.ts`) and a background revalidation (`gateway/revalidation.ts`) both go
 * by it, and record the word as their `StoreRefusal` / `RevalidationResult`; before, the
 * revalidation said `purged` for a purge at any time before its end, and the same race was named
 * by the path that ran it (test/cache/store-refused-race.test.ts).
 */
export function refusedForSize(ticket: StoreTicket | undefined): 'too-large' | 'purged' {
  return ticket?.cancelled === true ? 'purged' : 'too-large';
}

/** What became of a stored response freshened by a 304 or a HEAD answer (`ResponseCache.keepUpdated`). */
export type UpdateResult = 'kept' | 'dropped' | 'too-large' | 'cancelled';

/** Why a stale copy may answer for a failure, or undefined when it may not. */
export type StaleReason = 'stale-if-error' | 'serve-stale-on';

/**
 * One message per key forgotten by a purge by key or an invalidation (`ResponseCache.invalidate`):
 * `{ key, held }` (`held`: it had stored responses). For tests and tools that count what an
 * unsafe request or a purge touched; published only while someone listens.
 */
export const INVALIDATE_CHANNEL = 'gatewise:cache:invalidate';
const invalidateChannel = channel(INVALIDATE_CHANNEL);

/** The statuses http-cache-semantics stores (its `understoodStatuses`). */
const UNDERSTOOD = new Set([200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501]);

/** Upstream statuses that count as errors for stale-if-error (RFC 5861 §4). */
const ERROR_STATUSES = new Set([500, 502, 503, 504]);

/**
 * The gateway's one response cache (RFC 9111, shared): the store, the rules for what may be
 * stored and reused, and request collapsing. It knows nothing of sockets: the reverse
 * gateway's cache phase (`gateway/cache-phase.ts`) asks it and writes the answers.
 */
export class ResponseCache {
  readonly store: CacheStore;
  /** The optional disk tier (`cache.dir`). */
  readonly disk: DiskTier | undefined;
  readonly collapser = new Collapser();

  constructor(store: CacheStore, disk?: DiskTier) {
    this.store = store;
    this.disk = disk;
  }

  /** The stored response a request may use, and how (RFC 9111 §4). `disk`: a key only on disk answers 'on-disk'. */
  lookup(key: string, headers: RequestHeaders, now: number, disk = true): Lookup {
    const list = this.store.get(key);
    if (list === undefined || list.length === 0) {
      if (disk && this.disk !== undefined && this.disk.has(key)) return { kind: 'on-disk' };
      return { kind: 'forward', fwd: 'uri-miss', entry: undefined };
    }
    let entry: CacheEntry | undefined;
    for (const e of list) {
      if (e.matches(varyValuesOf(e.vary, headers))) {
        entry = e;
        break;
      }
    }
    // Stored, but for other values of the Vary fields: their entity tags may still be sent
    // (RFC 9111 §4.3.1), and a 304 naming one selects it for this request too.
    if (entry === undefined) return { kind: 'forward', fwd: 'vary-miss', entry: undefined, variants: list };
    const req = requestDirectives(headers);
    if (req.has('no-cache')) return { kind: 'forward', fwd: 'request', entry };
    const ttl = entry.ttlMs(now);
    const age = entry.ageMs(now);
    const maxAge = deltaSeconds(req, 'max-age');
    if (maxAge !== undefined && age > maxAge * 1000) return { kind: 'forward', fwd: 'request', entry };
    const minFresh = deltaSeconds(req, 'min-fresh');
    if (minFresh !== undefined && ttl < minFresh * 1000) return { kind: 'forward', fwd: 'request', entry };
    if (ttl > 0) return { kind: 'fresh', entry };
    // Stale (§4.2.4).
    if (!entry.noStale) {
      if (req.has('max-stale')) {
        const ms = deltaSeconds(req, 'max-stale');
        if (ms === undefined || -ttl <= ms * 1000) return { kind: 'fresh', entry };
      }
      const swr = deltaSeconds(entry.cc, 'stale-while-revalidate');
      if (swr !== undefined && -ttl <= swr * 1000) return { kind: 'revalidate-behind', entry };
    }
    return { kind: 'forward', fwd: 'stale', entry };
  }

  /**
   * Whether a stale copy may answer instead of a failure (`cause`: an RFC 9209 error type)
   * or an upstream error status (`status`). RFC 5861 §4 stale-if-error (in the response or
   * the request) for any failure or 500/502/503/504, within its window; or the route's
   * `serveStaleOn` list within `maxStale`. Never for a response that forbids serving it
   * stale (must-revalidate, proxy-revalidate, no-cache, s-maxage: §4.2.4, §5.2.2).
   */
  staleAllowed(entry: CacheEntry, headers: RequestHeaders, route: RouteCache, cause: string | undefined, status: number | undefined, now: number): StaleReason | undefined {
    if (entry.noStale) return undefined;
    const staleMs = Math.max(0, -entry.ttlMs(now));
    const isError = cause !== undefined || (status !== undefined && ERROR_STATUSES.has(status));
    if (isError) {
      const sie = deltaSeconds(entry.cc, 'stale-if-error');
      if (sie !== undefined && staleMs <= sie * 1000) return 'stale-if-error';
      const reqSie = deltaSeconds(requestDirectives(headers), 'stale-if-error');
      if (reqSie !== undefined && staleMs <= reqSie * 1000) return 'stale-if-error';
    }
    const name = cause ?? (status !== undefined ? String(status) : undefined);
    if (name !== undefined && route.serveStaleOn.has(name) && staleMs <= route.maxStaleMs) return 'serve-stale-on';
    return undefined;
  }

  /**
   * Whether a response may be stored (RFC 9111 §3), by http-cache-semantics' `storable()`
   * (method, status understood, no-store in request or response, private, Authorization
   * §3.5, explicit freshness or a status cacheable by default), plus what it leaves out:
   * only GET responses are stored (a HEAD answer has no body for a later GET), no partial
   * content (§3.3 lets a cache combine parts; this one does not), never `Vary: *` (it can
   * never be selected), and no `Set-Cookie` (`storeVerdict`). Where the library is narrower
   * than RFC 9111: it stores only the statuses it lists as understood, while §3 stores any
   * final status whose response has explicit freshness (max-age, s-maxage, Expires, public);
   * such a response is asked about as a 200.
   */
  storable(method: string, url: string, headers: RequestHeaders, status: number, responseHeaders: Record<string, string>): boolean {
    return this.storeVerdict(method, url, headers, status, responseHeaders) === 'store';
  }

  /**
   * `storable`, and when a response the rules of §3 would store is refused for its `Set-Cookie`,
   * says so: `set-cookie` (a `StoreRefusal`). Whatever its Cache-Control (`public`, `s-maxage`
   * too), a response with `Set-Cookie` is not stored: stored, one client's cookie went to every
   * client the store answered (session fixation, one account's session in another's browser;
   * finding, session 37: before, `public` was enough to store it). RFC 9111 allows storing it;
   * nginx (proxy_cache, short of `proxy_ignore_headers Set-Cookie`) and Varnish (hit-for-miss)
   * never store it by default. The one exception is the origin's own word that the rest of the
   * response is shared, `no-cache="set-cookie"` (§5.2.2.4): stored, and the field is never
   * stored nor answered from the store (`withoutSetCookie`, cache/answer.ts).
   */
  storeVerdict(method: string, url: string, headers: RequestHeaders, status: number, responseHeaders: Record<string, string>): 'store' | 'unstorable' | 'set-cookie' {
    if (!this.#storable(method, url, headers, status, responseHeaders)) return 'unstorable';
    if (responseHeaders['set-cookie'] !== undefined && !omitsSetCookie(responseHeaders['cache-control'])) return 'set-cookie';
    return 'store';
  }

  #storable(method: string, url: string, headers: RequestHeaders, status: number, responseHeaders: Record<string, string>): boolean {
    if (method !== 'GET' || status === 206 || status === 304 || status < 200) return false;
    const vary = responseHeaders.vary;
    if (vary !== undefined && vary.split(',').some((v) => v.trim() === '*')) return false;
    const cc = parseCacheControl(responseHeaders['cache-control']);
    let asked = responseHeaders;
    if (cc.has('must-understand')) {
      // RFC 9111 §5.2.2.3 (http-cache-semantics 4.3 does not know it): stored only by a cache
      // that understands the status's caching rules, and then its no-store is ignored.
      if (!UNDERSTOOD.has(status)) return false;
      asked = { ...responseHeaders, 'cache-control': withoutDirective(responseHeaders['cache-control']!, 'no-store') };
    }
    const explicit = cc.has('max-age') || cc.has('s-maxage') || cc.has('public') || responseHeaders.expires !== undefined;
    const askedStatus = !UNDERSTOOD.has(status) && explicit ? 200 : status;
    const policy = new CachePolicy({ method, url, headers: headers as Record<string, string> }, { status: askedStatus, headers: asked }, { shared: true });
    return policy.storable();
  }

  /**
   * A store of `key` starts (the request goes upstream, a revalidation or a disk read starts):
   * a purge or invalidation of the key from now until `finish` cancels it. Before (adversarial
   * review, session 30), a response still streaming when its key was purged was stored when it
   * ended, and the purged content answered again; a revalidation answered after a purge put the
   * purged response back.
   */
  begin(key: string): StoreTicket {
    const t = new StoreTicket(key);
    const set = this.#underway.get(key);
    if (set === undefined) this.#underway.set(key, new Set([t]));
    else set.add(t);
    return t;
  }

  /** The store `t` is over (stored, not stored, or the exchange ended). */
  finish(t: StoreTicket): void {
    const set = this.#underway.get(t.key);
    if (set !== undefined && set.delete(t) && set.size === 0) this.#underway.delete(t.key);
  }

  /** The stores under way, by key. */
  readonly #underway = new Map<string, Set<StoreTicket>>();

  /** How many keys have a store under way (none once every request and revalidation has ended). */
  get keysUnderway(): number {
    return this.#underway.size;
  }

  #cancel(key: string): void {
    const set = this.#underway.get(key);
    if (set !== undefined) for (const t of set) t.cancelled = true;
  }

  /** Cancel the stores under way of the keys that start with `prefix` (of one `route`'s keys only, when given). */
  #cancelPrefix(prefix: string, route?: string): void {
    for (const [key, set] of this.#underway) if (key.startsWith(prefix) && (route === undefined || routeOfKey(key) === route)) for (const t of set) t.cancelled = true;
  }

  /**
   * Keep a response; false when the store cannot (larger than the whole store: nothing is
   * changed, the key's stored responses stay as they were) or when `ticket`, its store, was
   * cancelled by a purge. The disk tier gets only what memory took: before session 33 it wrote
   * a response memory had refused over the key's file, where it could never be read back into
   * memory (each read of it put nothing back) and stood in for the response still in memory.
   */
  put(entry: CacheEntry, ticket?: StoreTicket): boolean {
    if (ticket?.cancelled === true) return false;
    if (!this.store.put(entry)) return false;
    this.disk?.save(entry);
    return true;
  }

  /**
   * A stored response freshened by a 304 or a HEAD answer (RFC 9111 §4.3.4, §4.3.5), kept only
   * when it may still be stored: the update's fields replace the stored ones, so its
   * `Set-Cookie`, `private` or `no-store` now describe the stored response. Such an update was
   * kept before, and one client's session cookie from a 304 was served from the store to every
   * client (adversarial review, session 30). When it may not be kept, the key's stored
   * responses are dropped (the request that brought it is still answered with it).
   * `responseHeaders`: the entry's fields as `storable` reads them (with the update's Set-Cookie,
   * which the entry never keeps); `mayStore` false: not kept whatever they say (its new Vary
   * names a field the gateway altered). A `ticket` a purge
   * cancelled keeps nothing and drops nothing (the purge did). What became of it: `kept`,
   * `dropped`, `too-large` (the update's fields made it larger than the whole store, which
   * refused it: the stored response stays as it was; before session 33 a revalidation said
   * `dropped` for it) or `cancelled`.
   */
  keepUpdated(entry: CacheEntry, url: string, headers: RequestHeaders, responseHeaders: Record<string, string>, ticket?: StoreTicket, mayStore = true): UpdateResult {
    if (ticket?.cancelled === true) return 'cancelled';
    if (mayStore && this.storable('GET', url, headers, entry.status, responseHeaders)) return this.put(entry) ? 'kept' : 'too-large';
    this.#drop(entry.key);
    return 'dropped';
  }

  /**
   * Read a key's responses back from disk into memory (oldest first, so the newest ends first).
   * One read per key at a time: the requests that miss in memory meanwhile wait for it. Before
   * (adversarial review, session 30), 60 concurrent requests for a 4 MB key on disk made 60
   * whole-file reads at once, 60 copies in memory beyond `cache.maxSize`. A read the key was
   * purged or invalidated during puts nothing back (it put the purged response in memory).
   */
  load(key: string): Promise<void> {
    let p = this.#loading.get(key);
    if (p === undefined) {
      p = this.#read(key).finally(() => this.#loading.delete(key));
      this.#loading.set(key, p);
    }
    return p;
  }

  readonly #loading = new Map<string, Promise<void>>();

  async #read(key: string): Promise<void> {
    const disk = this.disk;
    if (disk === undefined) return;
    const ticket = this.begin(key);
    try {
      const list = await disk.load(key);
      // Purged or invalidated while it was read: not put back.
      if (ticket.cancelled || !disk.has(key)) return;
      for (let i = list.length - 1; i >= 0; i--) this.store.put(list[i]!);
    } finally {
      this.finish(ticket);
    }
  }

  /** Forget a key (one route's responses for one target), and cancel its stores under way (a purge, an invalidation). */
  invalidate(key: string): boolean {
    this.#cancel(key);
    const held = this.#drop(key);
    if (invalidateChannel.hasSubscribers) invalidateChannel.publish({ key, held });
    return held;
  }

  /** Forget a key's stored responses (memory and disk). */
  #drop(key: string): boolean {
    const onDisk = this.disk?.delete(key) ?? false;
    return this.store.delete(key) || onDisk;
  }

  /** The routes that store here (their names end their keys), each with the origin server it sends to (its cluster). */
  readonly #routes = new Map<string, string>();

  /** The routes that rewrite the path they send: the client paths (their keys' space) of an upstream path. */
  readonly #clientPaths = new Map<string, (upstreamPath: string) => readonly string[]>();

  /** The routes whose keys hold one casing of what their clients may spell in any (`KeyCasing`). */
  readonly #casings = new Map<string, KeyCasing>();

  /**
   * A route with a cache stores here (`compileRoute`), answered by `origin` (its cluster's name; a
   * reload may change it). `clientPaths`: for a route that rewrites its prefix, the client paths
   * an upstream path comes from (gateway/router.ts `clientPaths`). `casing`: for a
   * `caseInsensitive` route that rewrites its prefix, how a purge's path is spelled in its keys.
   */
  addRoute(name: string, origin: string, clientPaths?: (upstreamPath: string) => readonly string[], casing?: KeyCasing): void {
    this.#routes.set(name, origin);
    if (clientPaths === undefined) this.#clientPaths.delete(name);
    else this.#clientPaths.set(name, clientPaths);
    if (casing === undefined) this.#casings.delete(name);
    else this.#casings.set(name, casing);
  }

  /**
   * Forget what an upstream path names (`host`, and a normalised path and query in the upstream's
   * space: a `Location` after an unsafe request) on the routes to `origin`, each in its own key
   * space: a route that rewrites its prefix maps it back to its clients' paths (review of session
   * 38: a stripped route's keys were never named). Returns how many keys held it.
   */
  invalidateUpstream(host: string, upstreamPath: string, origin: string): number {
    const keys = new Set<string>();
    this.upstreamKeys(host, upstreamPath, origin, keys);
    return this.invalidateKeys(keys);
  }

  /** The keys (without the https mark) `invalidateUpstream` forgets, added to `into`. */
  upstreamKeys(host: string, upstreamPath: string, origin: string, into: Set<string>): void {
    for (const [route, o] of this.#routes) {
      if (o !== origin) continue;
      const map = this.#clientPaths.get(route);
      for (const p of map === undefined ? [upstreamPath] : map(upstreamPath)) into.add(cacheKey(targetKey(host, p), route));
    }
  }

  /**
   * Forget a target (`targetKey`: host and path) on every route, or, with `origin`, on the routes
   * that send to that origin server only: RFC 9111 §4.4 invalidation after an unsafe request
   * (what another cluster answered is not that origin's to invalidate; review of session 37), or
   * a purge by key (every route). Returns how many keys (routes) held it.
   */
  invalidateTarget(target: string, origin?: string): number {
    const keys = new Set<string>();
    this.targetKeys(target, keys, origin);
    return this.invalidateKeys(keys);
  }

  /**
   * The keys (without the https mark) `invalidateTarget` forgets, added to `into`: on a route with
   * a `KeyCasing`, the target's path as the route keys it (a purge by key or an unsafe request
   * spelled `/API/items/7`, on a route configured `/Api/`, names the key `/Api/items/7`).
   */
  targetKeys(target: string, into: Set<string>, origin?: string): void {
    const bare = withoutScheme(target);
    const slash = bare.indexOf('/');
    for (const [route, o] of this.#routes) {
      if (origin !== undefined && o !== origin) continue;
      const casing = slash < 0 ? undefined : this.#casings.get(route);
      into.add(cacheKey(casing === undefined ? bare : bare.slice(0, slash) + casing.keyPath(bare.slice(slash)), route));
    }
  }

  /**
   * Forget keys (without the https mark), each on plain and https listeners alike, once: what
   * an unsafe request names is gathered first (session 39: a route without a rewrite had its key
   * forgotten twice, as the client's target and as the upstream path). How many keys held one.
   */
  invalidateKeys(keys: Iterable<string>): number {
    let n = 0;
    for (const k of keys) n += (this.invalidate(k) ? 1 : 0) + (this.invalidate(HTTPS_TARGET + k) ? 1 : 0);
    return n;
  }

  /**
   * Forget every key that starts with `prefix` (a target prefix: on plain and https listeners
   * alike), and cancel their stores under way. On a route with a `KeyCasing`, the keys of the
   * route that start with the prefix as the route spells it too (`/api/` on a route configured
   * `/Api/`: its keys `/Api/...`, and nothing of another route).
   */
  purgePrefix(prefix: string): number {
    const bare = withoutScheme(prefix);
    let n = this.#purgePrefix(bare, undefined);
    const slash = bare.indexOf('/');
    if (slash >= 0) {
      for (const [route, casing] of this.#casings) {
        const spelled = casing.keyPrefix(bare.slice(slash));
        if (spelled !== undefined) n += this.#purgePrefix(bare.slice(0, slash) + spelled, route);
      }
    }
    return n;
  }

  /** `purgePrefix` of one spelling (of one route's keys only, when given), on both schemes. */
  #purgePrefix(bare: string, route: string | undefined): number {
    let n = 0;
    for (const p of [bare, HTTPS_TARGET + bare]) {
      this.#cancelPrefix(p, route);
      const mem = this.store.deletePrefix(p, route);
      const disk = this.disk?.deletePrefix(p, route) ?? 0;
      n += Math.max(mem, disk);
    }
    return n;
  }
}

/**
 * How a `caseInsensitive` route that strips or rewrites its prefix spells a purge's path in its
 * keys, which hold its prefix as configured whatever the client's casing (gateway/router.ts
 * `routeKeyPath`, `routeKeyPrefix`).
 */
export interface KeyCasing {
  /** A normalised path and query as the route keys it. */
  keyPath(path: string): string;
  /** A path prefix as the route's keys spell it, or undefined when it names nothing else on the route. */
  keyPrefix(prefix: string): string | undefined;
}

/** Whether a response's Cache-Control says `no-cache="set-cookie"` (the field named in any case, among others). */
function omitsSetCookie(value: string | undefined): boolean {
  const v = parseCacheControl(value).get('no-cache');
  return typeof v === 'string' && v.split(',').some((f) => f.trim().toLowerCase() === 'set-cookie');
}

/** Header pairs without their Set-Cookie fields: what the store keeps of a response it may store. */
export function withoutSetCookie(pairs: string[]): string[] {
  let i = 0;
  while (i < pairs.length && pairs[i]!.length !== 10) i += 2;
  if (i >= pairs.length) return pairs;
  const out: string[] = [];
  for (let j = 0; j < pairs.length; j += 2) if (pairs[j]!.toLowerCase() !== 'set-cookie') out.push(pairs[j]!, pairs[j + 1]!);
  return out;
}

/** A Cache-Control value without one directive (by name, any case, with or without a value). */
function withoutDirective(value: string, name: string): string {
  return value
    .split(',')
    .filter((d) => d.split('=')[0]!.trim().toLowerCase() !== name)
    .join(',');
}

/** The request's Cache-Control. `Pragma` is not read: RFC 9111 §5.4 deprecates it and dropped its no-cache meaning. */
export function requestDirectives(headers: RequestHeaders): Directives {
  return parseCacheControl(headers['cache-control']);
}

/**
 * The request's values of the Vary fields, normalised (RFC 9111 §4.1: whitespace around
 * list commas and combined field lines do not make a difference).
 */
export function varyValuesOf(vary: readonly string[], headers: RequestHeaders): VaryValues {
  if (vary.length === 0) return NO_VALUES;
  const out: Array<string | undefined> = [];
  for (const name of vary) {
    const v = headers[name];
    if (v === undefined) {
      out.push(undefined);
      continue;
    }
    const joined = Array.isArray(v) ? v.join(',') : v;
    out.push(joined.split(',').map((s) => s.trim()).join(','));
  }
  return out;
}

const NO_VALUES: VaryValues = [];

/** What starts the target of a request on an https listener in a key (`targetKey` after it): the same route on a plain and a TLS listener keeps two copies. */
export const HTTPS_TARGET = 'https://';

/** A target (or a prefix of one) without the https mark: what purges and invalidation name, for both schemes. */
function withoutScheme(target: string): string {
  return target.startsWith(HTTPS_TARGET) ? target.slice(HTTPS_TARGET.length) : target;
}

/** A request's target as the cache names it: lower-case host and the normalised path with its query (what a purge by key gives). */
export function targetKey(host: string, path: string): string {
  return host.toLowerCase() + path;
}

/**
 * The cache key of a request: its target, then the route that answers it. Routes share one
 * store, and two routes can answer the same target (one chosen by a header match, to another
 * cluster): keyed by target alone, a response of one was a hit for the other (finding,
 * adversarial review, session 29). A target has no space, so a purge by prefix of targets
 * still finds every route's keys.
 */
export function cacheKey(target: string, route: string): string {
  return target + ' ' + route;
}

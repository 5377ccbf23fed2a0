import { deltaSeconds, httpDate, parseCacheControl, type Directives } from './cache-control.js';

/** Statuses a cache may give a heuristic freshness lifetime (RFC 9110 §15.1 "heuristically cacheable"). */
const HEURISTIC_STATUSES = new Set([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501]);

/** The heuristic fraction of the time since Last-Modified (RFC 9111 §4.2.2 suggests at most 10 %). */
const HEURISTIC_FRACTION = 0.1;

/**
 * The longest heuristic lifetime: a day (Traffic Server's `heuristic_max_lifetime`; Squid's is
 * three days; RFC 7234 §4.2.2 had a cache warn once a heuristic age passed 24 hours). Unbounded
 * before session 37: a 404 with a Last-Modified 26 years old was fresh for 2.6 years, on no
 * word of the origin's. Explicit freshness is never capped.
 */
const HEURISTIC_MAX_MS = 86_400_000;

/** Request header values a stored response was selected with, for its Vary fields. */
export type VaryValues = ReadonlyArray<string | undefined>;

/** What a stored response is made from: the fields of `CacheEntry` it is given (the rest it computes). */
export type StoredInit = Pick<CacheEntry, 'key' | 'status' | 'headers' | 'body' | 'requestTime' | 'responseTime' | 'varyValues'> & Partial<Pick<CacheEntry, 'credentials'>>;

/** What an entry costs the store beyond its body and fields (`CacheEntry.size`). */
const ENTRY_OVERHEAD = 256;

/**
 * The size the store counts for a response of `bodyBytes` with `headers` (pairs), as
 * `CacheEntry.size` counts it: known from a head with Content-Length, so a response the store
 * could never keep is refused at its head, before Cache-Status says `stored`.
 */
export function entrySize(bodyBytes: number, headers: readonly string[]): number {
  let n = bodyBytes + ENTRY_OVERHEAD;
  for (let i = 0; i < headers.length; i += 2) n += headers[i]!.length + headers[i + 1]!.length + 4;
  return n;
}

/**
 * One stored response (a variant of its key): header pairs, the whole body, and its
 * freshness computed once (RFC 9111 §4.2). Immutable: a 304 makes a new entry that shares
 * the body (`updated`).
 *
 * Freshness and age are computed here rather than with http-cache-semantics, which the
 * cache uses for the storability rules (`response-cache.ts`): its age leaves out the
 * apparent age (§4.2.3), its lifetime is 0 for `proxy-revalidate` (which, like
 * must-revalidate, only matters once the response is stale, §5.2.2.8), and its
 * `evaluateRequest` revalidates a fresh `must-revalidate` response every time.
 */
export class CacheEntry {
  readonly key: string;
  readonly status: number;
  /** Header pairs as the upstream sent them, hop-by-hop fields removed: [name, value, ...]. */
  readonly headers: readonly string[];
  /** The whole body. */
  readonly body: Buffer;
  /** ms since the epoch: when the request that fetched it was sent, and when its head arrived. */
  readonly requestTime: number;
  readonly responseTime: number;
  /** The request's values of the Vary fields (lower-case names), in the order of `vary`. */
  readonly varyValues: VaryValues;
  /** The stored response's Cache-Control. */
  readonly cc: Directives;
  /** Lower-case Vary field names; '*' never matches. */
  readonly vary: readonly string[];
  readonly etag: string | undefined;
  readonly lastModified: string | undefined;
  /** Freshness lifetime, ms. */
  readonly lifetimeMs: number;
  /** Age when it arrived (corrected initial age, §4.2.3), ms. */
  readonly initialAgeMs: number;
  /** Bytes it takes in a store (body, headers, a fixed overhead). */
  readonly size: number;
  /**
   * Lower-case fields named by a qualified `no-cache="a, b"` (RFC 9111 §5.2.2.4): the rest of
   * the response may be reused, these fields are never sent from the store. undefined: none.
   */
  readonly omitted: ReadonlySet<string> | undefined;
  /**
   * A keyed digest of the credentials (Cookie, Authorization, Proxy-Authorization) of the request
   * that stored it, undefined when it had none (`gateway/cache-fields.ts` credentialDigest). A
   * background revalidation sends credentials only when the triggering client's have this
   * digest. In memory only: the disk tier does not keep it (an entry read back has none).
   */
  readonly credentials: string | undefined;

  constructor(init: StoredInit) {
    this.key = init.key;
    this.status = init.status;
    this.headers = init.headers;
    this.body = init.body;
    this.requestTime = init.requestTime;
    this.responseTime = init.responseTime;
    this.varyValues = init.varyValues;
    this.credentials = init.credentials;
    const h = init.headers;
    let cc: string[] | undefined;
    let vary: string[] | undefined;
    let date: string | undefined;
    let age: string | undefined;
    let expires: string | undefined;
    let expiresCount = 0;
    let etag: string | undefined;
    let lastModified: string | undefined;
    let headerBytes = 0;
    for (let i = 0; i < h.length; i += 2) {
      const n = h[i]!.toLowerCase();
      const v = h[i + 1]!;
      headerBytes += n.length + v.length + 4;
      if (n === 'cache-control') (cc ??= []).push(v);
      else if (n === 'vary') (vary ??= []).push(v);
      else if (n === 'date') date ??= v;
      else if (n === 'age') age ??= v;
      else if (n === 'expires') {
        expires ??= v;
        expiresCount++;
      } else if (n === 'etag') etag ??= v;
      else if (n === 'last-modified') lastModified ??= v;
    }
    this.cc = parseCacheControl(cc);
    this.omitted = qualifiedNoCache(this.cc);
    this.vary = vary === undefined ? [] : vary.join(',').split(',').map((s) => s.trim().toLowerCase()).filter((s) => s.length > 0);
    this.etag = etag;
    this.lastModified = lastModified;
    this.size = init.body.length + headerBytes + ENTRY_OVERHEAD;
    // §4.2.3: the age it already had when it arrived.
    const dateValue = httpDate(date);
    const dateMs = Number.isNaN(dateValue) ? init.responseTime : dateValue;
    // §5.1: a list-valued Age uses its first member; an invalid value is ignored.
    const ageFirst = age?.split(',')[0]!.trim();
    const ageValue = ageFirst !== undefined && /^\d+$/.test(ageFirst) ? Number(ageFirst) * 1000 : 0;
    const apparent = Math.max(0, init.responseTime - dateMs);
    const delay = Math.max(0, init.responseTime - init.requestTime);
    this.initialAgeMs = Math.max(apparent, ageValue + delay);
    this.lifetimeMs = lifetime(this.status, this.cc, dateMs, expires, expiresCount, lastModified);
  }

  /** Current age (§4.2.3), ms. */
  ageMs(now: number): number {
    return this.initialAgeMs + Math.max(0, now - this.responseTime);
  }

  /** ms it stays fresh (negative: stale for that long). */
  ttlMs(now: number): number {
    return this.lifetimeMs - this.ageMs(now);
  }

  /** The Age field value (§5.1: integer seconds). */
  ageSeconds(now: number): number {
    return Math.floor(this.ageMs(now) / 1000);
  }

  /** It may not be served stale at all (§4.2.4): must-revalidate, proxy-revalidate, no-cache, or s-maxage (§5.2.2.10) in a shared cache. */
  get noStale(): boolean {
    const cc = this.cc;
    return cc.has('must-revalidate') || cc.has('proxy-revalidate') || unqualifiedNoCache(cc) || cc.has('s-maxage');
  }

  /** The header value (first) of a lower-case name. */
  header(name: string): string | undefined {
    const h = this.headers;
    for (let i = 0; i < h.length; i += 2) if (h[i]!.toLowerCase() === name) return h[i + 1];
    return undefined;
  }

  /** This response selected for a request with these header values (§4.1). */
  matches(values: VaryValues): boolean {
    const own = this.varyValues;
    for (let i = 0; i < this.vary.length; i++) {
      if (this.vary[i] === '*') return false;
      if (own[i] !== values[i]) return false;
    }
    return true;
  }

  /**
   * The entry freshened by a 304 (§4.3.4): its header fields replace the stored ones of the
   * same name, except the fields that describe the body the 304 does not carry. A 304 without
   * `Date` replaces the stored one with the time it was received (`responseTime`), as RFC 9110
   * §6.6.1 has a caching recipient record it: before session 37 the old `Date` stayed, the
   * apparent age with it, and a response freshened so was still stale (every request validated).
   * The stored `Age` goes too (the 304's, when it has one, takes its place): the age is the 304's
   * from now on (§4.2.3 from its `Date`, `Age` and round trip); before session 38 the stored
   * response's `Age: 5000` stayed, and freshened with `max-age=600` it was still stale. No
   * `Set-Cookie` is kept, the 304's or any stored (the store never keeps one: a 304's cookie to a
   * `no-cache="set-cookie"` entry was at rest in it before session 38; the caller tells the
   * storability rules it came, `ResponseCache.keepUpdated`). `varyValues`: the request's values of
   * the freshened response's Vary fields (`freshened`, gateway/cache-fields.ts, when the 304
   * changed them).
   */
  updated(headers304: readonly string[], requestTime: number, responseTime: number, varyValues = this.varyValues): CacheEntry {
    const replace = new Map<string, string[]>();
    for (let i = 0; i < headers304.length; i += 2) {
      const n = headers304[i]!.toLowerCase();
      if (KEEP_ON_UPDATE.has(n)) continue;
      let list = replace.get(n);
      if (list === undefined) replace.set(n, (list = []));
      list.push(headers304[i]!, headers304[i + 1]!);
    }
    if (!replace.has('date')) replace.set('date', ['date', new Date(responseTime).toUTCString()]);
    if (!replace.has('age')) replace.set('age', []);
    replace.set('set-cookie', []);
    const out: string[] = [];
    const done = new Set<string>();
    const h = this.headers;
    for (let i = 0; i < h.length; i += 2) {
      const n = h[i]!.toLowerCase();
      const r = replace.get(n);
      if (r === undefined) {
        out.push(h[i]!, h[i + 1]!);
      } else if (!done.has(n)) {
        done.add(n);
        out.push(...r);
      }
    }
    for (const [n, r] of replace) if (!done.has(n)) out.push(...r);
    return new CacheEntry({ key: this.key, status: this.status, headers: out, body: this.body, requestTime, responseTime, varyValues, credentials: this.credentials });
  }
}

/** Fields a 304 never changes in the stored response (RFC 9111 §3.2: Content-Length; and the fields that describe the stored body and its validator). */
const KEEP_ON_UPDATE = new Set(['content-length', 'content-encoding', 'content-md5', 'content-range', 'etag', 'transfer-encoding']);

/** `no-cache` without a field list (or with an empty one): the whole response needs validation. */
function unqualifiedNoCache(cc: Directives): boolean {
  const v = cc.get('no-cache');
  return v === true || (v !== undefined && v.trim() === '');
}

function qualifiedNoCache(cc: Directives): ReadonlySet<string> | undefined {
  const v = cc.get('no-cache');
  if (v === undefined || v === true || v.trim() === '') return undefined;
  return new Set(v.split(',').map((f) => f.trim().toLowerCase()).filter((f) => f.length > 0));
}

/** Freshness lifetime in ms (RFC 9111 §4.2.1, shared cache; heuristics §4.2.2). */
function lifetime(status: number, cc: Directives, dateMs: number, expires: string | undefined, expiresCount: number, lastModified: string | undefined): number {
  // no-cache: never fresh; every use is validated first (§5.2.2.4). Its qualified form
  // (no-cache="field") only keeps the named fields out of answers from the store (`omitted`).
  if (unqualifiedNoCache(cc)) return 0;
  const s = deltaSeconds(cc, 's-maxage');
  if (s !== undefined) return s * 1000;
  const m = deltaSeconds(cc, 'max-age');
  if (m !== undefined) return m * 1000;
  if (cc.has('max-age') || cc.has('s-maxage')) return 0; // present but invalid: stale (§1.2.2)
  if (expires !== undefined) {
    // §5.3: an invalid date ("0"), or more than one Expires, means already expired.
    const e = httpDate(expires);
    if (Number.isNaN(e) || expiresCount > 1) return 0;
    return Math.max(0, e - dateMs);
  }
  if (!HEURISTIC_STATUSES.has(status) && !cc.has('public')) return 0;
  const lm = httpDate(lastModified);
  if (Number.isNaN(lm) || lm >= dateMs) return 0;
  return Math.min(Math.floor((dateMs - lm) * HEURISTIC_FRACTION), HEURISTIC_MAX_MS);
}

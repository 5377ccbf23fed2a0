/**
 * RFC 9211 `Cache-Status`: one member per cache, this cache's name with parameters.
 * `fwd` says why the request went forward (uri-miss: nothing stored under the key;
 * vary-miss: stored, but not for these request headers; miss: stored but not usable, e.g.
 * the response forbids it or the request's directives; request: the request asked for a
 * fresh answer; stale: a stored response needed validation; bypass: the cache was not
 * consulted). `detail` names, for a stale answer, the failure that it covers (an RFC 9209
 * error type), why the cache was bypassed, or why a storable answer was not stored when the head
 * could know it (`StoreRefusal`: set-cookie, too-large, purged; the record's `storeRefused`).
 */
import { sfTokenOrString } from '../failure/index.js';
export type Forward = 'uri-miss' | 'vary-miss' | 'miss' | 'request' | 'stale' | 'bypass';

export interface CacheStatus {
  hit?: boolean;
  fwd?: Forward;
  /** The status the next hop answered a forwarded request with. */
  fwdStatus?: number;
  /** Freshness left in seconds (negative: stale for that long). */
  ttl?: number;
  /** The response is stored: said only when the head decides it (a Content-Length the store keeps; docs/cache.md), never of a body whose store is decided on its way. */
  stored?: boolean;
  /**
   * The request waited for another request's fetch of its key (RFC 9211 §2.7; only with `fwd`):
   * true, that response answered it; false, it was not usable (or the wait ran out) and the
   * request went forward itself. undefined: it did not wait.
   */
  collapsed?: boolean;
  detail?: string;
}

/** The member for this cache (`name` is the gateway's identity). */
export function cacheStatusMember(name: string, s: CacheStatus): string {
  let m = sfTokenOrString(name);
  if (s.hit) m += '; hit';
  if (s.fwd !== undefined) m += `; fwd=${s.fwd}`;
  if (s.fwdStatus !== undefined) m += `; fwd-status=${s.fwdStatus}`;
  // Whole seconds, rounded down: a copy stale by 0.3 s has ttl=-1 (RFC 9211 §2.5: negative once stale).
  if (s.ttl !== undefined) m += `; ttl=${Math.floor(s.ttl)}`;
  if (s.stored) m += '; stored';
  if (s.collapsed !== undefined) m += s.collapsed ? '; collapsed' : '; collapsed=?0';
  if (s.detail !== undefined) m += `; detail=${sfTokenOrString(s.detail)}`;
  return m;
}

/** The upstream's own Cache-Status members (if any) followed by ours: the list is in order from the origin (RFC 9211 §2). */
export function appendCacheStatus(prior: string | undefined, member: string): string {
  return prior === undefined || prior.length === 0 ? member : `${prior}, ${member}`;
}

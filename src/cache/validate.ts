import type { CacheEntry } from './entry.js';

/**
 * Which stored response a 304 is about (RFC 9111 §4.3.4), among the ones whose validators
 * the cache sent (`nominated`, newest first).
 *
 * - One nominated: that one. The upstream evaluated the cache's one condition as true (RFC
 *   9110 §13.1.2), so the 304 is about it whatever `ETag` it carries; a different `ETag` does
 *   not replace the stored one (`CacheEntry.updated` keeps the fields that describe the
 *   stored body). §4.3.4 read to the letter would identify nothing when the 304's strong
 *   validator differs; the caching test suite (`304-etag-update-response-ETag`, on the
 *   must-pass list) wants the stored response freshened and its `ETag` kept, and so does this.
 * - Several (a Vary miss that sent every stored variant's entity tag, §4.3.1): the newest
 *   whose entity tag matches the 304's `ETag` (weak comparison, RFC 9110 §8.8.3.2).
 *
 * undefined: several were nominated and the 304 names none of them or has no `ETag`, so it
 * cannot say which. Then no stored response may be updated, and the 304 is no answer for a
 * client that asked nothing conditional: the request is sent again as the client sent it.
 */
export function selectFor304(nominated: readonly CacheEntry[], etag304: string | undefined): CacheEntry | undefined {
  if (nominated.length === 1) return nominated[0];
  if (etag304 === undefined) return undefined;
  for (const e of nominated) if (e.etag !== undefined && weakEqual(e.etag, etag304)) return e;
  return undefined;
}

/** RFC 9110 §8.8.3.2 weak comparison of two entity tags. */
export function weakEqual(a: string, b: string): boolean {
  return weakless(a.trim()) === weakless(b.trim());
}

function weakless(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag;
}

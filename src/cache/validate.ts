import type { CacheEntry } from './entry.js';

/**
 * Which stored response a 304 is about (RFC 9111 §4.3.4), among the ones whose validators
 * the cache sent (`nominated`, newest first).
 *
 * - The 304 has a strong `ETag`: the newest nominated whose entity tag is the same strong
 *   validator (RFC 9110 §8.8.3.2 strong comparison). None: nothing may be updated ("the cache
 *   MUST NOT use the new response to update any stored responses"), even when the cache sent
 *   one response's validators: the upstream says its current representation is another one.
 *   Before session 32 the one nominated response was freshened whatever `ETag` the 304 carried
 *   (its own kept), and its old body answered as revalidated; the caching test suite's
 *   `304-etag-update-response-ETag` wants that, RFC 9111 does not (docs/cache.md).
 * - A weak `ETag`: the newest nominated whose entity tag matches it by weak comparison.
 * - No `ETag`: the one nominated, when there is one (its `Last-Modified` or the upstream's word
 *   for the one condition asked); with several it cannot say which.
 *
 * undefined: no stored response may be updated, and the 304 is no answer for a client that
 * asked nothing conditional: the request is sent again as the client sent it (a background
 * revalidation leaves the stored response as it was).
 */
export function selectFor304(nominated: readonly CacheEntry[], etag304: string | undefined): CacheEntry | undefined {
  if (etag304 === undefined) return nominated.length === 1 ? nominated[0] : undefined;
  const tag = etag304.trim();
  const weak = tag.startsWith('W/');
  for (const e of nominated) if (e.etag !== undefined && (weak ? weakEqual(e.etag, tag) : e.etag.trim() === tag)) return e;
  return undefined;
}

/** RFC 9110 §8.8.3.2 weak comparison of two entity tags. */
export function weakEqual(a: string, b: string): boolean {
  return weakless(a.trim()) === weakless(b.trim());
}

function weakless(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag;
}

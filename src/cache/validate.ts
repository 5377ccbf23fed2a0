import type { CacheEntry } from './entry.js';

/**
 * Which stored response a 304 is about (RFC 9111 §4.3.4), among the ones whose validators
 * the cache sent (`nominated`, newest first): the newest whose entity tag matches the 304's
 * `ETag` (weak comparison, RFC 9110 §8.8.3.2); with no `ETag` in the 304, the one response
 * when only one was nominated (a 304 to a single condition can only mean it, RFC 9110
 * §13.1.2). undefined: the 304 names none of them, or cannot say which (several nominated,
 * no `ETag`); then no stored response may be updated, and the 304 is no answer for a client
 * that asked nothing conditional: the request is sent again without the cache's validators.
 */
export function selectFor304(nominated: readonly CacheEntry[], etag304: string | undefined): CacheEntry | undefined {
  if (etag304 === undefined) return nominated.length === 1 ? nominated[0] : undefined;
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

/**
 * The reverse gateway's response cache (RFC 9111 shared cache; RFC 5861 stale-while-
 * revalidate and stale-if-error; RFC 9211 Cache-Status): the rules, the stores and request
 * collapsing. The gateway's cache phase (`gateway/cache-phase.ts`) drives it; docs/cache.md.
 */
export { ResponseCache, StoreTicket, HTTPS_TARGET, INVALIDATE_CHANNEL, refusedForSize, withoutSetCookie, cacheKey, targetKey, requestDirectives, varyValuesOf, type Lookup, type RequestHeaders, type RouteCache, type StaleReason, type UpdateResult } from './response-cache.js';
export { CacheEntry, entrySize, type StoredInit, type VaryValues } from './entry.js';
export { MemoryStore, type CacheStore } from './memory-store.js';
export { DiskTier } from './disk-store.js';
export { Collapser, MAX_WAITERS, type CollapseWaiter } from './collapse.js';
export { cacheStatusMember, appendCacheStatus, type CacheStatus, type Forward } from './cache-status.js';
export { selectFor304, weakEqual } from './validate.js';
export { answerFrom, singleRange, type CachedAnswer } from './answer.js';
export { parseCacheControl, deltaSeconds, type Directives } from './cache-control.js';

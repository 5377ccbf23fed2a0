/** RFC 9110 §9.2.1: methods that change nothing on the server (pipelining order, cache invalidation). */
export const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);
/** RFC 9110 §9.2.2: methods for which several identical requests have the effect of one. */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

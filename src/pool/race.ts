import type { Failure } from '../failure/index.js';

/**
 * The keep-alive race lost: a reused connection closed before any response byte. The
 * upstream closed it as the request was written (it was idle, and an upstream may close an
 * idle connection at any moment, RFC 9112 §9.6), so nothing is wrong with the upstream and
 * nothing of the request was answered. Both faces retry such an idempotent request at once on
 * a fresh connection (`ConnectionPool.acquire(…, fresh)`), and the reverse gateway records it
 * neither against the endpoint (outlier detection) nor against the retry budget.
 */
export function lostKeepAliveRace(f: Failure, reused: boolean, responseStarted: boolean): boolean {
  // An HTTP/2 stream reset (`streamOnly`, failure/classify.ts) left its connection up: the
  // upstream itself refused this request, so it is no race and counts against the endpoint.
  return reused && !responseStarted && f.type === 'connection_terminated' && !f.streamOnly;
}

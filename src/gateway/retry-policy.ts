import type { Failure } from '../failure/index.js';

/** The failure classes a route can choose to retry (config `retry.on`). */
export type RetryKind = 'connect-failure' | 'reset' | 'invalid-response' | 'timeout' | '502' | '503' | '504';

export interface RetryPolicy {
  tries: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  idempotencyKey: boolean;
}

/**
 * Which retry class a failure falls in, or undefined when it never retries.
 * A failure before the connection was usable proves the request never left the
 * gateway: 'connect-failure', safe for every method. A connection closed before any
 * response byte is a 'reset' (often the keep-alive race); a missing response in time is
 * a 'timeout'; a response head that is not valid HTTP is an 'invalid-response'. Nothing is
 * retried once part of a response was passed on to the client.
 */
export function retryKindOf(f: Failure, connected: boolean): RetryKind | undefined {
  if (!connected && (f.phase === 'dns' || f.phase === 'connect' || f.phase === 'tls')) return 'connect-failure';
  if (f.type === 'connection_terminated') return 'reset';
  if (f.type === 'http_response_timeout') return 'timeout';
  // A broken response head: nothing was passed on yet, so an idempotent request can go elsewhere.
  if (f.phase === 'headers' && (f.type === 'http_protocol_error' || f.type === 'http_response_incomplete' || f.type === 'http_response_header_section_size' || f.type === 'http_response_transfer_coding')) {
    return 'invalid-response';
  }
  return undefined;
}

/** Exponential back-off with full jitter (AWS architecture blog's "full jitter"). */
export function backoffMs(p: RetryPolicy, attemptsSoFar: number): number {
  const cap = Math.min(p.backoffMaxMs, p.backoffBaseMs * 2 ** Math.max(0, attemptsSoFar - 1));
  return Math.floor(Math.random() * cap);
}

/** Retry-After from raw response headers, in ms (delta-seconds or HTTP-date). */
export function retryAfterMs(raw: readonly Buffer[]): number | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length !== 11 || name.toString('latin1').toLowerCase() !== 'retry-after') continue;
    const v = raw[i + 1]!.toString('latin1').trim();
    if (/^\d+$/.test(v)) return Number(v) * 1000;
    const t = Date.parse(v);
    return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
  }
  return undefined;
}

import type { Failure } from '../failure/index.js';
import { lostKeepAliveRace } from '../pool/index.js';
import type { Endpoint } from '../upstream/endpoint.js';
import type { RetryBudget } from '../upstream/retry-budget.js';
import { fieldText, type RawField } from '../http/headers.js';

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
  // A try that waited its whole head timeout behind the request ahead on a busy connection
  // (the endpoint at maxConnections, attempt.ts): never sent, so it may go elsewhere like a connect failure.
  if (!connected && f.type === 'connection_limit_reached' && f.phase === 'admit') return 'connect-failure';
  if (f.type === 'connection_terminated') return 'reset';
  // No response head in time, or the upstream stopped reading the request before it: a timeout of the try.
  if (f.type === 'http_response_timeout' || f.type === 'connection_write_timeout') return 'timeout';
  // A broken response head: nothing was passed on yet, so an idempotent request can go elsewhere.
  if (f.phase === 'headers' && (f.type === 'http_protocol_error' || f.type === 'http_response_incomplete' || f.type === 'http_response_header_section_size' || f.type === 'http_response_transfer_coding')) {
    return 'invalid-response';
  }
  return undefined;
}

/**
 * Exponential back-off with full jitter (AWS architecture blog's "full jitter"), drawn below
 * `leftMs` (what is left of the route's deadline) so the retry still starts before it.
 */
export function backoffMs(p: RetryPolicy, attemptsSoFar: number, leftMs = Infinity): number {
  const cap = Math.min(p.backoffMaxMs, p.backoffBaseMs * 2 ** Math.max(0, attemptsSoFar - 1), leftMs);
  return Math.floor(Math.random() * cap);
}

/** ms left before the route's deadline (Infinity without one). */
function deadlineLeftMs(rules: RetryRules, elapsedMs: number): number {
  return rules.deadlineMs === undefined ? Infinity : rules.deadlineMs - elapsedMs;
}

/** Retry-After from raw response headers, in ms (delta-seconds or HTTP-date). */
export function retryAfterMs(raw: readonly RawField[]): number | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length !== 11 || fieldText(name).toLowerCase() !== 'retry-after') continue;
    const v = fieldText(raw[i + 1]!).trim();
    if (/^\d+$/.test(v)) return Number(v) * 1000;
    const t = Date.parse(v);
    return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
  }
  return undefined;
}

/** What a route says about retries (the compiled `retry` config of a route). */
export interface RetryRules {
  readonly retry: RetryPolicy;
  readonly retryOn: ReadonlySet<RetryKind>;
  /** Total time for the request, tries included (undefined: no limit). */
  readonly deadlineMs: number | undefined;
  /** An upstream 5xx asking to wait longer than this (Retry-After) is passed on, not retried. */
  readonly retryAfterMaxMs: number;
  /** Configured response-head timeout of every try (undefined: chosen by `tryTimeoutMs`). */
  readonly perTryTimeoutMs?: number | undefined;
}

/** What happened to one try, as the policy needs it. */
export interface TryFacts {
  /** The endpoint the try went to. */
  readonly endpoint: Endpoint;
  /** The connection was usable: request bytes may have reached the upstream. */
  readonly connected: boolean;
  /** The try used a pooled connection that had served requests before. */
  readonly reused: boolean;
  /**
   * The upstream reset the connection (ECONNRESET, EPIPE: a TCP RST) before any byte of the
   * request was written on it: nothing of the request reached the upstream, so it was never
   * applied, whatever its method. A reset after some of the request was written proves
   * nothing: an upstream that read the head, acted on it and died with the body unread resets
   * the connection just as one that read nothing (the kernel answers unread data with a RST);
   * nor does an orderly close (FIN). RFC 9110 §9.2.2; Envoy's `reset-before-request`.
   */
  readonly neverRead?: boolean;
  /**
   * An HTTP/2 upstream said it did not process the request (RFC 9113 §8.7): it refused the
   * stream (RST_STREAM REFUSED_STREAM), or the stream was above the last-stream-id of its
   * GOAWAY (pool/h2-streams.ts). Like `neverRead`, the request was never applied, whatever its
   * method; whether its body can be sent again is still `replayable`'s to say.
   */
  readonly notProcessed?: boolean;
  /** Part of a response was passed on to the client (or is being drained for a retry already decided). */
  readonly responseStarted: boolean;
  /** RFC 9110 §9.2.2, or an Idempotency-Key the route trusts. */
  readonly idempotent: boolean;
  /** No body, or every byte of it taken so far is kept and can be sent again. */
  readonly replayable: boolean;
  /** Tries made so far, this one included (a race retry that gave its try back not counted). */
  readonly tries: number;
  /** Lost keep-alive races of this request that gave their try back so far (at most FREE_RACE_RETRIES). */
  readonly racesGivenBack?: number;
  /** ms since the request arrived. */
  readonly elapsedMs: number;
  /** The client has gone: nobody to answer. */
  readonly clientGone: boolean;
  /** Another endpoint of the cluster is available and was not tried by this request. */
  readonly alternative: boolean;
}

/**
 * The policy's answer (Pingora's `fail_to_connect` / `error_while_proxy` contract): try
 * again (on a fresh connection or not, after a delay, avoiding the endpoint that failed),
 * or give up and let the responder answer. `budget` says the retry budget refused; `free`
 * says a lost keep-alive race gives its try back (the caller does not count it in `tries`).
 */
export type RetryDecision =
  | { readonly action: 'retry'; readonly fresh: boolean; readonly delayMs: number; readonly avoid: Endpoint; readonly free?: true }
  | { readonly action: 'fail'; readonly budget?: true };

/** The decision to try again. */
export type RetryAgain = Extract<RetryDecision, { action: 'retry' }>;

const FAIL: RetryDecision = { action: 'fail' };
const FAIL_BUDGET: RetryDecision = { action: 'fail', budget: true };

/**
 * Lost keep-alive races one request may have given back as free retries (no try used up).
 * A race retry asks for a fresh connection, which cannot lose the race; but at the endpoint's
 * `maxConnections` with every connection busy it must wait behind a busy one like any
 * request (the limit holds), and so can lose the race again. After this many, a lost race
 * counts as a try, so a request makes at most `retry.tries` + this many attempts.
 */
export const FREE_RACE_RETRIES = 3;

/**
 * A failed try: retry or fail. A failure before the connection was usable
 * (`connect-failure`) and a reset before any byte of the request was written (`neverRead`)
 * retry any method; anything later only idempotent requests whose body can be sent again, never
 * once a response reached the client. A reused connection
 * closed before any response byte (the keep-alive race) is retried on a fresh connection.
 * The policy reads the budget; the caller spends it when it acts on a retry.
 */
export function decideOnFailure(f: Failure, t: TryFacts, rules: RetryRules, budget: RetryBudget, now: number): RetryDecision {
  if (t.responseStarted) return FAIL;
  const kind = retryKindOf(f, t.connected);
  if (kind === undefined) return FAIL;
  // The keep-alive race: a fresh connection at once, no back-off, and no retry budget: nothing
  // is wrong with the endpoint (the pool lost its own bet on a reused connection), and a budget
  // meant to stop retry storms against a failing upstream must not turn these into 502s (an
  // upstream that closes every connection after one request makes every reused try race).
  const race = lostKeepAliveRace(f, t.reused, t.responseStarted);
  const free = race && (t.racesGivenBack ?? 0) < FREE_RACE_RETRIES;
  const no = refusal(kind, t, rules, race ? undefined : budget, now, free);
  if (no !== undefined) return no;
  if (race) return free ? { action: 'retry', fresh: true, delayMs: 0, avoid: t.endpoint, free: true } : { action: 'retry', fresh: true, delayMs: 0, avoid: t.endpoint };
  return { action: 'retry', fresh: false, delayMs: backoffMs(rules.retry, t.tries, deadlineLeftMs(rules, t.elapsedMs)), avoid: t.endpoint };
}

/**
 * An upstream answered 502, 503 or 504 (any other status is never retried): retry after
 * its Retry-After (when within the route's maximum) or the back-off, whichever is longer;
 * the connection is kept when the answer is short (it is drained, attempt.ts), so no fresh
 * one is needed. A Retry-After that would end at or past the route's deadline is not waited
 * for: the answer is passed on, Retry-After included (the client learns more from it than
 * from a 504 the gateway would make).
 */
export function decideOnStatus(status: number, raw: readonly RawField[], t: TryFacts, rules: RetryRules, budget: RetryBudget, now: number): RetryDecision {
  if (status !== 502 && status !== 503 && status !== 504) return FAIL;
  const wait = retryAfterMs(raw);
  const left = deadlineLeftMs(rules, t.elapsedMs);
  if (wait !== undefined && (wait > rules.retryAfterMaxMs || wait >= left)) return FAIL;
  const no = refusal(String(status) as RetryKind, t, rules, budget, now);
  if (no !== undefined) return no;
  return { action: 'retry', fresh: false, delayMs: Math.max(wait ?? 0, backoffMs(rules.retry, t.tries, left)), avoid: t.endpoint };
}

/**
 * Why another try is not allowed for a failure of this kind, or undefined when it is. A lost
 * keep-alive race that gives its try back (`free`) uses up no try (the caller does not count
 * it in `t.tries` either); at most FREE_RACE_RETRIES of them per request.
 */
function refusal(kind: RetryKind, t: TryFacts, rules: RetryRules, budget: RetryBudget | undefined, now: number, free = false): RetryDecision | undefined {
  if ((!free && t.tries >= rules.retry.tries) || t.clientGone) return FAIL;
  if (!rules.retryOn.has(kind)) return FAIL;
  // A timeout retried on the endpoint that just timed out would only double the wait.
  if (kind === 'timeout' && !t.alternative) return FAIL;
  // A body is streamed; one that was (partly) sent can be sent again only if it was small enough to keep.
  if (!t.replayable) return FAIL;
  // RFC 9110 §9.2.2, RFC 9112 §9.3.1: a non-idempotent request is retried only when the failure
  // proves it was never applied: it never left the gateway, the upstream reset the connection
  // before any byte of it was written, or an HTTP/2 upstream said it did not process it (RFC 9113 §8.7).
  if (kind !== 'connect-failure' && !t.idempotent && !(kind === 'reset' && (t.neverRead === true || t.notProcessed === true))) return FAIL;
  if (rules.deadlineMs !== undefined && t.elapsedMs >= rules.deadlineMs) return FAIL;
  if (budget !== undefined && !budget.canRetry(now)) return FAIL_BUDGET;
  return undefined;
}

/** What the response-head timeout of a try depends on. */
export interface TryTimeoutFacts {
  /** The cluster's response timeout: the longest a client waits for a response head, tries included. */
  readonly overallMs: number;
  readonly idempotent: boolean;
  /** Tries made so far, this one included. */
  readonly tries: number;
  /** Another endpoint could take a retry (see TryFacts.alternative). */
  readonly alternative: boolean;
  /** ms already spent waiting for response heads of earlier tries of this request. */
  readonly spentMs: number;
  /** ms since the request arrived (the route's `deadline` counts from then). */
  readonly elapsedMs: number;
}

/**
 * The response-head timeout of one try. A configured `perTryTimeout` applies to every try.
 * Otherwise a try that could be retried on a timeout (idempotent, `timeout` in `retry.on`,
 * tries left, another endpoint available) waits half of the response timeout, so a hung
 * endpoint costs at most half and the retry elsewhere still has the other half; any other
 * try waits what is left of it. The cluster's response timeout so bounds the whole wait
 * (nginx waits the full proxy_read_timeout per try; Envoy has no per-try timeout unless set).
 * Either way a retry never waits past the route's deadline (the first try is not a retry:
 * the deadline does not time it).
 */
export function tryTimeoutMs(rules: RetryRules, t: TryTimeoutFacts): number {
  const deadlineLeft = t.tries > 1 ? Math.max(1, deadlineLeftMs(rules, t.elapsedMs)) : Infinity;
  const perTry = rules.perTryTimeoutMs;
  // perTryTimeout 0: no limit of its own (ResponseTimer), the deadline's still holds.
  if (perTry !== undefined) return perTry > 0 ? Math.min(perTry, deadlineLeft) : deadlineLeft === Infinity ? 0 : deadlineLeft;
  const left = Math.max(1, Math.min(t.overallMs - t.spentMs, deadlineLeft));
  const retriable = t.idempotent && t.alternative && t.tries < rules.retry.tries && rules.retryOn.has('timeout');
  return retriable ? Math.min(left, Math.max(1, Math.round(t.overallMs / 2))) : left;
}

import { ERROR_TYPES, REFUSAL_REASONS, type Phase, type ProxyErrorType, type RefusalInfo, type RefusalReason, type Source } from './types.js';

export interface FailureInit {
  type: ProxyErrorType;
  phase: Phase;
  /** The next hop the failure concerns, as `host:port` (or a name). */
  nextHop?: string;
  /** Human-readable detail; safe to show to trusted clients. */
  detail?: string;
  /** Whether sending the same request again (to another endpoint or on a fresh connection) is safe. */
  retrySafe?: boolean;
  /**
   * A refusal whose status is not the type's own (407, 429, 431, 501...): the reason
   * names it and REFUSAL_REASONS gives the status. Statuses never come from call sites.
   */
  reason?: RefusalReason;
  /** Extra RFC 9209 parameters, e.g. rcode for dns_error, status-code for http_request_error. */
  params?: Record<string, string | number>;
  /** Seconds for a Retry-After header. */
  retryAfter?: number;
  /** A 405's `Allow` value, for a reason whose row says `'computed'` (and only then). */
  allow?: string;
  /** The upstream ended only this HTTP/2 stream (RST_STREAM); its connection stayed up. */
  streamOnly?: boolean;
  cause?: unknown;
}

/**
 * One way a hop failed, as a value. Created by the classifier (from low-level
 * errors) or directly by a phase that decides to refuse.
 */
export class Failure extends Error {
  readonly type: ProxyErrorType;
  readonly phase: Phase;
  readonly source: Source;
  readonly nextHop: string | undefined;
  readonly detail: string;
  readonly retrySafe: boolean;
  readonly status: number;
  /** The refusal reason, when the status is not the type's own. */
  readonly reason: RefusalReason | undefined;
  readonly params: Record<string, string | number> | undefined;
  readonly retryAfter: number | undefined;
  /** A 405's `Allow`: the reason's row's value, or the one a `'computed'` row's failure was given. */
  readonly allow: string | undefined;
  /**
   * The upstream ended only this HTTP/2 stream (RST_STREAM) and kept its connection: the
   * upstream refused this one request, which tells a stream reset from a closed connection
   * (pool/race.ts: a closed connection under a reused request is the keep-alive race).
   */
  readonly streamOnly: boolean;
  /** Stable code for programs: GATEWISE_<TYPE>. */
  readonly code: string;

  constructor(init: FailureInit) {
    const info = ERROR_TYPES[init.type];
    super(init.detail ?? info.explain, init.cause !== undefined ? { cause: init.cause } : undefined);
    this.name = 'Failure';
    this.type = init.type;
    this.phase = init.phase;
    this.source = info.source;
    this.nextHop = init.nextHop;
    this.detail = init.detail ?? info.explain;
    this.retrySafe = init.retrySafe ?? false;
    let status: number = info.status || 502;
    let params = init.params;
    let allow: string | undefined;
    if (init.reason !== undefined) {
      const r: RefusalInfo = REFUSAL_REASONS[init.reason];
      // A programming error, not a runtime condition: the table ties each reason to one type.
      if (r.type !== init.type) throw new TypeError(`refusal reason ${init.reason} belongs to ${r.type}, not ${init.type}`);
      status = r.status;
      allow = r.allow;
      if (allow === 'computed') {
        // The same: a 405 must say what the target takes (RFC 9110 §15.5.6).
        if (init.allow === undefined) throw new TypeError(`refusal reason ${init.reason} needs the failure's allow`);
        allow = init.allow;
      }
    }
    if (init.allow !== undefined && allow !== init.allow) throw new TypeError(`allow is given only for a reason whose row computes it, not ${init.reason ?? init.type}`);
    // RFC 9209 §2.3.15: http_request_error carries the status it produced.
    if (init.type === 'http_request_error' && params?.['status-code'] === undefined) params = { ...params, 'status-code': status };
    this.status = status;
    this.reason = init.reason;
    this.params = params;
    this.retryAfter = init.retryAfter;
    this.allow = allow;
    this.streamOnly = init.streamOnly === true;
    this.code = `GATEWISE_${init.type.toUpperCase()}`;
  }

  /** The reason's title when it has one (407 Proxy Authentication Required…), else the type's. */
  get title(): string {
    return this.reason !== undefined ? REFUSAL_REASONS[this.reason].title : ERROR_TYPES[this.type].title;
  }

  get explain(): string {
    return this.reason !== undefined ? REFUSAL_REASONS[this.reason].explain : ERROR_TYPES[this.type].explain;
  }

  toJSON(): Record<string, unknown> {
    return {
      type: this.type,
      phase: this.phase,
      source: this.source,
      nextHop: this.nextHop,
      detail: this.detail,
      retrySafe: this.retrySafe,
      status: this.status,
    };
  }
}

/** The same failure with another detail (a hook's words; what an HTTP/2 try's connection went through). */
export function withDetail(f: Failure, detail: string): Failure {
  return new Failure({ type: f.type, phase: f.phase, nextHop: f.nextHop, detail, retrySafe: f.retrySafe, reason: f.reason, params: f.params, retryAfter: f.retryAfter, allow: f.allow, streamOnly: f.streamOnly, cause: f.cause });
}

export function isFailure(e: unknown): e is Failure {
  return e instanceof Failure;
}

/**
 * The answer to a request whose asynchronous extension hook (the reverse gateway's
 * `onRequest`, the forward proxy's `authorize`) did not settle within the hook timeout: the
 * gateway's own fault, like a hook that throws.
 */
export function hookTimedOut(hook: string, ms: number): Failure {
  return new Failure({ type: 'proxy_internal_error', phase: 'internal', detail: `an ${hook} hook did not settle within ${ms} ms (hook timeout)` });
}

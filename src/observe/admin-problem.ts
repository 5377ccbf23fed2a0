import type { Logger } from 'pino';

/**
 * The admin API's refusals: each a stable code declared once here with its status and title,
 * sent as an RFC 9457 problem (`application/problem+json`, type
 * `tag:gatewise,2026:admin:<code>`, the code also as the `code` member). A route or guard that
 * refuses names the code and says what in `detail`; the status comes from this table, never
 * from the place that refused (the rule `src/failure/`'s taxonomy keeps for the proxies).
 */
export const ADMIN_PROBLEMS = {
  'bad-request': { status: 400, title: 'the request is not valid HTTP' },
  'head-too-large': { status: 431, title: 'the request head is larger than the listener takes' },
  'request-timeout': { status: 408, title: 'the request did not arrive in time' },
  'bad-target': { status: 400, title: 'the request target is not a valid URL path' },
  'no-route': { status: 404, title: 'no admin route has this path (every route is listed in /openapi.json)' },
  'method-not-allowed': { status: 405, title: 'the route does not take this method (see /openapi.json)' },
  'rebound-host': { status: 403, title: 'the Host is not an address of this listener' },
  'cross-site': { status: 403, title: 'a request from another site may not change the gateway' },
  'simple-request': { status: 403, title: 'a request that changes the gateway must carry a header a web page cannot send cross-site' },
  'unsupported-media-type': { status: 415, title: 'the request body is not JSON' },
  unauthorized: { status: 401, title: 'this admin listener needs Authorization: Bearer TOKEN (admin.token)' },
  'locked-out': { status: 429, title: 'too many wrong tokens came from this address; it may try again after Retry-After (admin.lockout)' },
  'not-running': { status: 404, title: 'the part of Gatewise this route reads does not run in this process' },
  'not-configured': { status: 404, title: 'what this route serves is not configured' },
  'missing-parameter': { status: 400, title: 'a required query parameter is missing' },
  'not-found': { status: 404, title: 'no such item' },
  'invalid-input': { status: 400, title: 'the request is not valid' },
  'no-users-file': { status: 409, title: 'accounts can be changed only when forward.auth.usersFile is set' },
  'config-user': { status: 409, title: 'the user is defined in the config file' },
  exists: { status: 409, title: 'the name is taken' },
  'invalid-config': { status: 422, title: 'the config file has problems; the running config stays' },
  'reload-failed': { status: 422, title: 'the config could not be applied; the running config stays' },
  'write-failed': { status: 500, title: 'a file the change needs could not be read or written; nothing changed' },
  busy: { status: 503, title: 'the admin listener cannot do this now; try again' },
  internal: { status: 500, title: 'the admin route failed' },
} as const;

export type AdminProblemCode = keyof typeof ADMIN_PROBLEMS;

export const PROBLEM_TYPE = 'application/problem+json';

/** A field at fault, for refusals of input. */
export interface ProblemField {
  field: string;
  message: string;
}

/**
 * A refused admin request, thrown by a route or an operation it drives (the forward proxy's
 * `AccountService`) and answered by the listener as its problem.
 */
export class AdminProblem extends Error {
  readonly code: AdminProblemCode;
  readonly status: number;
  readonly errors: readonly ProblemField[];
  readonly #extra: Record<string, unknown> | undefined;

  /** `detail`: what was refused and why, in this request's words; `extra`: members the problem adds (RFC 9457 §3.2). */
  constructor(code: AdminProblemCode, detail: string, errors: readonly ProblemField[] = [], extra?: Record<string, unknown>) {
    super(detail);
    this.name = 'AdminProblem';
    this.code = code;
    this.status = ADMIN_PROBLEMS[code].status;
    this.errors = errors;
    this.#extra = extra;
  }

  /** The application/problem+json body. */
  get problem(): Record<string, unknown> {
    const detail = this.errors.length ? `${this.message}: ${this.errors.map((e) => `${e.field}: ${e.message}`).join('; ')}` : this.message;
    return { type: `tag:gatewise,2026:admin:${this.code}`, title: ADMIN_PROBLEMS[this.code].title, status: this.status, code: this.code, detail, ...(this.errors.length ? { errors: this.errors } : {}), ...this.#extra };
  }
}

/** A problem as the admin listener's reply. */
export function problemReply(p: AdminProblem): { status: number; body: Record<string, unknown>; type: string } {
  return { status: p.status, body: p.problem, type: PROBLEM_TYPE };
}

/** The same, made in one step: `problem('not-found', 'no endpoint x in cluster y')`. */
export function problem(code: AdminProblemCode, detail: string, errors?: readonly ProblemField[], extra?: Record<string, unknown>): { status: number; body: Record<string, unknown>; type: string } {
  return problemReply(new AdminProblem(code, detail, errors, extra));
}

/**
 * The answer to a route that failed (threw something other than an `AdminProblem`): the
 * gateway's fault, 500 `internal`, naming the request id the failure was logged under
 * (`logRouteFailure`) and nothing of what was thrown: a message may name a file, a host or a
 * library's internals, and is the operator's to read, in the log.
 */
export function internalProblem(requestId: string, what = 'the admin route failed'): { status: number; body: Record<string, unknown>; type: string } {
  return problem('internal', `${what}; the gateway's log has the error under request id ${requestId}`, undefined, { requestId });
}

/** Log what a route threw, message and stack, at error level under `requestId` (the id `internalProblem` gives the client). */
export function logRouteFailure(log: Logger, requestId: string, err: unknown, fields: Record<string, unknown>): void {
  log.error({ component: 'admin', type: 'route-failed', requestId, ...fields, err }, 'an admin route failed');
}

import { isUtf8 } from 'node:buffer';
import { Failure } from '../failure/index.js';
import type { EgressRoute } from '../egress/index.js';
import { customerFacingFailure, explainUsername, parseUsername, type CheckSource } from '../tenants/index.js';
import type { ForwardContext } from './context.js';
import type { AuthLockout } from '../net/auth-lockout.js';

export interface Credentials {
  user: string;
  password: string;
}

/**
 * Decode `Basic base64(user:password)`; undefined when absent or malformed.
 *
 * The bytes are UTF-8 when they are valid UTF-8 (browsers and curl in a UTF-8 locale, and
 * what our `charset="UTF-8"` asks for, RFC 7617 section 2.1), else Latin-1 (Python
 * requests, older clients). One decoding only, never a second scrypt run with the other:
 * bytes with non-ASCII characters that are valid UTF-8 are Latin-1 text only for
 * passwords such as "Ã¶", while a retry would let every wrong non-ASCII password cost
 * two checks.
 */
export function parseBasicCredentials(header: string | undefined): Credentials | undefined {
  if (!header) return undefined;
  const m = /^\s*basic\s+([A-Za-z0-9+/=_-]{1,4096})\s*$/i.exec(header);
  if (!m) return undefined;
  const bytes = Buffer.from(m[1]!, 'base64');
  const decoded = bytes.toString(isUtf8(bytes) ? 'utf8' : 'latin1');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * The credentials of an HTTP request head: its Proxy-Authorization, decoded; `'malformed'`
 * when it does not decode, or when the head has more than one such field (`rawHeaders`, as
 * received; Node keeps only the first in `headers`). The field is not a list: two are two
 * claims of who is asking, and the first won whatever the second said (adversarial review,
 * session 35), so an intermediary that appends its own had the client's taken instead.
 */
export function headCredentials(value: string | undefined, rawHeaders: readonly string[] | undefined): Credentials | 'malformed' | undefined {
  if (value === undefined) return undefined;
  if (rawHeaders !== undefined) {
    let seen = 0;
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = rawHeaders[i]!;
      if (name.length === 19 && name.toLowerCase() === 'proxy-authorization' && ++seen > 1) return 'malformed';
    }
  }
  return parseBasicCredentials(value) ?? 'malformed';
}

export type AuthOutcome = { ok: true; user: string | null; route: EgressRoute } | { ok: false; failure: Failure; user?: string };

/** Who is asking: the client's socket will do. Its address is read only when a password must be checked or an allowlist is configured. */
export type AuthSource = CheckSource & { readonly localPort?: number | undefined };

/**
 * IP allowlist authentication: the user whose `allowFrom` holds the client's address, with
 * the username parameters of the matching entry or else of the listener the client came to
 * (`listeners[].usernameParams`). Undefined when the address is on no allowlist; a Failure
 * when the parameters name something that does not parse (the operator's config).
 */
export function allowlistRoute(ctx: ForwardContext, source: AuthSource | undefined): EgressRoute | Failure | undefined {
  const hit = ctx.allowlist?.match(source?.remoteAddress);
  if (hit === undefined) return undefined;
  const params = hit.params ?? (source?.localPort !== undefined ? ctx.listenerParams.get(source.localPort) : undefined);
  if (params === undefined) return { user: hit.user };
  const sep = ctx.grammar.separator;
  const p = parseUsername(`${hit.user}${sep}${params}`, ctx.grammar);
  if (p.base !== hit.user) {
    const why = explainUsername(`${hit.user}${sep}${params}`, (b) => b === hit.user, ctx.grammar);
    return badParameter(hit.user, why?.problem ?? `username parameters "${params}" of the allowlist do not parse`);
  }
  return routeWithParameters(hit.user, p);
}

/**
 * Check a presented name and password. The name may carry username parameters
 * (`alice-session-x-pool-dc`); the base name authenticates. A name that is itself a user
 * is taken as is. Returns the route (user + parameters), undefined for wrong credentials,
 * or a Failure (http_request_denied, 429 or 503 with Retry-After) when the password
 * cannot be checked now: too many checks from this source or from everyone
 * (src/tenants/password-checks.ts). A plain value when the password was verified, or
 * found wrong, recently (no promise on every request of a known client).
 *
 * `source` bounds the checks per client address; without it the claimed name stands in.
 */
export function authenticateNameFrom(
  ctx: ForwardContext,
  name: string,
  password: string,
  source?: AuthSource,
): EgressRoute | Failure | undefined | Promise<EgressRoute | Failure | undefined> {
  // An AuthProvider that throws or rejects (its LDAP, database or token service failed) is
  // the gateway's failure, whatever the error's code: its ECONNRESET is its own backend's, not
  // the destination's, which classify() would make it (review finding: recorded 502
  // connection_terminated ended by the upstream; a synchronous throw was uncaught).
  // Wrong credentials per client address (net/auth-lockout.ts): a locked-out address is refused
  // here, before the name or password is looked at (no scrypt run, a right password too). The
  // address is read only while some address is locked out: one field test on a known client's
  // path. The socket keeps its address's key (an IPv6 one is canonicalised once per connection).
  const lockout = ctx.authLockout;
  if (lockout !== undefined && lockout.lockouts > 0) {
    const ms = lockout.lockedFor(source?.remoteAddress, source);
    if (ms > 0) return lockedOut(ms);
  }
  let r: EgressRoute | Failure | undefined | Promise<EgressRoute | Failure | undefined>;
  try {
    r = checkName(ctx, name, password, source);
  } catch (err) {
    return checkFailed(err);
  }
  if (r instanceof Promise) return lockout === undefined ? r.catch(checkFailed) : r.then((v) => counted(lockout, v, source), checkFailed);
  return lockout === undefined ? r : counted(lockout, r, source);
}

/** A verdict, with a wrong password counted against its address (a refusal that judged no password is not). */
function counted(lockout: AuthLockout, v: EgressRoute | Failure | undefined, source: AuthSource | undefined): EgressRoute | Failure | undefined {
  if (v === undefined) lockout.failed(source?.remoteAddress, source);
  return v;
}

/** The refusal of a locked-out address: 429 with Retry-After (failure/types.ts `auth_locked_out`); the client is told why. */
function lockedOut(ms: number): Failure {
  const seconds = Math.max(1, Math.ceil(ms / 1000));
  return customerFacingFailure({ type: 'http_request_denied', phase: 'accept', reason: 'auth_locked_out', detail: `too many wrong credentials from this address; retry after ${seconds} s`, retryAfter: seconds });
}

/** A password check that failed (not a wrong password): a refusal it threw stands; anything else is the gateway's. */
function checkFailed(err: unknown): Failure {
  if (err instanceof Failure) return err;
  const code = err instanceof Error && typeof (err as { code?: unknown }).code === 'string' ? ` (${(err as unknown as { code: string }).code})` : '';
  return new Failure({ type: 'proxy_internal_error', phase: 'accept', detail: `the password check failed${code}`, cause: err });
}

function checkName(ctx: ForwardContext, name: string, password: string, source: AuthSource | undefined): EgressRoute | Failure | undefined | Promise<EgressRoute | Failure | undefined> {
  if (ctx.users.has(name)) {
    const u = ctx.users.authenticate(name, password, source);
    return u instanceof Promise ? u.then(plainRoute) : plainRoute(u);
  }
  // Parameters parse only behind a base that is a user (username-params.ts).
  const p = parseUsername(name, ctx.grammar, (base) => ctx.users.has(base));
  if (p.base === name) {
    // Not a user, and no parameters parse: a user's name with a mistyped, repeated or empty
    // parameter? Only with the right password is the parameter named (else it is a wrong password).
    const why = explainUsername(name, (base) => ctx.users.has(base), ctx.grammar);
    if (why) {
      const u = ctx.users.authenticate(why.base, password, source);
      const judge = (v: string | Failure | undefined): EgressRoute | Failure | undefined => (typeof v === 'string' ? badParameter(v, why.problem) : v);
      return u instanceof Promise ? u.then(judge) : judge(u);
    }
  }
  const u = ctx.users.authenticate(p.base, password, source);
  return u instanceof Promise ? u.then((v) => routeWithParameters(v, p)) : routeWithParameters(u, p);
}

/** The user of a refusal made after the password was verified (the access log names them). */
const refusedUser = new WeakMap<Failure, string>();

export function userOfRefusal(f: Failure): string | undefined {
  return refusedUser.get(f);
}

function badParameter(user: string, problem: string): Failure {
  // The user's own name, verified: the detail is shown to them (customer-facing).
  const f = customerFacingFailure({ type: 'http_request_denied', phase: 'accept', reason: 'bad_username_parameter', detail: problem });
  refusedUser.set(f, user);
  return f;
}

function withoutRefusal(r: EgressRoute | Failure | undefined): EgressRoute | undefined {
  return r instanceof Failure ? undefined : r;
}

function plainRoute(user: string | Failure | undefined): EgressRoute | Failure | undefined {
  return typeof user === 'string' ? { user } : user;
}

function routeWithParameters(user: string | Failure | undefined, p: ReturnType<typeof parseUsername>): EgressRoute | Failure | undefined {
  if (typeof user !== 'string') return user;
  const route: EgressRoute = { user };
  if (p.session !== undefined) route.session = p.session;
  if (p.ttlMs !== undefined) route.ttlMs = p.ttlMs;
  if (p.pool !== undefined) route.pool = p.pool;
  if (p.debug !== undefined) route.debug = p.debug;
  return route;
}

/**
 * The refusal of a name and password that did not verify, on every front (HTTP proxy, CONNECT,
 * SOCKS5, SOCKS4): 407 `proxy_auth_required`, the same words to the client whatever was wrong.
 * The record names the account the password was tried on (`userOfRefusal`), so an operator sees
 * which one is attacked: the user, or the user under a name with username parameters; a name
 * that is no user's is not logged at all (it may be a password typed in the name field, and
 * names a client invents would fill the per-user tables).
 */
export function wrongCredentials(ctx: ForwardContext, name: string): Failure {
  const f = new Failure({ type: 'http_request_denied', phase: 'accept', reason: 'proxy_auth_required', detail: 'wrong user name or password' });
  const account = accountOf(ctx, name);
  if (account !== undefined) refusedUser.set(f, account);
  return f;
}

/** The user a presented name is an attempt on (undefined: none); the failure path only. */
function accountOf(ctx: ForwardContext, name: string): string | undefined {
  if (ctx.users.has(name)) return name;
  const has = (base: string): boolean => ctx.users.has(base);
  const p = parseUsername(name, ctx.grammar, has);
  if (p.base !== name && has(p.base)) return p.base;
  return explainUsername(name, has, ctx.grammar)?.base;
}

function refused(detail: string): AuthOutcome {
  return { ok: false, failure: new Failure({ type: 'http_request_denied', phase: 'accept', reason: 'proxy_auth_required', detail }) };
}

/**
 * Who is asking. Credentials that are presented must be valid even when auth is
 * optional; without credentials the user is anonymous (null) only when auth is off.
 * A refusal is http_request_denied with status 407, or 429/503 when the password
 * cannot be checked now (see authenticateNameFrom; `source` as there).
 */
export function authenticate(ctx: ForwardContext, creds: Credentials | undefined, malformed = false, source?: AuthSource): AuthOutcome | Promise<AuthOutcome> {
  if (!creds) {
    // Decided without a password check: no promise (this runs once per tunnel).
    if (malformed) return refused('malformed proxy credentials');
    // No credentials: the client's address may be a user's (IP allowlist). One field test when no user has an allowlist.
    if (ctx.allowlist !== undefined) {
      const route = allowlistRoute(ctx, source);
      if (route !== undefined) return route instanceof Failure ? { ok: false, failure: route, user: refusedUser.get(route) } : { ok: true, user: route.user, route };
    }
    return ctx.settings.authRequired ? refused('proxy authentication required') : { ok: true, user: null, route: { user: null } };
  }
  const route = authenticateNameFrom(ctx, creds.user, creds.password, source);
  return route instanceof Promise ? route.then((r) => outcomeOf(ctx, creds.user, r)) : outcomeOf(ctx, creds.user, route);
}

function outcomeOf(ctx: ForwardContext, name: string, route: EgressRoute | Failure | undefined): AuthOutcome {
  if (route === undefined) route = wrongCredentials(ctx, name);
  if (route instanceof Failure) {
    const user = refusedUser.get(route);
    return user !== undefined ? { ok: false, failure: route, user } : { ok: false, failure: route };
  }
  return { ok: true, user: route.user, route };
}

export function proxyAuthenticateValue(realm: string): string {
  return `Basic realm="${realm}", charset="UTF-8"`;
}

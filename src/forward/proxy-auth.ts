import { isUtf8 } from 'node:buffer';
import { Failure } from '../failure/index.js';
import type { EgressRoute } from '../egress/index.js';
import { parseUsername } from '../tenants/index.js';
import type { ForwardContext } from './context.js';

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

export type AuthOutcome = { ok: true; user: string | null; route: EgressRoute } | { ok: false; failure: Failure };

/**
 * Check a presented name and password. The name may carry username parameters
 * (`alice-session-x-pool-dc`); the base name authenticates. A name that is itself a user
 * is taken as is. Returns the route (user + parameters) or undefined; a plain value when
 * the password was verified recently (no promise on every request of a known client).
 */
export function authenticateName(ctx: ForwardContext, name: string, password: string): EgressRoute | undefined | Promise<EgressRoute | undefined> {
  if (ctx.users.has(name)) {
    const u = ctx.users.authenticate(name, password);
    return u instanceof Promise ? u.then(plainRoute) : plainRoute(u);
  }
  const p = parseUsername(name, ctx.grammar);
  const u = ctx.users.authenticate(p.base, password);
  return u instanceof Promise ? u.then((v) => routeWithParameters(v, p)) : routeWithParameters(u, p);
}

function plainRoute(user: string | undefined): EgressRoute | undefined {
  return user === undefined ? undefined : { user };
}

function routeWithParameters(user: string | undefined, p: ReturnType<typeof parseUsername>): EgressRoute | undefined {
  if (user === undefined) return undefined;
  const route: EgressRoute = { user };
  if (p.session !== undefined) route.session = p.session;
  if (p.ttlMs !== undefined) route.ttlMs = p.ttlMs;
  if (p.pool !== undefined) route.pool = p.pool;
  return route;
}

function refused(detail: string): AuthOutcome {
  return { ok: false, failure: new Failure({ type: 'http_request_denied', phase: 'accept', status: 407, detail }) };
}

/**
 * Who is asking. Credentials that are presented must be valid even when auth is
 * optional; without credentials the user is anonymous (null) only when auth is off.
 * A refusal is http_request_denied with status 407.
 */
export function authenticate(ctx: ForwardContext, creds: Credentials | undefined, malformed = false): AuthOutcome | Promise<AuthOutcome> {
  if (!creds) {
    // Decided without a password check: no promise (this runs once per tunnel).
    if (malformed) return refused('malformed proxy credentials');
    return ctx.settings.authRequired ? refused('proxy authentication required') : { ok: true, user: null, route: { user: null } };
  }
  const route = authenticateName(ctx, creds.user, creds.password);
  return route instanceof Promise ? route.then(outcomeOf) : outcomeOf(route);
}

function outcomeOf(route: EgressRoute | undefined): AuthOutcome {
  return route !== undefined ? { ok: true, user: route.user, route } : refused('wrong user name or password');
}

export function proxyAuthenticateValue(realm: string): string {
  return `Basic realm="${realm}", charset="UTF-8"`;
}

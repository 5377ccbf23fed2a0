import { Failure } from '../failure/index.js';
import type { ForwardContext } from './context.js';

export interface Credentials {
  user: string;
  password: string;
}

/** Decode `Basic base64(user:password)`; undefined when absent or malformed. */
export function parseBasicCredentials(header: string | undefined): Credentials | undefined {
  if (!header) return undefined;
  const m = /^\s*basic\s+([A-Za-z0-9+/=_-]{1,4096})\s*$/i.exec(header);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export type AuthOutcome = { ok: true; user: string | null } | { ok: false; failure: Failure };

function refused(detail: string): AuthOutcome {
  return { ok: false, failure: new Failure({ type: 'http_request_denied', phase: 'accept', status: 407, detail }) };
}

/**
 * Who is asking. Credentials that are presented must be valid even when auth is
 * optional; without credentials the user is anonymous (null) only when auth is off.
 * A refusal is http_request_denied with status 407.
 */
export async function authenticate(ctx: ForwardContext, creds: Credentials | undefined, malformed = false): Promise<AuthOutcome> {
  if (!creds) {
    if (malformed) return refused('malformed proxy credentials');
    return ctx.settings.authRequired ? refused('proxy authentication required') : { ok: true, user: null };
  }
  const user = await ctx.users.authenticate(creds.user, creds.password);
  return user !== undefined ? { ok: true, user } : refused('wrong user name or password');
}

export function proxyAuthenticateValue(realm: string): string {
  return `Basic realm="${realm}", charset="UTF-8"`;
}

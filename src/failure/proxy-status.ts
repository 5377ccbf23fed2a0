import type { Failure } from './failure.js';

/**
 * RFC 9209 `Proxy-Status` members in RFC 8941 (Structured Field Values) syntax.
 * Hand-written: the field is a list of tokens/strings with a few parameters, and the
 * hot path needs it without a general structured-field library.
 */

const TOKEN_RE = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*$/;

/** Serialize an sf-string: printable ASCII only, `\` and `"` escaped; other bytes become `?`. */
export function sfString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22 || c === 0x5c) out += '\\' + s[i];
    else if (c >= 0x20 && c <= 0x7e) out += s[i];
    else out += '?';
  }
  return out + '"';
}

/** An sf-token when the value is a valid token, else an sf-string. */
export function sfTokenOrString(s: string): string {
  return TOKEN_RE.test(s) ? s : sfString(s);
}

function sfParam(key: string, value: string | number): string {
  if (typeof value === 'number') return `;${key}=${Math.trunc(value)}`;
  return `;${key}=${sfString(value)}`;
}

export interface ProxyStatusOptions {
  /** This intermediary's name in the list. */
  name: string;
  /** Include next-hop and details (topology): only for trusted clients. */
  revealTopology: boolean;
  /** Prefix of the problem+json `type` (the type's anchor in docs/errors.md follows). Default PROBLEM_TYPE_BASE. */
  problemTypeBase?: string;
}

/** The member for a failure the gateway produced itself. */
export function failureMember(f: Failure, opts: ProxyStatusOptions): string {
  let m = `${sfTokenOrString(opts.name)};error=${f.type}`;
  if (opts.revealTopology) {
    if (f.nextHop) m += sfParam('next-hop', f.nextHop);
    if (f.params) for (const k in f.params) m += sfParam(k, f.params[k]!);
    m += sfParam('details', f.detail);
  } else if (f.params && f.type === 'http_request_error') {
    for (const k in f.params) m += sfParam(k, f.params[k]!);
  }
  return m;
}

/** The member for an upstream response passed through (no `error`). */
export function receivedMember(status: number, nextHop: string | undefined, opts: ProxyStatusOptions): string {
  let m = `${sfTokenOrString(opts.name)};received-status=${status}`;
  if (opts.revealTopology && nextHop) m += sfParam('next-hop', nextHop);
  return m;
}

/** Append our member to what earlier intermediaries (closer to the origin) said. */
export function appendMember(existing: string | string[] | undefined, member: string): string {
  if (existing === undefined || existing.length === 0) return member;
  const prior = Array.isArray(existing) ? existing.join(', ') : existing;
  return prior.trim() ? `${prior}, ${member}` : member;
}

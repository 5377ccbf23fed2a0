import type { RedirectConfig } from '../config/tls.js';
import type { ListenerConfig } from '../config/schema.js';

/**
 * What a listener adds to its requests beyond plain HTTP: the scheme the client used, the
 * Strict-Transport-Security value, the redirect to HTTPS. A plain listener without a
 * redirect has none (`undefined`), so its requests test one field and do nothing more.
 */
export interface ListenerFront {
  /** The scheme the client used (X-Forwarded-Proto, Forwarded proto=). */
  readonly scheme: 'http' | 'https';
  /** The Strict-Transport-Security value (TLS listeners with hsts). */
  readonly hsts: string | undefined;
  /** Answer every request with a redirect to HTTPS (plain listeners). */
  readonly redirect: RedirectConfig | undefined;
  /** The request is an HTTP/2 stream (./h2.ts): no connection order, no Connection header. */
  readonly h2: boolean;
}

/** The front of a listener, or undefined when it is plain HTTP with nothing to add. */
export function listenerFront(l: ListenerConfig): ListenerFront | undefined {
  if (l.tls === undefined && l.redirectToHttps === undefined) return undefined;
  const h = l.tls?.hsts;
  const hsts = h === undefined ? undefined : `max-age=${h.maxAge}${h.includeSubDomains ? '; includeSubDomains' : ''}${h.preload ? '; preload' : ''}`;
  return { scheme: l.tls !== undefined ? 'https' : 'http', hsts, redirect: l.redirectToHttps, h2: false };
}

/** The Location of the redirect to HTTPS for a request's host (port dropped) and target. */
export function httpsLocation(redirect: RedirectConfig, host: string, target: string): string {
  let name = host;
  if (name.startsWith('[')) name = name.slice(0, name.indexOf(']') + 1);
  else {
    const colon = name.lastIndexOf(':');
    if (colon >= 0) name = name.slice(0, colon);
  }
  return `https://${name}${redirect.port === 443 ? '' : `:${redirect.port}`}${target}`;
}

/** Whether a response head (flat name, value pairs) already has Strict-Transport-Security. */
export function hasHsts(head: readonly string[]): boolean {
  for (let i = 0; i < head.length; i += 2) {
    const n = head[i]!;
    if (n.length === 25 && n.toLowerCase() === 'strict-transport-security') return true;
  }
  return false;
}

import { isIP } from 'node:net';
import type { Failure } from '../failure/index.js';
import { customerFacingFailure } from '../tenants/index.js';

export interface HttpTarget {
  scheme: 'http' | 'https';
  /** Host name (lower-case, IDNA) or IP literal without brackets. */
  host: string;
  port: number;
  /** Host header value / authority as sent on: host[:port] without userinfo. */
  authority: string;
  /** Origin for the upstream pool: scheme://authority. */
  origin: string;
  /** The request target in origin-form, byte for byte as the client wrote it. */
  path: string;
}

const ABSOLUTE_RE = /^(https?):\/\/([^/?#]*)([^#]*)/i;

/**
 * A request target refused: its detail says what is wrong with the client's own input (no
 * topology), so the client is shown it even where details are hidden (finding, session 29:
 * an origin-form `GET /` got only "not valid HTTP", never "use http://host/path").
 */
function bad(detail: string): Failure {
  return customerFacingFailure({ type: 'http_request_error', phase: 'accept', reason: 'bad_request', detail });
}

/**
 * Split an absolute-form request target (`http://host:port/path?q`). The path is kept
 * as written (no normalisation: a proxy must not change what it forwards); userinfo is
 * dropped; the authority is validated and canonicalised by the WHATWG URL parser.
 */
export function parseAbsoluteTarget(url: string | undefined): HttpTarget | Failure {
  if (!url) return bad('missing request target');
  const m = ABSOLUTE_RE.exec(url);
  if (!m) return bad('not an absolute-form request target (this is a forward proxy: use http://host/path)');
  const scheme = m[1]!.toLowerCase() as 'http' | 'https';
  let authority = m[2]!;
  const at = authority.lastIndexOf('@');
  if (at >= 0) authority = authority.slice(at + 1);
  if (!authority) return bad('empty host in the request target');
  let parsed: URL;
  try {
    parsed = new URL(`${scheme}://${authority}/`);
  } catch {
    return bad('invalid host in the request target');
  }
  let host = parsed.hostname;
  if (host.startsWith('[')) host = host.slice(1, -1);
  if (!host) return bad('empty host in the request target');
  if (isIP(host) === 0 && !/^[a-z0-9_\-.]+$/.test(host)) return bad('invalid host in the request target');
  const port = parsed.port ? Number(parsed.port) : scheme === 'https' ? 443 : 80;
  if (!(port >= 1 && port <= 65535)) return bad('invalid port in the request target');
  let path = m[3] ?? '';
  if (path === '') path = '/';
  else if (path.startsWith('?')) path = '/' + path;
  if (/[^\x21-\xff]/.test(path)) return bad('invalid character in the request target');
  return { scheme, host, port, authority: parsed.host, origin: `${scheme}://${parsed.host}`, path };
}

/** Split a CONNECT authority-form target (`host:port`, `[v6]:port`). */
export function parseAuthorityTarget(target: string | undefined): { host: string; port: number } | Failure {
  if (!target) return bad('missing CONNECT target');
  const plain = plainAuthority(target);
  if (plain !== undefined) return plain;
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(target) ?? /^([A-Za-z0-9_\-.]+):(\d{1,5})$/.exec(target);
  if (!m) return bad('CONNECT target must be host:port');
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return bad('invalid port in the CONNECT target');
  let host = m[1]!.toLowerCase();
  if (m[0].startsWith('[')) {
    if (isIP(host) !== 6) return bad('invalid IPv6 address in the CONNECT target');
  } else if (!isCanonicalHost(host)) {
    try {
      host = new URL(`http://${host}/`).hostname;
    } catch {
      return bad('invalid host in the CONNECT target');
    }
  }
  return { host, port };
}

/**
 * The common CONNECT target without a regular expression (once per tunnel): `name:port` or
 * `a.b.c.d:port` with a host already lower-case, canonical (`isCanonicalHost`) and a valid
 * port. The same result the general path gives for it; anything else (upper case, IPv6,
 * a bad port) goes the general way, which also words the refusals.
 */
function plainAuthority(t: string): { host: string; port: number } | undefined {
  const colon = t.indexOf(':');
  const n = t.length;
  if (colon <= 0 || n - colon - 1 < 1 || n - colon - 1 > 5) return undefined;
  let port = 0;
  for (let i = colon + 1; i < n; i++) {
    const c = t.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return undefined;
    port = port * 10 + (c - 0x30);
  }
  if (port < 1 || port > 65535) return undefined;
  for (let i = 0; i < colon; i++) {
    const c = t.charCodeAt(i);
    // [a-z0-9_.-]: nothing to lower-case
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x5f)) return undefined;
  }
  const host = t.slice(0, colon);
  return isCanonicalHost(host) ? { host, port } : undefined;
}

/** Lower-case ASCII labels of letters, digits, '-' and '_' (the WHATWG host parser keeps them as they are). */
const PLAIN_NAME = /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?$/;
const NUMERIC_LABEL = /^(?:\d+|0x[0-9a-f]*)$/;

/**
 * Whether the WHATWG URL host parser would return this (lower-cased, bracket-free) host
 * unchanged, so it can be skipped (it costs ~7 µs per CONNECT): a dotted-quad IPv4 literal,
 * or a plain ASCII name whose last label is not a number (those go through the IPv4
 * number parser: `127.1`, `0x7f.1`) and with no `xn--` label (those are IDNA-checked).
 * Anything else goes through `new URL()`.
 */
export function isCanonicalHost(host: string): boolean {
  if (isIP(host) === 4) return true;
  if (!PLAIN_NAME.test(host) || host.includes('xn--')) return false;
  const trimmed = host.endsWith('.') ? host.slice(0, -1) : host;
  const last = trimmed.slice(trimmed.lastIndexOf('.') + 1);
  return !NUMERIC_LABEL.test(last);
}

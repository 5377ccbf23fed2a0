import type { IncomingMessage } from 'node:http';
import { isIPv6 } from 'node:net';
import { Failure } from '../failure/index.js';
import { lowerCase, nameIs } from '../http/token.js';
import { normalizeTarget, type EscapedSlashes, type RefusePath } from '../http/path.js';

/**
 * The request-target and Host of a reverse-gateway request, checked and normalised before
 * routing (docs/security.md, "Reverse gateway request hygiene"):
 * - Host (RFC 9112 §3.2): exactly one for HTTP/1.1, none or one for HTTP/1.0, a valid
 *   `uri-host [":" port]`; an absolute-form request is routed and forwarded by its URI
 *   authority (§3.2.2), not by its Host header.
 * - Path (RFC 3986 §6.2.2): unreserved characters percent-decoded, percent-encodings in
 *   upper case, dot segments (also percent-encoded ones) resolved. `%2F` and `%5C` stay
 *   encoded and are not separators (under `escapedSlashes: keep`, the default; `reject`
 *   refuses them, `decode` reads them as `/` and `\` first), but a segment that would be a dot segment once an
 *   upstream decodes them (`..%2F`, `%2F..`, `.%5C`) is refused: it could climb out of the
 *   route's prefix at an upstream that decodes before resolving.
 * - Empty segments are merged (`//admin` is `/admin`, as nginx's `merge_slashes`), a literal
 *   `\` is refused, and so is a dot or empty segment with path parameters (`..;x`, `.;`,
 *   `/;x/`, but for the last segment): upstreams
 *   that merge slashes, read `\` as `/` or drop `;params` (Tomcat, Jetty, Spring) would read
 *   such a path as another route's.
 * - `;` path parameters stay in the path forwarded, but routes are matched on the path
 *   without them (`routePath`): `/admin;x` takes the `/admin` route, and so does `/admin%3Bx`
 *   (an upstream that decodes before dropping parameters reads `/admin`).
 * - `%00` in the path is refused (the end of the path to a C or PHP upstream).
 * - A `#` anywhere in the request-target is refused (a fragment is never sent; HAProxy,
 *   CVE-2023-45539).
 */
export interface RequestTarget {
  /** Lower-case host name for routing (port and trailing dot removed; '' when none). */
  readonly routeHost: string;
  /** The Host value to forward under `host: preserve`: the URI authority (absolute-form) or the Host header. */
  readonly hostValue: string | undefined;
  /** The normalised origin-form path and query. */
  readonly path: string;
  /** `path` without its segments' `;` parameters, for route matching (the same string when it has none). */
  readonly routePath: string;
  /** The one Host header field's value as the client sent it (undefined when none). */
  readonly hostField: string | undefined;
}

function refuse(detail: string): Failure {
  return new Failure({ type: 'http_request_error', phase: 'accept', reason: 'bad_request', detail });
}

/** More header fields than the listener's `maxHeaderCount` → 431 (before anything else is looked at). */
export function checkHeaderCount(req: IncomingMessage, max: number): void {
  const n = req.rawHeaders.length >> 1;
  if (n > max) {
    throw new Failure({ type: 'http_request_error', phase: 'accept', reason: 'header_fields_too_large', detail: `more than ${max} header fields (the listener's maxHeaderCount)` });
  }
}

/** reg-name characters of RFC 3986 (unreserved, sub-delims) plus '%' of pct-encoded, checked separately. */
const REG_NAME = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$/;

/** A Host value or URI authority (`uri-host [":" port]`); undefined when valid, else why not. */
export function hostProblem(v: string): string | undefined {
  let host = v;
  let port: string | undefined;
  if (v.charCodeAt(0) === 91 /* [ */) {
    const end = v.indexOf(']');
    if (end < 0) return 'an IP literal without "]"';
    const inner = v.slice(1, end);
    if (!isIPv6(inner) && !/^v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+$/.test(inner)) return 'an invalid IP literal';
    const rest = v.slice(end + 1);
    if (rest !== '') {
      if (rest.charCodeAt(0) !== 58 /* : */) return 'characters after the IP literal';
      port = rest.slice(1);
    }
    host = '';
  } else {
    const colon = v.indexOf(':');
    if (colon >= 0) {
      host = v.slice(0, colon);
      port = v.slice(colon + 1);
    }
    if (!REG_NAME.test(host)) return 'characters not allowed in a host name';
    // An empty label: `a.test..` and `.a.test` are not `a.test` to the route but may be to the upstream (nginx refuses them too); one trailing dot is the root.
    if (host.charCodeAt(0) === 46 /* . */ || host.includes('..')) return 'an empty label in the host name';
    if (host === '' && port !== undefined) return 'a port without a host';
  }
  if (port !== undefined) {
    if (port === '') return 'an empty port';
    if (!/^[0-9]{1,5}$/.test(port) || Number(port) > 65535) return 'a port that is not a number from 0 to 65535';
  }
  return undefined;
}

/**
 * Host values already found valid, each with its host name for routing: a keep-alive client
 * sends the same Host on every request, and most gateways serve a few names, so the check
 * and the lower-casing run once per value instead of once per request (bench/icount.ts,
 * docs/benchmarks.md §41). Bounded: emptied when full, so a client that sends a new Host
 * each time costs what it did before, plus a Map insert.
 */
const VALID_HOSTS = new Map<string, string>();
const VALID_HOSTS_MAX = 512;

/** The routing host of a valid Host value or URI authority; undefined when hostProblem finds it invalid (and says why). */
function validRouteHost(v: string): string | undefined {
  const known = VALID_HOSTS.get(v);
  if (known !== undefined) return known;
  if (hostProblem(v) !== undefined) return undefined;
  const route = routeHostOf(v);
  if (VALID_HOSTS.size >= VALID_HOSTS_MAX) VALID_HOSTS.clear();
  VALID_HOSTS.set(v, route);
  return route;
}

/** Host value → lower-case host name for routing (port and trailing dot removed); the host cache keys are built from (a purge by key spells its host so too, `purgeTarget`). */
export function routeHostOf(v: string): string {
  let h = v;
  if (h.charCodeAt(0) === 91 /* [ */) h = h.slice(0, h.indexOf(']') + 1);
  else {
    const colon = h.indexOf(':');
    if (colon >= 0) h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  return lowerCase(h);
}

/** Every character of `s` is visible ASCII (0x21–0x7E). */
function visibleAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

/**
 * Check the Host field and the request-target, and normalise the path. Throws a Failure
 * (400 `http_request_error`, the detail says what) for anything that must not be routed.
 * `escapedSlashes` (the config's) is read only for a path that needs normalising.
 * `url` other than '*' (answered elsewhere).
 */
export function checkRequestTarget(req: IncomingMessage, escapedSlashes: EscapedSlashes = 'keep'): RequestTarget {
  if (req.httpVersion === '0.9') {
    // llhttp takes a bare `GET /` line as HTTP/0.9: no version, no headers, no Host.
    throw new Failure({ type: 'http_request_error', phase: 'accept', reason: 'version_not_supported', detail: 'an HTTP/0.9 request line (no HTTP version); the gateway speaks HTTP/1.0 and 1.1' });
  }
  const raw = req.rawHeaders;
  let hostHeader: string | undefined;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (nameIs(n, 'host')) {
      hosts++;
      hostHeader = raw[i + 1]!;
    }
  }
  if (hosts > 1) throw refuse(`${hosts} Host header fields (RFC 9112 §3.2 allows one)`);
  if (hosts === 0 && req.httpVersion === '1.1') throw refuse('an HTTP/1.1 request needs a Host header (RFC 9112 §3.2)');
  const hostRoute = hostHeader === undefined ? undefined : validRouteHost(hostHeader);
  if (hostHeader !== undefined && hostRoute === undefined) throw refuse(`invalid Host header: ${hostProblem(hostHeader)!}`);
  const url = req.url ?? '';
  if (url.includes('#')) throw refuse('a request-target with a fragment ("#")');
  // HTTP/1.1's request line gets this from the parser (llhttp; front: net's visible-ASCII
  // target); nghttp2 refuses controls, SP and DEL in :path but not 0x80–0xFF, which went raw
  // into the upstream's request line (h2-downgrade-smuggling.test finding). One compare for HTTP/1.x.
  if (req.httpVersion === '2.0' && !visibleAscii(url)) throw refuse('a :path byte outside visible ASCII (RFC 9112 §3.2: percent-encode it)');
  let authority: string | undefined;
  let authorityRoute: string | undefined;
  let rest: string;
  if (url.charCodeAt(0) === 47 /* / */) {
    rest = url;
  } else if (req.httpVersion === '2.0') {
    // RFC 9113 §8.3.1: :path holds a path and query, never a URI. nghttp2 checks it for http
    // and https only, so with another :scheme an absolute URI came through and was routed by
    // its authority over :authority (adversarial review, session 30).
    throw refuse('an HTTP/2 :path that is not a path (RFC 9113 §8.3.1)');
  } else {
    const m = /^(https?):\/\/([^/?]*)/i.exec(url);
    if (m === null) throw refuse('invalid request-target');
    authority = m[2]!;
    if (authority.includes('@')) throw refuse('userinfo in the request-target authority');
    authorityRoute = authority === '' ? undefined : validRouteHost(authority);
    if (authorityRoute === undefined) throw refuse(`invalid request-target authority: ${authority === '' ? 'empty' : hostProblem(authority)!}`);
    rest = url.slice(m[0].length);
    if (rest === '' || rest.charCodeAt(0) === 63 /* ? */) rest = '/' + rest;
  }
  // The common path has nothing to normalise and no `;` (needsNormalizing looks for it): one pass, no object.
  const n = normalizeTarget(rest, refusePath, escapedSlashes);
  return { routeHost: authorityRoute ?? hostRoute ?? '', hostValue: authority ?? hostHeader, path: n?.path ?? rest, routePath: n?.routePath ?? rest, hostField: hostHeader };
}

/** A 400 Failure for a path that must not be routed (the RefusePath of the request path). */
const refusePath: RefusePath = refuse;

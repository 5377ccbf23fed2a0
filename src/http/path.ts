/**
 * The request path as the reverse gateway routes it (docs/security.md, "Paths"): one
 * normalisation, used by the request-target check for every request (gateway/request-target.ts)
 * and by the config schema to refuse route prefixes that no normalised path could match
 * (`prefixProblem`). Refusals go through the caller's `refuse`, which makes the error to throw
 * (a 400 Failure at a request, a plain Error at config load).
 */

/** Makes the error thrown for a path that must not be routed, from what is wrong with it. */
export type RefusePath = (detail: string) => Error;

/** The `escapedSlashes` setting: what `%2F` and `%5C` in a path are (config schema). */
export type EscapedSlashes = 'keep' | 'reject' | 'decode';

const ESCAPED_SLASH = /%2F|%5C/i;

const HEX = '0123456789ABCDEF';

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  c |= 0x20;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

function isUnreserved(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 46 || c === 95 || c === 126;
}

/**
 * A segment with encoded separators that an upstream decoding them would read as containing a
 * dot segment: `..%2F`, `%5C..`, and `..%3B` (an encoded `;`: decoded, then its parameters cut,
 * it is `..`; review of session 36: `/x/..%3B/admin` took the catch-all route).
 */
const HIDDEN_DOT_SEGMENT = /(?:^|%2F|%5C)\.\.?(?:%2F|%5C|%3B|;|$)/;

/**
 * Whether a path may need normalising: a `%`, `\\` or `;`, or a `/` followed by `.` or `/`.
 * One pass; most paths have none of them.
 */
export function needsNormalizing(p: string): boolean {
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i);
    if (c === 37 /* % */ || c === 92 /* \ */ || c === 59 /* ; */) return true;
    if (c === 47 /* / */) {
      const n = p.charCodeAt(i + 1);
      if (n === 46 /* . */ || n === 47 /* / */) return true;
    }
  }
  return false;
}

/**
 * Normalise an absolute path (RFC 3986 §6.2.2), for a path needsNormalizing picked:
 * percent-encodings of unreserved characters decoded, other percent-encodings upper-cased,
 * dot segments resolved (§5.2.4; `..` at the root stays at the root), empty segments merged
 * (a trailing `/` kept). `escapedSlashes` other than `keep` first refuses `%2F` and `%5C` or
 * decodes them to `/` and `\`. Throws `refuse(detail)` for a malformed percent-encoding, `%00`, a
 * literal backslash, a dot segment with path parameters, an empty segment with parameters
 * before another, and dot segments hidden behind encoded separators (request-target.ts).
 */
export function normalizeSlow(p: string, refuse: RefusePath, escapedSlashes: EscapedSlashes = 'keep'): string {
  if (escapedSlashes !== 'keep' && ESCAPED_SLASH.test(p)) {
    if (escapedSlashes === 'reject') throw refuse('an encoded slash or backslash ("%2F", "%5C") in the path, which escapedSlashes: reject refuses');
    p = p.replace(/%2F/gi, '/').replace(/%5C/gi, '\\');
  }
  if (p.indexOf('\\') >= 0) {
    throw refuse('a backslash in the path: some upstreams read it as "/" (RFC 3986 has no "\\" in a URI; such paths are refused)');
  }
  const segs = p.split('/');
  const out: string[] = [];
  // segs[0] is '' (the path starts with '/').
  for (let i = 1; i < segs.length; i++) {
    const s = decodeSegment(segs[i]!, refuse);
    const last = i === segs.length - 1;
    if (s === '.' || s === '..') {
      if (s === '..' && out.length > 0) out.pop();
      if (last) out.push('');
      continue;
    }
    if (s === '') {
      // An empty segment: merged with its neighbour, except the last (a trailing "/").
      if (last) out.push('');
      continue;
    }
    if (s.length > 1 && s.includes('%') && HIDDEN_DOT_SEGMENT.test(s)) {
      throw refuse('a dot segment behind an encoded slash, backslash or semicolon ("..%2F", "..%3B"); such paths are refused');
    }
    if (s.charCodeAt(0) === 46 /* . */ && DOT_SEGMENT_WITH_PARAMETERS.test(s)) {
      throw refuse('a dot segment with path parameters ("..;x"): upstreams that drop ";" parameters read it as ".."; such paths are refused');
    }
    if ((s.charCodeAt(0) === 59 /* ; */ || s.startsWith('%3B')) && !last) {
      // `/;x/admin` is `//admin` to an upstream that drops parameters, and `/admin` once it merges slashes;
      // `/%3B/admin` too at one that decodes first (decodeSegment wrote the encoding in upper case).
      throw refuse('an empty segment with path parameters ("/;x/", "/%3B/") before another segment; such paths are refused');
    }
    out.push(s);
  }
  return '/' + out.join('/');
}

/** An origin-form target (path and query) whose path needed normalising: what the gateway forwards and routes by. */
export interface NormalizedTarget {
  /** The normalised path, with the query as sent. */
  readonly path: string;
  /** `path` without its segments' `;` parameters, for route matching (the same string when it has none). */
  readonly routePath: string;
}

/**
 * An origin-form target (starting with `/`) normalised as the reverse gateway routes it, the one
 * place that splits a request's path from its query to normalise it: the path part by
 * `normalizeSlow` when `needsNormalizing` picks it, the query as sent. Undefined when the path
 * needs nothing (the common case: one pass over the path, nothing allocated), so that the target
 * is itself the path and the route path. Throws `refuse(detail)` as `normalizeSlow`. The
 * request-target check runs it on every request (gateway/request-target.ts).
 */
export function normalizeTarget(target: string, refuse: RefusePath, escapedSlashes: EscapedSlashes = 'keep'): NormalizedTarget | undefined {
  const q = target.indexOf('?');
  const rawPath = q < 0 ? target : target.slice(0, q);
  if (!needsNormalizing(rawPath)) return undefined;
  const pathPart = normalizeSlow(rawPath, refuse, escapedSlashes);
  const query = q < 0 ? '' : target.slice(q);
  const path = pathPart + query;
  return { path, routePath: hasParameters(pathPart) ? withoutParameters(pathPart) + query : path };
}

/**
 * A path with its query (origin-form, starting with `/`) as a request's is normalised before it
 * names a cache key (`normalizeTarget`'s path; the target itself when it needs nothing). Throws
 * `refuse(detail)` as `normalizeSlow`.
 */
export function normalizeOriginForm(target: string, refuse: RefusePath, escapedSlashes: EscapedSlashes = 'keep'): string {
  return normalizeTarget(target, refuse, escapedSlashes)?.path ?? target;
}

/** `.` or `..` followed by `;` parameters: a dot segment to Tomcat, Jetty and Spring. */
const DOT_SEGMENT_WITH_PARAMETERS = /^\.\.?;/;

/**
 * A normalised path without the `;` parameters of its segments (`/a;x/b;y=1` → `/a/b`), for route
 * matching. An encoded `;` (`%3B`, upper case once normalised) opens parameters too: an upstream
 * that decodes before it drops parameters reads `/admin%3Bx` as `/admin` (review of session 36:
 * it took the catch-all route).
 */
export function withoutParameters(p: string): string {
  let out = '';
  let from = 0;
  for (;;) {
    const semi = parametersAt(p, from);
    if (semi < 0) return out + p.slice(from);
    out += p.slice(from, semi);
    const slash = p.indexOf('/', semi);
    if (slash < 0) return out;
    from = slash;
  }
}

/** Where the next segment parameters start in a normalised path from `from` (`;` or `%3B`), or -1. */
function parametersAt(p: string, from: number): number {
  const semi = p.indexOf(';', from);
  const encoded = p.indexOf('%3B', from);
  return semi < 0 ? encoded : encoded < 0 ? semi : Math.min(semi, encoded);
}

/** Whether a normalised path has segment parameters (`;` or `%3B`): its route is matched without them. */
export function hasParameters(p: string): boolean {
  return p.indexOf(';') >= 0 || p.indexOf('%3B') >= 0;
}

function decodeSegment(s: string, refuse: RefusePath): string {
  if (s.indexOf('%') < 0) return s;
  let r = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 37 /* % */) {
      r += s[i];
      continue;
    }
    const h = i + 2 < s.length ? hexVal(s.charCodeAt(i + 1)) : -1;
    const l = h < 0 ? -1 : hexVal(s.charCodeAt(i + 2));
    if (l < 0) throw refuse('a malformed percent-encoding in the path');
    const v = (h << 4) | l;
    // %00: the end of the path to an upstream in C or PHP (`/admin%00` is `/admin`); nginx refuses it too.
    if (v === 0) throw refuse('an encoded NUL ("%00") in the path');
    r += isUnreserved(v) ? String.fromCharCode(v) : '%' + HEX[h]! + HEX[l]!;
    i += 2;
  }
  return r;
}

/** The RefusePath outside a request: a plain Error with the detail as its message (config load, the cache's reading of a URL field). */
export const refuseAsError: RefusePath = (detail) => new Error(detail);

/** What the normalisation does to a path that changes it, each as "request paths are matched …". */
const RULES: ReadonlyArray<readonly [(p: string) => boolean, string]> = [
  [(p) => p.includes('//'), 'with empty segments merged'],
  [(p) => p.includes(';') || /%3b/i.test(p), 'without their ";" (or "%3B") parameters'],
  [(p) => p.split('/').some((s) => /^(?:\.|%2e){1,2}$/i.test(s)), 'with dot segments resolved'],
  [(p) => encodings(p).some((e) => isUnreserved(parseInt(e, 16))), 'with percent-encoded unreserved characters decoded'],
  [(p) => encodings(p).some((e) => !isUnreserved(parseInt(e, 16)) && e !== e.toUpperCase()), 'with percent-encodings in upper case'],
];

/** The two hex digits of each percent-encoding in `p`. */
function encodings(p: string): string[] {
  return [...p.matchAll(/%([0-9A-Fa-f]{2})/g)].map((m) => m[1]!);
}

/**
 * Why a route's path prefix can never match a request path, or undefined when it can: routes
 * are matched on the normalised path without `;` parameters (RequestTarget.routePath), so a
 * prefix not in that form takes nothing (`//admin`, `/admin;x`, `/%61dmin`), and one with a
 * character a request path never has, or one whose requests are refused, neither. A prefix not
 * starting with "/" is left to the schema's own check.
 */
export function prefixProblem(p: string): string | undefined {
  if (p.charCodeAt(0) !== 47 /* / */) return undefined;
  const q = JSON.stringify(p);
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return `${q} can never match: a request path has no space or control character (write it percent-encoded, such as "%20")`;
    if (c > 0x7f) return `${q} can never match: a request path has no character outside ASCII, it arrives percent-encoded in UTF-8 (${JSON.stringify(p.replace(/[^\x00-\x7f]+/g, encodeURIComponent))})`;
  }
  if (p.includes('#')) return `${q} can never match: a request-target with a fragment ("#") is refused (400)`;
  if (p.includes('?')) return `${q} is not a path: "?" starts the query, which the prefix would then be matched against; routes match on the path`;
  let normal: string;
  try {
    normal = withoutParameters(normalizeSlow(p, refuseAsError));
  } catch (err) {
    return `${q} can never match: a request with such a path is refused (400): ${(err as Error).message}`;
  }
  if (normal === p) return undefined;
  const how = RULES.filter(([applies]) => applies(p)).map(([, said]) => said);
  return `${q} can never match: request paths are matched ${how.join(' and ')} (${JSON.stringify(normal)})`;
}

/**
 * Why a prefix that prefixProblem accepts can still never match under an `escapedSlashes`
 * other than `keep`: a request path with `%2F` or `%5C` is then refused, or read with them
 * decoded, so a prefix holding one takes nothing. Undefined when it can match.
 */
export function escapedSlashProblem(p: string, escapedSlashes: EscapedSlashes): string | undefined {
  if (escapedSlashes === 'keep' || !ESCAPED_SLASH.test(p)) return undefined;
  const q = JSON.stringify(p);
  if (escapedSlashes === 'reject') return `${q} can never match: escapedSlashes: reject refuses a request path with "%2F" or "%5C" (400)`;
  let normal: string;
  try {
    normal = withoutParameters(normalizeSlow(p, refuseAsError, 'decode'));
  } catch {
    return `${q} can never match: escapedSlashes: decode reads "%5C" in a request path as "\\", and a path with a backslash is refused (400)`;
  }
  return `${q} can never match: escapedSlashes: decode reads "%2F" in a request path as "/" (${JSON.stringify(normal)})`;
}

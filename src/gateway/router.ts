import type { RouteConfig } from '../config/schema.js';
import { lowerCase } from '../http/token.js';
import { hasParameters, withoutParameters } from '../http/path.js';
import { parseDuration } from '../config/duration.js';
import type { Cluster } from '../upstream/cluster.js';
import type { RetryKind, RetryPolicy } from './retry-policy.js';
import type { ResponseCache, RouteCache } from '../cache/index.js';
import { Failure } from '../failure/index.js';

/** A route compiled for matching: first match in config order wins. */
export interface Route {
  readonly name: string;
  readonly cluster: Cluster;
  readonly pathPrefix: string;
  /** Prefix ends in '/', so a plain startsWith is a segment match. */
  readonly prefixIsDir: boolean;
  /** match.caseInsensitive: `pathPrefix` in lower case, compared without ASCII case; undefined: compared with case. */
  readonly prefixLower: string | undefined;
  /** match.methods, with HEAD wherever GET is (RFC 9110 §9.3.2); undefined: any method. */
  readonly methods: ReadonlySet<string> | undefined;
  readonly headers: ReadonlyArray<readonly [string, string]> | undefined;
  readonly exactHosts: ReadonlySet<string> | undefined;
  readonly wildcardSuffixes: readonly string[] | undefined;
  /** Replacement for the matched prefix, or undefined to keep the path. */
  readonly newPrefix: string | undefined;
  /** 'preserve' | 'endpoint' | a literal Host value. */
  readonly host: string;
  readonly retry: RetryPolicy;
  readonly retryOn: ReadonlySet<RetryKind>;
  readonly perTryTimeoutMs: number | undefined;
  readonly deadlineMs: number | undefined;
  readonly retryAfterMaxMs: number;
  /** Upgrade protocol names (lower case) tunnelled after a 101. */
  readonly upgrades: ReadonlySet<string>;
  /** The route's cache (docs/cache.md); undefined: off, and the exchange tests this one field. */
  readonly cache: RouteCache | undefined;
}

const HOST_CACHE_MAX = 4096;

/** A route's `host` setting as the Host value it sends, or undefined for `preserve` and `endpoint` (the request's or the endpoint's own). */
export function literalHost(host: string): string | undefined {
  return host === 'preserve' || host === 'endpoint' ? undefined : host;
}

export function compileRoute(cfg: RouteConfig, index: number, cluster: Cluster, cache?: ResponseCache): Route {
  const name = cfg.name ?? `route-${index}`;
  if (cfg.cache !== undefined) {
    const rewrites = cfg.stripPrefix || cfg.rewritePrefix !== undefined;
    // A caseInsensitive route that rewrites keys every casing of its prefix as configured (keyPath
    // in cache-phase.ts): a purge names its keys in any casing too.
    const casing = rewrites && cfg.match.caseInsensitive ? { keyPath: (p: string) => routeKeyPath(route, p), keyPrefix: (p: string) => routeKeyPrefix(route, p) } : undefined;
    cache?.addRoute(name, cluster.name, rewrites ? (p) => clientPaths(route, p) : undefined, casing);
  }
  const hosts = cfg.match.host === undefined ? undefined : Array.isArray(cfg.match.host) ? cfg.match.host : [cfg.match.host];
  const exact = hosts?.filter((h) => !h.startsWith('*.')).map((h) => h.toLowerCase());
  const wild = hosts?.filter((h) => h.startsWith('*.')).map((h) => h.slice(1).toLowerCase());
  const prefix = cfg.match.pathPrefix;
  const route: Route = {
    name,
    cluster,
    pathPrefix: prefix,
    prefixIsDir: prefix.endsWith('/'),
    prefixLower: cfg.match.caseInsensitive ? lowerCase(prefix) : undefined,
    methods: cfg.match.methods ? routeMethods(cfg.match.methods) : undefined,
    headers: cfg.match.headers ? Object.entries(cfg.match.headers).map(([k, v]) => [k.toLowerCase(), v] as const) : undefined,
    exactHosts: hosts ? new Set(exact) : undefined,
    wildcardSuffixes: hosts ? wild : undefined,
    newPrefix: cfg.stripPrefix ? '/' : cfg.rewritePrefix,
    host: cfg.host,
    retry: {
      tries: cfg.retry.tries,
      backoffBaseMs: parseDuration(cfg.retry.backoff.base)!,
      backoffMaxMs: parseDuration(cfg.retry.backoff.max)!,
      idempotencyKey: cfg.retry.idempotencyKey,
    },
    retryOn: new Set(cfg.retry.on),
    perTryTimeoutMs: cfg.retry.perTryTimeout === undefined ? undefined : parseDuration(cfg.retry.perTryTimeout),
    deadlineMs: cfg.retry.deadline === undefined ? undefined : parseDuration(cfg.retry.deadline),
    retryAfterMaxMs: parseDuration(cfg.retry.retryAfterMax)!,
    upgrades: new Set(cfg.upgrades.map((u) => u.toLowerCase())),
    cache:
      cfg.cache === undefined || cache === undefined
        ? undefined
        : {
            cache,
            route: name,
            serveStaleOn: new Set(cfg.cache.serveStaleOn),
            maxStaleMs: parseDuration(cfg.cache.maxStale)!,
            collapseWaitMs: parseDuration(cfg.cache.collapseWait)!,
            maxObjectBytes: cfg.cache.maxObjectSize,
            bypassAuthorization: cfg.cache.bypassOn.includes('authorization'),
            bypassCookie: cfg.cache.bypassOn.includes('cookie'),
          },
  };
  return route;
}

/**
 * A route's `match.methods` as the set it takes: HEAD beside GET (RFC 9110 §9.3.2: HEAD is GET
 * without content, and §9.1 has every general-purpose server support both), as nginx's
 * `limit_except GET` and the admin API do. Built once, when the route is compiled.
 */
function routeMethods(methods: readonly string[]): ReadonlySet<string> {
  const set = new Set(methods);
  if (set.has('GET')) set.add('HEAD');
  return set;
}

/** The order `Allow` lists methods in: RFC 9110 §9.3's, then any other in alphabetical order (PATCH). */
const ALLOW_ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE'];

function allowRank(m: string): number {
  const i = ALLOW_ORDER.indexOf(m);
  return i < 0 ? ALLOW_ORDER.length : i;
}

/**
 * The methods a route that takes any method is listed with in the server's `Allow`: every
 * method of RFC 9110 §9.3 the gateway forwards (all but CONNECT, which it refuses) and PATCH
 * (RFC 5789). An `Allow` cannot say "any": an extension method is listed when a route names it.
 */
const FORWARDED_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'TRACE', 'PATCH'];

/**
 * The `Allow` of the gateway as a whole (RFC 9110 §10.2.1), one value for the two answers that
 * speak of the server rather than of a resource: `OPTIONS *` (§9.3.7: the server in general)
 * and the 405 to CONNECT (§9.3.6: its target is an authority, the server itself; §15.5.6: a
 * 405 lists what its target supports). Every method some route takes (HEAD beside GET, as
 * `match` does), `FORWARDED_METHODS` when a route takes any, and OPTIONS, which the gateway
 * answers itself (`OPTIONS *`, and a routed path's OPTIONS that no route takes); never CONNECT.
 * Computed once per route table (a reload builds a new Router).
 */
export function serverAllow(routes: readonly Route[]): string {
  const methods = new Set(['OPTIONS']);
  for (const r of routes) for (const m of r.methods ?? FORWARDED_METHODS) methods.add(m);
  methods.delete('CONNECT');
  return allowValue(methods);
}

/** Methods as an `Allow` value (RFC 9110 §10.2.1), in one stable order. */
export function allowValue(methods: Iterable<string>): string {
  return [...methods].sort((a, b) => allowRank(a) - allowRank(b) || (a < b ? -1 : a > b ? 1 : 0)).join(', ');
}

function hostMatches(r: Route, host: string): boolean {
  if (!r.exactHosts) return true;
  if (r.exactHosts.has(host)) return true;
  for (const s of r.wildcardSuffixes!) if (host.length > s.length && host.endsWith(s)) return true;
  return false;
}

export class Router {
  readonly routes: readonly Route[];
  #byHost = new Map<string, readonly Route[]>();

  /** What the gateway as a whole serves (`serverAllow`): the `Allow` of `OPTIONS *` and of CONNECT's 405. */
  readonly serverAllow: string;

  constructor(routes: readonly Route[]) {
    this.routes = routes;
    this.serverAllow = serverAllow(routes);
  }

  #candidates(host: string): readonly Route[] {
    let list = this.#byHost.get(host);
    if (list === undefined) {
      list = this.routes.filter((r) => hostMatches(r, host));
      if (this.#byHost.size < HOST_CACHE_MAX) this.#byHost.set(host, list);
    }
    return list;
  }

  /**
   * First route that matches, or undefined. `path` is the request-target in origin-form,
   * normalised and without `;` parameters (RequestTarget.routePath).
   * `req.headers` is read only for a route that matches on headers: Node (and the net front)
   * build that object from rawHeaders on first read, ~1.7k instructions a request that no
   * other step of a proxied request needs (bench/icount.ts, docs/benchmarks.md §41).
   */
  match(host: string, method: string, path: string, req: { readonly headers: NodeJS.Dict<string | string[]> }): Route | undefined {
    const list = this.#candidates(host);
    for (let i = 0; i < list.length; i++) {
      const r = list[i]!;
      if (r.methods && !r.methods.has(method)) continue;
      if (!prefixMatches(r, path)) continue;
      if (r.headers && !headersMatch(r.headers, req)) continue;
      return r;
    }
    return undefined;
  }

  /**
   * For a request `match` found no route for: the `Allow` value of its target when routes
   * match its host, path and headers but none takes its method (RFC 9110 §15.5.6's 405): the
   * methods those routes take, and OPTIONS, which the gateway answers itself for such a path
   * (§9.3.7); undefined when no route matches them (a 404). Only the no-route path pays for it.
   */
  allowed(host: string, path: string, req: { readonly headers: NodeJS.Dict<string | string[]> }): string | undefined {
    let methods: Set<string> | undefined;
    for (const r of this.#candidates(host)) {
      if (!prefixMatches(r, path)) continue;
      if (r.headers && !headersMatch(r.headers, req)) continue;
      // A route that takes any method would have been matched: `match` found none, so none is here.
      if (r.methods === undefined) return undefined;
      methods ??= new Set(['OPTIONS']);
      for (const m of r.methods) methods.add(m);
    }
    return methods === undefined ? undefined : allowValue(methods);
  }
}

/**
 * The failure of a request no route takes: 404 `destination_not_found`, or with `allow`
 * (`Router.allowed`: routes match its host, path and headers, not its method) the 405 of
 * the taxonomy's `route_method_not_allowed` row, carrying that `Allow`.
 */
export function noRouteFailure(method: string, where: string, allow: string | undefined): Failure {
  if (allow === undefined) return new Failure({ type: 'destination_not_found', phase: 'route', detail: `no route for ${method} ${where}` });
  return new Failure({ type: 'destination_not_found', phase: 'route', reason: 'route_method_not_allowed', allow, detail: `no route for ${method} ${where}: its routes take ${allow}` });
}

/** Whether every header the route matches on has its value (one of a repeated field's). */
function headersMatch(want: ReadonlyArray<readonly [string, string]>, req: { readonly headers: NodeJS.Dict<string | string[]> }): boolean {
  const headers = req.headers;
  for (const [k, v] of want) {
    const got = headers[k];
    if (Array.isArray(got) ? !got.includes(v) : got !== v) return false;
  }
  return true;
}

/**
 * The protocols of an Upgrade header value the route allows (RFC 9110 §7.8: a list of
 * `name["/" version]`), as a value for the upstream request; undefined when none is.
 */
export function allowedUpgrade(r: Route, offered: string | undefined): string | undefined {
  if (offered === undefined) return undefined;
  let out: string | undefined;
  for (const part of offered.split(',')) {
    const p = part.trim();
    const slash = p.indexOf('/');
    const name = (slash < 0 ? p : p.slice(0, slash)).toLowerCase();
    if (name !== '' && r.upgrades.has(name)) out = out === undefined ? p : `${out}, ${p}`;
  }
  return out;
}

function prefixMatches(r: Route, path: string): boolean {
  const p = r.pathPrefix;
  if (p.length === 1) return true;
  if (r.prefixLower === undefined ? !path.startsWith(p) : !startsWithIgnoringCase(path, r.prefixLower)) return false;
  if (r.prefixIsDir || path.length === p.length) return true;
  const c = path.charCodeAt(p.length);
  return c === 47 /* / */ || c === 63 /* ? */;
}

/** Whether `path` starts with `lower` (lower case) compared without ASCII case: A–Z are a–z, nothing else is folded. */
function startsWithIgnoringCase(path: string, lower: string): boolean {
  if (path.length < lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    const c = path.charCodeAt(i);
    if ((c >= 65 && c <= 90 ? c | 0x20 : c) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * Apply the route's prefix rewrite to an origin-form path. `routePath` is the path the route
 * was matched on (`path` without `;` parameters, request-target.ts); where they differ, the
 * prefix is found in `path` by walking both, and the parameters of the prefix's segments go
 * with it (`/admin;x/y` under `stripPrefix` of `/admin` is `/y`).
 */
export function rewritePath(r: Route, path: string, routePath: string = path): string {
  if (r.newPrefix === undefined || r.pathPrefix.length === 1 && r.newPrefix === '/') return path;
  let rest = path.slice(path === routePath ? r.pathPrefix.length : prefixEndWithParameters(r, path));
  if (r.prefixIsDir) rest = '/' + rest;
  const base = r.newPrefix.endsWith('/') ? r.newPrefix.slice(0, -1) : r.newPrefix;
  if (rest === '' || rest.charCodeAt(0) === 63) return (base || '/') + rest;
  return base + rest;
}

/**
 * The client paths `rewritePath` turns into `upstream` (a normalised origin-form path in the
 * upstream's path space), for RFC 9111 §4.4 invalidation by an upstream's `Location` /
 * `Content-Location`, which name the upstream's paths while keys hold the client's (session 38:
 * `Location: /items/7` from behind `stripPrefix` of `/api/` invalidated `/items/7`, never stored,
 * and left `/api/items/7`). None when `upstream` is outside the route's new prefix (no request on
 * the route reaches it); two when a prefix without a trailing `/` is stripped to `/` (`/api` and
 * `/api/` both become `/`). A route without a rewrite: the path itself. The route's own spelling
 * of its prefix is used (a `caseInsensitive` route's client may have spelled it otherwise).
 */
export function clientPaths(r: Route, upstream: string): string[] {
  if (r.newPrefix === undefined || r.pathPrefix.length === 1 && r.newPrefix === '/') return [upstream];
  const base = r.newPrefix.endsWith('/') ? r.newPrefix.slice(0, -1) : r.newPrefix;
  if (!upstream.startsWith(base)) return [];
  let rest = upstream.slice(base.length);
  const c = rest.charCodeAt(0);
  if (rest !== '' && c !== 47 /* / */ && c !== 63 /* ? */) return []; // `/internalx` is not under `/internal`
  if (rest === '' || c === 63) {
    // `base` alone (or `/` for an empty base): the prefix itself.
    return [r.pathPrefix + rest];
  }
  if (r.prefixIsDir) return [r.pathPrefix + rest.slice(1)];
  if (base === '' && (rest === '/' || rest.startsWith('/?'))) return [r.pathPrefix + rest.slice(1), r.pathPrefix + rest];
  return [r.pathPrefix + rest];
}

/**
 * The path a normalised client path (with its query) is keyed by on `r`, as a request's is
 * (cache-phase.ts `keyPath`): on a `caseInsensitive` route that strips or rewrites its prefix, a
 * path the route matches in any casing of the prefix is keyed with the prefix as configured
 * (`clientPaths` of the upstream path it sends). Any other path, or route: the path itself. For a
 * purge by key, which names the path in the operator's casing (before, `/API/items/7` purged
 * nothing stored as `/Api/items/7`).
 */
export function routeKeyPath(r: Route, path: string): string {
  if (r.prefixLower === undefined || r.newPrefix === undefined) return path;
  const q = path.indexOf('?');
  const part = q < 0 ? path : path.slice(0, q);
  const routePath = hasParameters(part) ? withoutParameters(part) + (q < 0 ? '' : path.slice(q)) : path;
  if (!prefixMatches(r, routePath)) return path;
  return clientPaths(r, rewritePath(r, path, routePath))[0] ?? path;
}

/**
 * What a purge by the path prefix `prefix` (normalised, its last segment maybe partial) names
 * among the keys of `r`, a `caseInsensitive` route that rewrites its prefix (its keys all start
 * with its prefix as configured, `routeKeyPath`): the same prefix with the route's prefix, or the
 * part of it `prefix` covers, in the configured casing. `/api/it` and `/AP` name `/Api/it` and
 * `/Ap` on a route configured `/Api/`. undefined: `prefix` names nothing else on the route (it
 * parts from the route's prefix without case, or it is already in the configured casing).
 */
export function routeKeyPrefix(r: Route, prefix: string): string | undefined {
  const lower = r.prefixLower;
  if (lower === undefined || r.newPrefix === undefined) return undefined;
  const p = r.pathPrefix;
  const n = Math.min(prefix.length, p.length);
  for (let i = 0; i < n; i++) {
    const c = prefix.charCodeAt(i);
    if ((c >= 65 && c <= 90 ? c | 0x20 : c) !== lower.charCodeAt(i)) return undefined;
  }
  const out = p.slice(0, n) + prefix.slice(n);
  return out === prefix ? undefined : out;
}

/** Where the route's prefix ends in a path that has `;` (or `%3B`) parameters (the prefix matched the path without them). */
function prefixEndWithParameters(r: Route, path: string): number {
  const k = r.pathPrefix.length;
  let i = 0;
  let j = 0;
  const skipParameters = (): void => {
    while (i < path.length && path.charCodeAt(i) !== 47 /* / */ && path.charCodeAt(i) !== 63 /* ? */) i++;
  };
  while (j < k && i < path.length) {
    if (parametersStart(path, i)) skipParameters();
    else {
      i++;
      j++;
    }
  }
  if (!r.prefixIsDir && parametersStart(path, i)) skipParameters();
  return i;
}

/** Segment parameters open at `i`: `;`, or `%3B` (upper case in a normalised path; withoutParameters). */
function parametersStart(path: string, i: number): boolean {
  const c = path.charCodeAt(i);
  return c === 59 /* ; */ || (c === 37 /* % */ && path.startsWith('%3B', i));
}

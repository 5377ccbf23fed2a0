import { parseProxyStatus } from '../failure/index.js';
import type { PhaseFailure, ProbeResult } from './probe.js';

/** One outcome of a probe, in a form two probes can be compared by. */
export interface Outcome {
  /** `200`, `502`, or the failure type (`connection_refused`). */
  key: string;
  healthy: boolean;
  status?: number;
  failure?: PhaseFailure;
  /** The error a hop named in the answer's Proxy-Status. */
  hopError?: string;
  ms: number;
}

function proxyStatusError(h: Record<string, string | string[] | undefined> | undefined): string | undefined {
  const v = h?.['proxy-status'];
  if (v === undefined) return undefined;
  try {
    const e = parseProxyStatus(v).find((m) => typeof m.params.error === 'string')?.params.error;
    return typeof e === 'string' ? e : undefined;
  } catch {
    return undefined;
  }
}

export function outcomeOf(p: ProbeResult): Outcome {
  const status = p.http?.status;
  const healthy = p.failure === undefined && status !== undefined && status < 500;
  const key = p.failure ? p.failure.type : String(status);
  const hopError = proxyStatusError(p.http?.headers);
  return { key, healthy, ...(status !== undefined ? { status } : {}), ...(p.failure ? { failure: p.failure } : {}), ...(hopError ? { hopError } : {}), ms: p.totalMs };
}

export function outcomeWords(o: Outcome): string {
  if (o.failure) return `${o.status !== undefined ? `${o.status} then ` : ''}${o.failure.type}`;
  return o.hopError ? `${o.status} ${o.hopError}` : String(o.status);
}

export interface RefreshResult {
  tries: Array<Outcome & { startMs: number }>;
  failed: number;
  /** none: every try worked; transient: some failed; persistent: all failed. */
  pattern: 'none' | 'transient' | 'persistent';
  spacingMs: number;
}

export interface CacheResult {
  /** The answer to `Cache-Control: no-cache` and a cache-busting query. */
  fresh: Outcome;
  /** What the first answer said about caches (Age, X-Cache, Cache-Status). */
  cacheSignals: string[];
  /** The fresh answer differs from the first one. */
  differs: boolean;
  bustParam: string;
}

export interface ClientResult {
  browser: Outcome;
  curl: Outcome;
  differs: boolean;
}

export interface PathEntry {
  /** `127.0.0.1 (IPv4)`, `::1 (IPv6)`, `via proxy http://…`. */
  label: string;
  address?: string;
  family?: 4 | 6;
  via: 'direct' | 'proxy';
  outcome: Outcome;
}

export interface PathResult {
  entries: PathEntry[];
  /** Per family: how many addresses answered healthily, of how many. */
  families: Array<{ family: 4 | 6; healthy: number; of: number }>;
  proxy?: PathEntry;
}

export interface Experiments {
  refresh: RefreshResult;
  cache?: CacheResult;
  client?: ClientResult;
  path: PathResult;
}

export const BROWSER_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ['User-Agent', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36'],
  ['Accept', 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8'],
  ['Accept-Language', 'en-US,en;q=0.9'],
];

export const CURL_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ['User-Agent', 'curl/8.5.0'],
  ['Accept', '*/*'],
];

/** The cache-related fields of an answer, as `Name: value`. */
export function cacheSignals(headers: Record<string, string | string[] | undefined> | undefined): string[] {
  if (!headers) return [];
  const out: string[] = [];
  for (const n of ['cache-status', 'age', 'x-cache', 'x-cache-status', 'cf-cache-status', 'x-cache-hits', 'x-varnish']) {
    const v = headers[n];
    if (v !== undefined) out.push(`${n}: ${Array.isArray(v) ? v.join(', ') : v}`);
  }
  return out;
}

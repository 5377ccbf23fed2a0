import { httpDate } from './cache-control.js';
import type { CacheEntry } from './entry.js';
import { weakEqual } from './validate.js';
import type { RequestHeaders } from './response-cache.js';

/** A response made from a stored one, before the gateway adds Via, its request id and Cache-Status. */
export interface CachedAnswer {
  readonly status: number;
  /** Header pairs: the stored ones with Age set (and Content-Range / Content-Length for a range). */
  readonly headers: string[];
  /** undefined: no body (HEAD, 304). */
  readonly body: Buffer | undefined;
}

/**
 * Fields of a stored response not sent on: Age is recomputed, framing is the gateway's, and a
 * Set-Cookie is one client's, never answered from the store to another (whatever an entry holds:
 * one stored before session 37, when `public` was enough to store it, in memory or read back
 * from disk; the store keeps none now, `ResponseCache.storeVerdict`).
 */
const NOT_COPIED = new Set(['age', 'transfer-encoding', 'connection', 'keep-alive', 'set-cookie']);
/** Fields a 304 leaves out (RFC 9110 §15.4.5: it describes a representation it does not carry). */
const NOT_IN_304 = new Set(['content-length', 'content-type', 'content-encoding', 'content-range', 'content-language']);

/**
 * Answer a request from a stored response: the client's own conditions (RFC 9110 §13:
 * If-None-Match, then If-Modified-Since) give a 304; a single byte range of a complete
 * stored 200 gives a 206 (RFC 9110 §14; If-Range honoured). Several ranges or an
 * unsatisfiable one get the whole response, which §14.2 allows.
 */
export function answerFrom(entry: CacheEntry, method: string, headers: RequestHeaders, now: number): CachedAnswer {
  const out: string[] = [];
  const notModified = entry.status === 200 && clientNotModified(entry, method, headers);
  const omitted = entry.omitted;
  for (let i = 0; i < entry.headers.length; i += 2) {
    const n = entry.headers[i]!.toLowerCase();
    if (NOT_COPIED.has(n) || omitted?.has(n)) continue;
    if (notModified && NOT_IN_304.has(n)) continue;
    out.push(entry.headers[i]!, entry.headers[i + 1]!);
  }
  out.push('age', String(entry.ageSeconds(now)));
  if (notModified) return { status: 304, headers: out, body: undefined };
  const head = method === 'HEAD';
  if (entry.status === 200 && headers.range !== undefined && method === 'GET') {
    const r = singleRange(oneHeader(headers.range), entry.body.length);
    if (r !== undefined && ifRangeHolds(entry, oneHeader(headers['if-range']))) {
      const [start, end] = r;
      setHeader(out, 'content-length', String(end - start + 1));
      out.push('content-range', `bytes ${start}-${end}/${entry.body.length}`);
      return { status: 206, headers: out, body: entry.body.subarray(start, end + 1) };
    }
  }
  if (!hasHeader(out, 'content-length') && entry.status !== 204 && entry.status !== 304) out.push('content-length', String(entry.body.length));
  return { status: entry.status, headers: out, body: head ? undefined : entry.body };
}

function oneHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function hasHeader(pairs: readonly string[], name: string): boolean {
  for (let i = 0; i < pairs.length; i += 2) if (pairs[i]!.toLowerCase() === name) return true;
  return false;
}

function setHeader(pairs: string[], name: string, value: string): void {
  for (let i = 0; i < pairs.length; i += 2) {
    if (pairs[i]!.toLowerCase() === name) {
      pairs[i + 1] = value;
      return;
    }
  }
  pairs.push(name, value);
}

/** RFC 9110 §13.1.2 / §13.1.3, for GET and HEAD. */
function clientNotModified(entry: CacheEntry, method: string, headers: RequestHeaders): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false;
  const inm = headers['if-none-match'];
  if (inm !== undefined) {
    const list = (Array.isArray(inm) ? inm.join(',') : inm).split(',').map((s) => s.trim());
    if (list.includes('*')) return true;
    const etag = entry.etag;
    if (etag === undefined) return false;
    return list.some((t) => weakEqual(t, etag));
  }
  const ims = httpDate(oneHeader(headers['if-modified-since']));
  if (Number.isNaN(ims)) return false;
  const lm = httpDate(entry.lastModified ?? entry.header('date'));
  return !Number.isNaN(lm) && lm <= ims;
}

/** RFC 9110 §13.1.5: a strong entity tag equal to the stored one, or the exact Last-Modified date. */
function ifRangeHolds(entry: CacheEntry, ifRange: string | undefined): boolean {
  if (ifRange === undefined) return true;
  const v = ifRange.trim();
  if (v.startsWith('"')) return entry.etag !== undefined && !entry.etag.startsWith('W/') && entry.etag === v;
  if (v.startsWith('W/')) return false;
  return entry.lastModified !== undefined && httpDate(v) === httpDate(entry.lastModified);
}

/** One `bytes=` range as [first, last] within `size`, or undefined (several ranges, malformed, unsatisfiable). */
export function singleRange(range: string | undefined, size: number): [number, number] | undefined {
  if (range === undefined) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(range);
  if (m === null || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return undefined;
    return [Math.max(0, size - suffix), size - 1];
  }
  const first = Number(m[1]);
  const last = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (first >= size || last < first) return undefined;
  return [first, last];
}

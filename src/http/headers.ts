/**
 * Header rules shared by the reverse gateway and the forward proxy (RFC 9110 §7.6).
 * Works on Node's flat raw header arrays ([name, value, name, value, ...]) in one pass.
 */

/**
 * One name or value of an upstream response head as its client hands it over: undici's
 * clients give Buffers (its raw headers), Gatewise's native client latin1 strings (it decodes
 * the head once, docs/benchmarks.md §30). Every reader of a response head takes both.
 */
export type RawField = Buffer | string;

type Latin1Sliceable = Buffer & { latin1Slice?: (start: number, end: number) => string };
const HAS_LATIN1_SLICE = typeof (Buffer.prototype as Latin1Sliceable).latin1Slice === 'function';
/**
 * Bytes start..end of a Buffer as a latin1 string. Buffer#latin1Slice is what toString('latin1')
 * ends in, without its encoding and range handling: ~40 % less per call. It is an old but
 * undocumented method, so toString is the fallback.
 */
export const latin1: (b: Buffer, start: number, end: number) => string = HAS_LATIN1_SLICE
  ? (b, start, end) => (b as Latin1Sliceable).latin1Slice!(start, end)
  : (b, start, end) => b.toString('latin1', start, end);

/** A field as a string, its bytes read as latin1. */
export const fieldText = (f: RawField): string => (typeof f === 'string' ? f : latin1(f, 0, f.length));

/** Hop-by-hop in both directions (RFC 9110 §7.6.1; Proxy-Connection and Keep-Alive by practice), lower-case. */
const HOP_BY_HOP_BOTH = ['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade'];

/**
 * The one hop-by-hop table, for both faces. Requests also lose Proxy-Authorization (the
 * credentials are for this hop) and Trailer (the body is re-framed; trailers are not sent
 * on); responses also lose Proxy-Authenticate (it applies to the next client only, RFC 9110
 * §11.7.1) and keep Trailer (trailers are relayed). The reverse gateway's one-pass
 * rewriters (`gateway/request-headers.ts`, `response-headers.ts`) build their lookups from
 * these sets.
 */
export const HOP_BY_HOP = {
  request: new Set([...HOP_BY_HOP_BOTH, 'proxy-authorization', 'trailer']) as ReadonlySet<string>,
  response: new Set([...HOP_BY_HOP_BOTH, 'proxy-authenticate']) as ReadonlySet<string>,
} as const;

/**
 * Add the names a Connection value lists (lower-case) to `listed`, beyond its own options
 * (close, keep-alive, upgrade), and return the set (undefined when none).
 */
export function connectionListed(value: string, listed?: Set<string>): Set<string> | undefined {
  // Nearly every upstream sends `Connection: keep-alive` (or close): no split for those.
  const v = value.length === 10 || value.length === 5 ? value.toLowerCase() : '';
  if (v === 'keep-alive' || v === 'close') return listed;
  for (const part of value.split(',')) {
    const n = part.trim().toLowerCase();
    if (n && n !== 'close' && n !== 'keep-alive' && n !== 'upgrade') (listed ??= new Set()).add(n);
  }
  return listed;
}

/** Copy a flat raw header list without the hop-by-hop fields of `direction` and those named in Connection. */
export function stripHopByHop(raw: readonly string[], direction: 'request' | 'response'): string[] {
  const hop = HOP_BY_HOP[direction];
  let listed: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === 'connection') listed = connectionListed(raw[i + 1]!, listed);
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (hop.has(lower) || listed?.has(lower)) continue;
    out.push(name, raw[i + 1]!);
  }
  return out;
}

/**
 * The `Via` value this hop adds, for the received protocol version: `1.0`, `1.1`, or `2`
 * (given as `2` or as Node's `httpVersion` `2.0`; HTTP/2's Via version is "2", RFC 9110
 * §7.6.3). Finding: `viaValue('2', …)` gave `1.1`, so requests from h2 clients went upstream
 * with `Via: 1.1`.
 */
export function viaValue(httpVersion: string, pseudonym: string): string {
  return `${httpVersion === '1.0' ? '1.0' : httpVersion === '2.0' || httpVersion === '2' ? '2' : '1.1'} ${pseudonym}`;
}

/** True when any Via element names `pseudonym` (loop detection). */
export function viaContains(viaValues: readonly string[], pseudonym: string): boolean {
  for (const v of viaValues) {
    for (const el of v.split(',')) {
      const parts = el.trim().split(/\s+/);
      if (parts[1] === pseudonym) return true;
    }
  }
  return false;
}

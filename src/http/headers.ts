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
 * The registered transfer codings that change the bytes (IANA's HTTP Transfer Coding
 * registry, RFC 9112 §7), and br and zstd, which servers send there too, lower-case.
 */
const BYTE_CODINGS: ReadonlySet<string> = new Set(['gzip', 'x-gzip', 'deflate', 'compress', 'x-compress', 'br', 'zstd']);

/**
 * Why a response whose Transfer-Encoding field has this value cannot be passed on, or
 * undefined when it can. Both faces take chunked off and frame the body anew for their
 * client, and Transfer-Encoding is hop-by-hop, so a coding that changes the bytes (gzip,
 * deflate, compress, br, zstd) would stay applied with nothing left to name it, and the client
 * would take a coded body for the content (session 26's review, finding 7). nginx refuses such
 * an answer too ("upstream sent unknown Transfer-Encoding"); the faces answer 502
 * `http_response_transfer_coding`. Each Transfer-Encoding field of a head is judged on its
 * own, so a coding in a field before the one with chunked is found as well.
 *
 * A coding nobody registered (and the obsolete `identity`) is taken as framing only and
 * passes, as it did before: the public HTTP caching suite (test/cache, headers-store-
 * Transfer-Encoding) sends a made-up coding over plain bytes and expects the answer served
 * and cached without the field.
 *
 * An empty list element is refused, though RFC 9110 §5.6.1 has recipients skip it: the
 * upstream clients disagree on it (undici's llhttp reads `chunked ,` as not chunked and passes
 * the chunk framing on as body bytes; the native client skips the element), and a framing
 * field two parsers read two ways is not passed on. So is a tab in the value: llhttp reads
 * `chunked` followed by a tab as another coding and the body as running to the close
 * (test/gateway/transfer-coding.test.ts).
 */
export function transferCodingRefusal(value: string): string | undefined {
  if (value === 'chunked') return undefined; // nearly every chunked answer: no split
  if (value.includes('\t')) return `the response's Transfer-Encoding has a tab in it (Transfer-Encoding: ${JSON.stringify(value.slice(0, 100))}), which parsers read differently`;
  for (const part of value.split(',')) {
    const c = part.trim().toLowerCase();
    if (c === '') return `the response's Transfer-Encoding has an empty list element (Transfer-Encoding: ${value.slice(0, 100)}), which parsers read differently`;
    if (BYTE_CODINGS.has(c)) {
      return `the response applies the transfer coding ${c} (Transfer-Encoding: ${value.slice(0, 100)}), which is not decoded here: passed on, its body would reach the client still coded`;
    }
  }
  return undefined;
}

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
 * Whether an HTTP/1.x answer of `status` to a `method` request of `httpVersion` goes in a
 * framing that can carry trailers (a chunked body): not a HEAD's, a 204 or 304, nor one to an
 * HTTP/1.0 client. (HTTP/2 always can: its callers do not ask.)
 */
export function trailersCarried(status: number, method: string | undefined, httpVersion: string): boolean {
  return status !== 204 && status !== 304 && method !== 'HEAD' && httpVersion !== '1.0';
}

/**
 * Response fields (name, value pairs) without their Trailer field when the answer cannot carry
 * trailers: `carried` false (`trailersCarried`), or a Content-Length beside it. Else the same
 * array. RFC 9110 §6.6.2 makes the field a hint, and node:http's writeHead throws
 * (ERR_HTTP_TRAILER_INVALID) for one on an answer it does not send chunked, which made a sound
 * answer a 502 on both faces (test/gateway/trailer-field-unchunked.test.ts,
 * test/forward/trailer-field-unchunked.test.ts).
 */
export function withoutUncarriedTrailer(pairs: string[], carried: boolean): string[] {
  // Most answers have no Trailer field: one length test per field finds that (names of 7 are rare).
  let trailer = false;
  for (let i = 0; i < pairs.length && !trailer; i += 2) trailer = pairs[i]!.length === 7 && pairs[i]!.toLowerCase() === 'trailer';
  if (!trailer) return pairs;
  if (carried) {
    let length = false;
    for (let i = 0; i < pairs.length && !length; i += 2) length = pairs[i]!.length === 14 && pairs[i]!.toLowerCase() === 'content-length';
    if (!length) return pairs;
  }
  const kept: string[] = [];
  for (let i = 0; i < pairs.length; i += 2) if (pairs[i]!.length !== 7 || pairs[i]!.toLowerCase() !== 'trailer') kept.push(pairs[i]!, pairs[i + 1]!);
  return kept;
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

/** How far into a refused head `acceptInRawHead` looks: past the largest `maxHeaderSize` a listener takes, no further. */
const RAW_ACCEPT_SCAN = 1 << 20;

/**
 * The Accept field of a request head the parser refused, read from the bytes it saw (Node's
 * `err.rawPacket`, the net front's unparsed bytes); undefined when there is none. Only to pick
 * the format of the refusal (a page for a browser, problem+json for a program), as every other
 * answer of the gateway does: the head is malformed, so nothing else of it is trusted. The first
 * line named `accept` (any case; whitespace before the colon is not valid and not taken) before
 * the blank line that ends the head wins.
 */
export function acceptInRawHead(raw: Buffer | undefined): string | undefined {
  if (raw === undefined || raw.length === 0) return undefined;
  const end = Math.min(raw.length, RAW_ACCEPT_SCAN);
  // Every line from the start: the request line cannot be an Accept field (a method has no
  // ':'), and the bytes may start at any line of the head (the net front's unparsed rest).
  let line = 0;
  while (line >= 0 && line < end) {
    const next = raw.indexOf(10, line);
    const stop = next < 0 || next > end ? end : next;
    if (line > 0 && stop - line <= 1) return undefined; // the blank line: the head ended without Accept
    if (stop - line > 7 && raw[line + 6] === 0x3a && (raw[line]! | 0x20) === 0x61 && latin1(raw, line, line + 6).toLowerCase() === 'accept') {
      const value = latin1(raw, line + 7, stop).trim();
      return value === '' ? undefined : value;
    }
    line = next < 0 ? -1 : next + 1;
  }
  return undefined;
}

/** A parser's refusal as a front reports it ('clientError'): node:http's bytes read, or the net front's Accept (and method) found already. */
export type ParserRefusalError = NodeJS.ErrnoException & { rawPacket?: Buffer; accept?: string; head?: boolean };

/** The Accept of a refused head, for its answer's format (`acceptInRawHead`). */
export function refusalAccept(err: ParserRefusalError): string | undefined {
  return err.accept ?? acceptInRawHead(err.rawPacket);
}

const HEAD_LINE = Buffer.from('HEAD ', 'latin1');

/**
 * Whether a refused head is a HEAD request, from the method the net front's parser read or the
 * request line at the start of node:http's bytes: its answer is then the head alone (RFC 9110
 * §9.3.2). Bytes that do not start with the request line (a later packet) say no: a body is sent.
 */
export function refusalHead(err: ParserRefusalError): boolean {
  if (err.head !== undefined) return err.head;
  const raw = err.rawPacket;
  return raw !== undefined && raw.length >= HEAD_LINE.length && raw.compare(HEAD_LINE, 0, HEAD_LINE.length, 0, HEAD_LINE.length) === 0;
}

/**
 * The continue expectation in an Expect value, as Node's HTTP/1.1 server reads it (RFC 9110
 * §10.1.1): `100-continue` anywhere in the value, in any case. The net front and the HTTP/2
 * front judge Expect by it, as node:http does.
 */
export const CONTINUE_EXPECTATION = /(?:^|\W)100-continue(?:$|\W)/i;

/**
 * The `Keep-Alive: timeout=` hint of an answer on a connection kept idle `ms` between
 * requests, one rule for both faces: whole seconds rounded down, never more than the connection
 * is kept (a client that trusts a longer hint reuses a connection already closed: the
 * keep-alive race), and none under 1 s. Rounded down there it would be `timeout=0`, what
 * node:http writes, and a client reads 0 as "do not reuse this connection" (undici marks the
 * socket for reset at any hint under its 1 s margin), although the proxy keeps it; rounded
 * up it would overstate the net front's exact idle timer. Without a hint a client keeps to
 * its own idle policy, as with a server that sends none.
 */
export function keepAliveSeconds(ms: number): number | undefined {
  const s = Math.floor(ms / 1000);
  return s >= 1 ? s : undefined;
}

/** `Connection: keep-alive` and its `Keep-Alive` hint (`keepAliveSeconds`), as a head's lines (the reverse net front). */
export function keepAliveLines(ms: number): string {
  const s = keepAliveSeconds(ms);
  return s === undefined ? 'Connection: keep-alive\r\n' : `Connection: keep-alive\r\nKeep-Alive: timeout=${s}\r\n`;
}

/**
 * A node:http server writes `Keep-Alive: timeout=floor(keepAliveTimeout / 1000)` itself, from
 * the `_keepAliveTimeout` it copies onto each response (Node 20 `_http_outgoing.js`, its only
 * reader): for a timeout with no hint (`keepAliveSeconds`), that copy is zeroed on `res` so no
 * field is written. Costs a comparison per request; writes only under a second.
 */
export function withholdKeepAliveHint(res: object, keepAliveMs: number): void {
  if (keepAliveMs > 0 && keepAliveSeconds(keepAliveMs) === undefined) (res as { _keepAliveTimeout: number })._keepAliveTimeout = 0;
}

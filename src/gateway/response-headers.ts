import { Failure, appendMember } from '../failure/index.js';
import { HOP_BY_HOP, connectionListed, fieldText, transferCodingRefusal, withoutUncarriedTrailer, type RawField } from '../http/headers.js';
import { lowerCase } from '../http/token.js';

// Response fields never passed on: the one hop-by-hop table's (http/headers.ts).
const RESPONSE_DROP = HOP_BY_HOP.response;
/**
 * (length << 8 | lower-case first byte) of the names above and of proxy-status: a name
 * whose key is not here needs no lower-casing or lookup. Most response headers
 * (Content-Type has proxy-status's length) are told apart by this without decoding.
 */
const SPECIAL_KEYS = new Set<number>();
for (const n of [...RESPONSE_DROP, 'proxy-status', 'trailer']) SPECIAL_KEYS.add((n.length << 8) | n.charCodeAt(0));

/**
 * The head of a final answer that is passed on, built from the upstream's raw fields (Buffers
 * or strings) in one pass: hop-by-hop and Connection-listed fields removed, Via added,
 * Proxy-Status extended with `proxyStatusMember` when given, the request id set. Or the
 * Failure (`http_response_transfer_coding`, naming `nextHop`) of a Transfer-Encoding that
 * applies a coding that changes the bytes, or that parsers read two ways (http/headers.ts,
 * transferCodingRefusal): such an answer is never passed on, and the caller aborts the try
 * with it (the exchange, and an upgrade that was answered without a switch).
 *
 * `trailersCarried` false: the answer goes to the client in a framing that has no trailers
 * (HTTP/1.x: a HEAD, a 204 or 304, an HTTP/1.0 client), and a Trailer field is dropped; with
 * true it is dropped only beside a Content-Length. RFC 9110 §6.6.2 makes the field a hint, and
 * node:http's writeHead throws (ERR_HTTP_TRAILER_INVALID) for one on an answer it does not send
 * chunked, which made a sound answer a 502 (test/gateway/trailer-field-unchunked.test.ts).
 */
export function finalResponseHead(
  raw: readonly RawField[],
  via: string,
  idHeader: string,
  requestId: string,
  proxyStatusMember: string | undefined,
  nextHop: string | undefined,
  trailersCarried = true,
): string[] | Failure {
  return responseHead(raw, via, idHeader, requestId, proxyStatusMember, false, nextHop, trailersCarried);
}

/**
 * The head of a 101 (Switching Protocols) passed on: as `finalResponseHead`, but Connection
 * and Upgrade are kept, and no transfer coding is judged (a 101 has no body), so it never
 * refuses.
 */
export function switchResponseHead(raw: readonly RawField[], via: string, idHeader: string, requestId: string): string[] {
  return responseHead(raw, via, idHeader, requestId, undefined, true, undefined, true) as string[];
}

function responseHead(
  raw: readonly RawField[],
  via: string,
  idHeader: string,
  requestId: string,
  proxyStatusMember: string | undefined,
  keepUpgrade: boolean,
  nextHop: string | undefined,
  trailersCarried: boolean,
): string[] | Failure {
  const out: string[] = [];
  /** A Trailer field is in `out` (rare: judged after the pass). */
  let trailer = false;
  let listed: Set<string> | undefined;
  let priorProxyStatus: string | undefined;
  const idKey = (idHeader.length << 8) | idHeader.charCodeAt(0);
  for (let i = 0; i < raw.length; i += 2) {
    const name = fieldText(raw[i]!);
    const key = (name.length << 8) | (name.charCodeAt(0) | 0x20);
    if (key !== idKey && !SPECIAL_KEYS.has(key)) {
      out.push(name, fieldText(raw[i + 1]!));
      continue;
    }
    const lower = lowerCase(name);
    if (RESPONSE_DROP.has(lower)) {
      if (lower === 'connection') listed = connectionListed(fieldText(raw[i + 1]!), listed);
      else if (lower === 'transfer-encoding' && !keepUpgrade) {
        const detail = transferCodingRefusal(fieldText(raw[i + 1]!));
        if (detail !== undefined) return new Failure({ type: 'http_response_transfer_coding', phase: 'headers', nextHop, detail });
      }
      if (keepUpgrade && (lower === 'upgrade' || lower === 'connection')) out.push(name, fieldText(raw[i + 1]!));
      continue;
    }
    if (lower === idHeader) continue;
    if (lower === 'trailer') trailer = true;
    if (lower === 'proxy-status' && proxyStatusMember !== undefined) {
      const v = fieldText(raw[i + 1]!);
      priorProxyStatus = priorProxyStatus ? `${priorProxyStatus}, ${v}` : v;
      continue;
    }
    out.push(name, fieldText(raw[i + 1]!));
  }
  const kept = trailer ? withoutUncarriedTrailer(out, trailersCarried) : out;
  // Fields the Connection header named are hop-by-hop too (rare: filtered after the pass).
  const head = listed === undefined ? kept : dropListed(kept, listed);
  head.push('via', via, idHeader, requestId);
  if (proxyStatusMember !== undefined) head.push('proxy-status', appendMember(priorProxyStatus, proxyStatusMember));
  return head;
}

function dropListed(pairs: string[], listed: Set<string>): string[] {
  const kept: string[] = [];
  for (let i = 0; i < pairs.length; i += 2) {
    if (!listed.has(pairs[i]!.toLowerCase())) kept.push(pairs[i]!, pairs[i + 1]!);
  }
  return kept;
}

/**
 * Trailers as an object for `res.addTrailers`, or undefined when there are none. undici
 * hands over raw buffers from an HTTP/1.1 upstream and Node's header object from an
 * HTTP/2 one (gRPC's grpc-status, grpc-message).
 */
export function trailersOf(raw: UpstreamTrailers): Record<string, string | string[]> | undefined {
  if (raw === null || raw === undefined) return undefined;
  if (Array.isArray(raw)) return raw.length > 0 ? trailersObject(raw) : undefined;
  let t: Record<string, string | string[]> | undefined;
  for (const k in raw as Record<string, string | string[] | undefined>) {
    const v = (raw as Record<string, string | string[] | undefined>)[k];
    if (v === undefined || k.charCodeAt(0) === 58 /* : */) continue;
    (t ??= {})[k] = v;
  }
  return t;
}

/** What a client's onComplete gives: raw fields (HTTP/1.1), a header object (HTTP/2: pool/h2-client.ts, Node's trailers), or nothing. */
export type UpstreamTrailers = ReadonlyArray<RawField> | Readonly<Record<string, string | string[] | undefined>> | null | undefined;

/** Trailers from undici's raw buffers as an object for `res.addTrailers`. */
export function trailersObject(raw: ReadonlyArray<RawField>): Record<string, string> {
  const t: Record<string, string> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = fieldText(raw[i]!);
    const v = fieldText(raw[i + 1]!);
    t[k] = t[k] === undefined ? v : `${t[k]}, ${v}`;
  }
  return t;
}

import type { IncomingMessage } from 'node:http';
import { Failure } from '../failure/index.js';
import { HOP_BY_HOP, connectionListed, viaContains } from '../http/headers.js';
import { requestCodingRefusal } from '../http/framing.js';
import { plainAddress } from '../http/trust.js';
import { viaOwnForward } from '../net/own-listeners.js';
import { lowerCase, nameIs } from '../http/token.js';
import type { GatewayContext } from './context.js';

/** What the one pass over the client's request head produced. */
export interface UpstreamHead {
  /** Flat [name, value, ...] list for undici. */
  headers: string[];
  /** Whether the request has a body to stream (Content-Length > 0 or chunked). */
  hasBody: boolean;
  /**
   * The body's declared length (its Content-Length), or -1 when it has none: chunked, or no
   * body (gateway/exchange.ts: whether the body can be kept whole for a replay).
   */
  bodyLength: number;
  /** The Upgrade fields' values as one list, in order (for upgrade requests). */
  upgrade: string | undefined;
}

// Codes for request header names the gateway treats specially.
const DROP = 1;
const XFF = 2;
const XFP = 3;
const XFH = 4;
const FORWARDED = 5;
const VIA = 6;
const HOST = 7;
const CONNECTION = 8;
const TE_ENC = 9;
const CONTENT_LENGTH = 10;
const UPGRADE = 11;

// The hop-by-hop fields come from the one table (http/headers.ts); three of them are read on the way.
const SPECIAL = new Map<string, number>([
  ...[...HOP_BY_HOP.request].map((n): [string, number] => [n, DROP]),
  ['connection', CONNECTION],
  ['transfer-encoding', TE_ENC],
  ['upgrade', UPGRADE],
  ['expect', DROP], // 100-continue is forwarded by the exchange itself (undici refuses the field); others Node answers with 417
  ['host', HOST],
  ['via', VIA],
  ['x-forwarded-for', XFF],
  ['x-forwarded-proto', XFP],
  ['x-forwarded-host', XFH],
  ['forwarded', FORWARDED],
  ['content-length', CONTENT_LENGTH],
]);

/**
 * The forwarding fields the gateway does not write itself (X-Forwarded-Port, -Prefix,
 * -Server, -Ssl, … and X-Real-IP): frameworks build absolute links and client addresses from
 * them, so from a client that is not a trusted proxy they are dropped, as X-Forwarded-For,
 * -Proto, -Host and Forwarded are replaced (finding: an untrusted client's
 * `X-Forwarded-Prefix: /evil` reached the upstream, and its answer the cache).
 */
function forwardingClaim(lower: string): boolean {
  return lower.charCodeAt(0) === 120 /* x */ && (lower.startsWith('x-forwarded-') || lower === 'x-real-ip');
}

/**
 * Whether the value of this request field upstream is the gateway's, not the client's: it
 * writes Via, Forwarded, X-Forwarded-For/-Proto/-Host and the request id, and drops the other
 * forwarding fields from untrusted clients (lower-case name).
 */
export function gatewayWrites(lower: string, idHeader: string): boolean {
  return lower === 'via' || lower === 'forwarded' || lower === idHeader || forwardingClaim(lower);
}

/**
 * Whether a name with `_` is, read with `-` for `_`, a field the gateway writes or reads
 * itself (X-Forwarded-*, Forwarded, Via, the request id, Host, the framing and hop-by-hop
 * fields). CGI, PHP, WSGI and nginx's `$http_` variables read `X_Forwarded_For` and
 * `X-Forwarded-For` as one (HTTP_X_FORWARDED_FOR), so under `underscoreHeaders: forward` such
 * a spelling would let a client set what the gateway writes (finding: `X_Forwarded_For:
 * 6.6.6.6` reached the upstream beside the gateway's X-Forwarded-For). Dropped, from any client.
 */
function underscoreSpellingOfOwn(lower: string, idHeader: string): boolean {
  const dashed = lower.replaceAll('_', '-');
  return SPECIAL.has(dashed) || gatewayWrites(dashed, idHeader);
}

function quoteForwarded(addr: string): string {
  return addr.includes(':') ? `"[${addr}]"` : addr;
}

/**
 * Build the upstream request head from the client's in one pass over rawHeaders:
 * hop-by-hop and Connection-listed fields removed, Via appended, forwarding headers
 * per the trusted-proxies setting, Host per route, request id set. Throws a Failure
 * for requests that must not be forwarded (loops, unsupported transfer codings).
 */
export function buildUpstreamHead(
  ctx: GatewayContext,
  req: IncomingMessage,
  /** The client's address (its socket's remoteAddress, read once by the caller: a getter that costs ~500 instructions a read). */
  peer: string | undefined,
  requestId: string,
  hostValue: string | undefined,
  via: string,
  proto: 'http' | 'https',
  /** The host the client asked for (the absolute-form authority, or its one Host header): replaces the Host header (RFC 9112 §3.2.2). */
  clientHost?: string,
): UpstreamHead {
  const raw = req.rawHeaders;
  const out: string[] = [];
  const clientAddr = plainAddress(peer);
  // A trusted address on a connection of this process's own forward proxy is a forward user's (net/own-listeners.ts).
  const trusted = ctx.trustedProxies.has(peer) && !viaOwnForward(req.socket);
  const idHeader = ctx.requestIdHeader;
  const dropUnderscore = ctx.dropUnderscoreHeaders;
  let listed: Set<string> | undefined;
  let xff: string | undefined;
  let xfp: string | undefined;
  let xfh: string | undefined;
  let fwd: string | undefined;
  let origHost: string | undefined;
  let hasBody = false;
  let declared = -1;
  let chunked = false;
  /** Transfer-Encoding values other than a lone `chunked`, joined (set only when there is one). */
  let codings: string | undefined;
  let upgrade: string | undefined;

  // Connection-listed names first, so the main pass is a single lookup per field. Read from
  // rawHeaders, every Connection field in turn: `req.headers` would build the whole headers
  // object for this one field (router.ts, Router#match).
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (nameIs(n, 'connection')) listed = connectionListed(raw[i + 1]!, listed);
  }

  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = lowerCase(name);
    const code = SPECIAL.get(lower);
    if (code === undefined) {
      if (lower === idHeader || listed?.has(lower) || (!trusted && forwardingClaim(lower))) continue;
      if (lower.includes('_') && (dropUnderscore || underscoreSpellingOfOwn(lower, idHeader))) continue;
      out.push(name, value);
      continue;
    }
    switch (code) {
      case VIA:
        if (viaContains([value], ctx.identity)) {
          throw new Failure({ type: 'proxy_loop_detected', phase: 'accept', detail: `the request already passed through ${ctx.identity} (Via: ${value})` });
        }
        out.push(name, value);
        break;
      case HOST:
        origHost = value;
        break;
      case XFF:
        if (trusted) xff = xff ? `${xff}, ${value}` : value;
        break;
      case XFP:
        if (trusted) xfp = value;
        break;
      case XFH:
        if (trusted) xfh = value;
        break;
      case FORWARDED:
        if (trusted) fwd = fwd ? `${fwd}, ${value}` : value;
        break;
      case TE_ENC:
        // The codings are one list over every field (judged after the loop); chunked alone is the common case.
        if (value.trim().toLowerCase() !== 'chunked') codings = codings === undefined ? value : `${codings}, ${value}`;
        else if (codings !== undefined) codings += ', chunked';
        hasBody = true;
        chunked = true;
        break;
      case CONTENT_LENGTH:
        // A declared 0 is a known length too: an HTTP/2 request may end its stream with an
        // empty DATA frame after it, and its body is then kept whole (exchange.ts #bodyKept).
        declared = Number(value);
        if (value !== '0') hasBody = true;
        out.push(name, value);
        break;
      case UPGRADE:
        // A list (RFC 9110 §7.8): repeated fields are one list, in order.
        upgrade = upgrade === undefined ? value : `${upgrade}, ${value}`;
        break;
      default:
        break; // CONNECTION, DROP
    }
  }

  // `codings` starts with a field that is not `chunked` alone, so the list is never chunked alone: always a refusal.
  if (codings !== undefined) throw requestCodingRefusal(codings)!;
  if (clientHost !== undefined) origHost = clientHost;
  out.push('host', hostValue ?? origHost ?? '');
  out.push('via', via);
  out.push(idHeader, requestId);
  if (ctx.sendXForwarded) {
    out.push('x-forwarded-for', xff ? `${xff}, ${clientAddr}` : clientAddr);
    out.push('x-forwarded-proto', xfp ?? proto);
    if (origHost !== undefined || xfh !== undefined) out.push('x-forwarded-host', xfh ?? origHost!);
  }
  if (ctx.sendForwarded) {
    let el = `for=${quoteForwarded(clientAddr)};proto=${proto}`;
    if (origHost) el += `;host=${/^[\w.:[\]-]+$/.test(origHost) ? origHost : JSON.stringify(origHost)}`;
    out.push('forwarded', fwd ? `${fwd}, ${el}` : el);
  }
  return { headers: out, hasBody, bodyLength: chunked ? -1 : declared, upgrade };
}

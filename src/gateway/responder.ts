import { STATUS_CODES, ServerResponse as NodeServerResponse, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { renderFailure, renderGrpcFailure, type AttemptSummary, type Failure } from '../failure/index.js';
import { proxyStatusOptions, type GatewayContext } from './context.js';
import type { HookRequest } from './hooks.js';
import type { AttemptRecord } from './events.js';
import type { PeerEnd } from '../net/own-listeners.js';

/** What the responder needs to know about the request it answers. */
export interface FailureAnswer {
  readonly ctx: GatewayContext;
  readonly requestId: string;
  readonly accept: string | undefined;
  readonly clientAddress: string | undefined;
  /** The client's connection: one of this process's forward proxy is trusted with no topology (net/own-listeners.ts). */
  readonly clientSocket: PeerEnd | undefined;
  /** The upstream tries so far (their endpoints, phases and outcomes go into the problem+json body). */
  readonly attempts?: readonly AttemptRecord[];
  /** A HEAD request: headers without a body. */
  readonly head?: boolean;
  /** Close the client connection after the answer. */
  readonly close: boolean;
  /**
   * Raw sockets only: the form of the head. Both carry the status's standard reason phrase
   * (`408 Request Timeout`, not the failure type's title); `parser` (parser errors, CONNECT)
   * writes `connection: close` first, `upgrade` last as Node's ServerResponse would. Two
   * forms because the bytes of each are pinned by tests and clients; both come from here.
   */
  readonly rawForm?: 'parser' | 'upgrade';
  /** The request as hooks see it; undefined for parser errors (there is no request). */
  readonly hookRequest?: HookRequest;
  /** RFC 9211 Cache-Status of a route with a cache (the answer was not stored and never will be). */
  readonly cacheStatus?: string;
  /** Strict-Transport-Security value of a TLS listener with hsts. */
  readonly hsts?: string;
  /** A gRPC request (failure/grpc.ts `isGrpc`): answered 200 with grpc-status in the trailers. */
  readonly grpc?: boolean;
}

/**
 * The one writer of gateway-made responses on the reverse face: every failure and refusal
 * (exchanges, upgrades, parser errors, CONNECT) goes through here, to a `ServerResponse`
 * or to a raw socket, after the `onFailure` hooks saw it. Returns the failure answered
 * (a hook may have replaced its detail) and sets nothing else.
 */
export function respondWithFailure(to: ServerResponse | Duplex, f: Failure, a: FailureAnswer): Failure {
  const hooks = a.ctx.hooks;
  if (hooks !== undefined && a.hookRequest !== undefined) f = hooks.failure(a.hookRequest, f);
  if (a.grpc === true && isServerResponse(to)) {
    const g = renderGrpcFailure({ failure: f, requestId: a.requestId, proxyStatus: proxyStatusOptions(a.ctx, a.clientAddress, a.clientSocket), requestIdHeader: idHeader(a.ctx) });
    if (a.hsts !== undefined) g.headers['strict-transport-security'] = a.hsts;
    if (a.close) g.headers.connection = 'close';
    forgetReason(to);
    to.writeHead(g.status, g.headers);
    to.addTrailers(g.trailers);
    to.end();
    return f;
  }
  const out = renderFailure({
    failure: f,
    requestId: a.requestId,
    accept: a.accept,
    attempts: a.attempts !== undefined && a.attempts.length > 0 ? a.attempts.map(toSummary) : undefined,
    proxyStatus: proxyStatusOptions(a.ctx, a.clientAddress, a.clientSocket),
    head: a.head,
    requestIdHeader: idHeader(a.ctx),
  });
  if (a.hsts !== undefined) out.headers['strict-transport-security'] = a.hsts;
  if (isServerResponse(to)) {
    if (a.close) out.headers.connection = 'close';
    if (a.cacheStatus !== undefined) out.headers['cache-status'] = a.cacheStatus;
    forgetReason(to);
    to.writeHead(out.status, out.headers);
    to.end(out.body);
    return f;
  }
  let head: string;
  if (a.rawForm === 'upgrade') {
    head = `HTTP/1.1 ${out.status} ${STATUS_CODES[out.status] ?? 'Unknown'}\r\n`;
    for (const k in out.headers) head += `${k}: ${out.headers[k]}\r\n`;
    head += 'connection: close\r\n';
  } else {
    head = `HTTP/1.1 ${out.status} ${STATUS_CODES[out.status] ?? f.title}\r\nconnection: close\r\n`;
    for (const k in out.headers) head += `${k}: ${out.headers[k]}\r\n`;
  }
  to.end(Buffer.concat([Buffer.from(head + '\r\n', 'latin1'), out.body]));
  return f;
}

/**
 * Asterisk-form `OPTIONS *` (RFC 9112 §3.2.4) names the server, not a resource: the
 * gateway answers it itself, a gateway-made answer that is not a failure, with the `Allow` of
 * the gateway as a whole (router.ts `serverAllow`, the one CONNECT's 405 carries too).
 */
export function respondToOptionsAsterisk(res: ServerResponse, ctx: GatewayContext, requestId: string, hsts: string | undefined): void {
  respondToOptions(res, ctx, requestId, ctx.router.serverAllow, hsts);
}

/**
 * OPTIONS (RFC 9110 §9.3.7) answered by the gateway itself: `OPTIONS *`, and a path whose
 * routes take other methods but not OPTIONS (router.ts `Router.allowed`), where it would
 * otherwise be the 405 of those methods. 204 with `Allow`; not a failure (Proxy-Status
 * proxy_internal_response, as a redirect).
 */
export function respondToOptions(to: ServerResponse | Duplex, ctx: GatewayContext, requestId: string, allow: string, hsts: string | undefined): number {
  const fields: Record<string, string> = { allow, 'proxy-status': `${ctx.identity};error=proxy_internal_response`, [ctx.requestIdHeader]: requestId };
  // Every answer of a TLS listener with hsts carries it, the gateway's own too.
  if (hsts !== undefined) fields['strict-transport-security'] = hsts;
  if (isServerResponse(to)) {
    to.writeHead(204, fields);
    to.end();
    return 204;
  }
  // An upgrade request's socket (upgrade.ts): the head as Node's ServerResponse would write it, then closed.
  let head = 'HTTP/1.1 204 No Content\r\n';
  for (const k in fields) head += `${k}: ${fields[k]}\r\n`;
  to.end(head + 'connection: close\r\n\r\n', 'latin1');
  return 204;
}

/**
 * A plain listener with `redirectToHttps`: the same host and path over HTTPS. Like `OPTIONS *`,
 * a gateway-made answer that is not a failure (Proxy-Status proxy_internal_response).
 */
export function respondWithRedirect(res: ServerResponse, ctx: GatewayContext, requestId: string, status: number, location: string): void {
  res.writeHead(status, { location, 'content-length': '0', 'proxy-status': `${ctx.identity};error=proxy_internal_response`, [ctx.requestIdHeader]: requestId });
  res.end();
}

/**
 * An ACME HTTP-01 validation (RFC 8555 §8.3) on a plain listener: the key authorization of a
 * pending challenge (src/tls/acme/). A gateway-made answer that is not a failure.
 */
export function respondWithAcmeChallenge(res: ServerResponse, ctx: GatewayContext, requestId: string, keyAuthorization: string): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(Buffer.byteLength(keyAuthorization)), 'cache-control': 'no-store', 'proxy-status': `${ctx.identity};error=proxy_internal_response`, [ctx.requestIdHeader]: requestId });
  res.end(keyAuthorization);
}

/**
 * A node:http answer whose relayed head Node refused (writeHead throws after it has taken the
 * status line's reason phrase) keeps that phrase: the failure written after it read
 * `502 OK`. Cleared, Node takes the failure's own status's phrase. Only node:http's
 * ServerResponse keeps one (HTTP/2 has none; the net front writes its own).
 */
function forgetReason(to: ServerResponse): void {
  if (to instanceof NodeServerResponse) to.statusMessage = '';
}

function isServerResponse(to: ServerResponse | Duplex): to is ServerResponse {
  return typeof (to as ServerResponse).writeHead === 'function';
}

function toSummary(a: AttemptRecord): AttemptSummary {
  return { endpoint: a.endpoint, phase: a.phase, error: a.error, status: a.status, durationMs: (a.endMs ?? a.startMs) - a.startMs };
}

/** The request id's header on a gateway-made answer: the configured one, unless a Config built by hand (not through the schema) holds an invalid one. */
function idHeader(ctx: GatewayContext): string | undefined {
  return ctx.configFieldsValid ? ctx.requestIdHeader : undefined;
}

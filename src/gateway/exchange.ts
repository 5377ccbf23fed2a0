import { DeadlineEntry, Timeout, deadlines } from '../timing/deadlines.js';
import { METHODS, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { CLIENT_CLOSED_STATUS, Failure, classify, failureMember, grpcTrailers, isGrpc, receivedMember, type AttemptSummary } from '../failure/index.js';
import { IDEMPOTENT_METHODS } from '../http/methods.js';
import { plainAddress } from '../http/trust.js';
import type { Endpoint } from '../upstream/endpoint.js';
import type { EndpointWaiter } from '../upstream/endpoint-wait.js';
import { Attempt } from './attempt.js';
import { BodyRelay, wholeBodyWithin } from './body-relay.js';
import { NO_CLIENT_LIMITS, type ClientLimits } from './client-limits.js';
import { proxyStatusOptions, type GatewayContext } from './context.js';
import { requestEnd, type AttemptRecord, type EndedBy, type ReverseRecord } from './events.js';
import { traceTry, type GatewayTracing, type RequestTrace } from './tracing.js';
import { buildUpstreamHead } from './request-headers.js';
import { respondToOptions, respondToOptionsAsterisk, respondWithAcmeChallenge, respondWithFailure, respondWithRedirect } from './responder.js';
import { ACME_CHALLENGE_PREFIX } from '../tls/acme/index.js';
import { hasHsts, httpsLocation, type ListenerFront } from './front.js';
import { tlsInfoOf, type TlsInfo } from '../tls/index.js';
import { finalResponseHead, trailersOf, type UpstreamTrailers } from './response-headers.js';
import { closedByClient, gatewayCut, resetStream, streamConnection } from './h2.js';
import { h2ErrorName } from './h2-errors.js';
import { connectionCut, parserRefusal } from '../failure/index.js';
import type { Http2Stream } from 'node:http2';
import { admitPhase, type Admittable } from './admit.js';
import { runRequestPhase, type HookedRequest } from './hooks.js';
import { decideOnFailure, decideOnStatus, tryTimeoutMs, type RetryAgain, type RetryDecision, type TryFacts } from './retry-policy.js';
import { NOT_STARTED_AFTER_CLOSE, answerEndsConnection, closeAfter, closingAfterAnswer, finished, offer, runsAlone, withdrawn, type Ordered } from '../http/connection-order.js';
import { checkHeaderCount, checkRequestTarget } from './request-target.js';
import { literalHost, noRouteFailure, rewritePath, type Route } from './router.js';
import { CachePhase, invalidateAfterUnsafe } from './cache-phase.js';
import { SAFE_METHODS } from '../http/methods.js';
import type { RouteCache } from '../cache/index.js';
import { fieldText, trailersCarried, withoutUncarriedTrailer, type RawField } from '../http/headers.js';
import { versionFramingProblem } from '../http/framing.js';

/** A new request id (src/http/request-id.ts). */
export function newRequestId(ctx: GatewayContext): string {
  return ctx.requestIds.next();
}

/** Methods of HTTP (Node's registry); llhttp also parses RTSP methods, which must not be forwarded as HTTP. */
const HTTP_METHODS = new Set(METHODS);

/**
 * Request bodies up to this size are kept while in flight so a retry can send them again
 * (every method: a non-idempotent request is resent after a reset that left it unread). A
 * body that may grow past it is never sent on a reused connection (`#bodyKept`).
 */
const REPLAY_LIMIT = 64 * 1024;

const NO_PROGRESS = { connected: false, responseStarted: false, headersReceived: false } as const;

/**
 * One client request through the gateway: route → hooks → admit → pick → try (retry)
 * → respond. It owns the request (route, admission slot, the client's response, the
 * record); each try is an `Attempt` (./attempt.ts), the undici dispatch handler for it.
 * Whether to try again is the retry policy's decision (./retry-policy.ts); every
 * gateway-made answer goes through the responder (./responder.ts). It is also what
 * hooks see of the request (`HookRequest`), so a hook call allocates nothing.
 */
export class Exchange implements HookedRequest, Admittable, Ordered, EndpointWaiter {
  readonly ctx: GatewayContext;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly listener: string;
  readonly via: string;
  /** The listener's limits on the client's own slowness (request body, reading the response). */
  readonly clientLimits: ClientLimits;
  /** TLS, HSTS, redirect to HTTPS: undefined on a plain listener without a redirect. */
  readonly front: ListenerFront | undefined;
  /** Via for the response: received from the upstream over HTTP/1.1, whatever the client spoke. */
  readonly requestId: string;
  readonly t0 = performance.now();
  readonly attempts: AttemptRecord[] = [];
  route: Route | undefined;
  /** Kept: Node detaches req.socket once the response closes. */
  readonly #socket: Socket;
  /** The client's address. */
  readonly #peer: string | undefined;
  #path = '';
  #host = '';
  /**
   * The client's Host field, for the record, once checkRequestTarget found it ('' without one);
   * undefined before: the record then reads `req.headers` (see Router#match for why not always).
   */
  #hostField: string | undefined;
  #upstreamPath = '';
  #headers: string[] = [];
  /**
   * Every name and value of #headers is known valid, so the native client does not judge them
   * again (pool/native-client.ts, CheckedDispatchOptions): the head was built only from a
   * request an HTTP/1.1 front parsed (Node's llhttp, strict, or http/request-head.ts: each
   * refuses any other byte in a name or value), config values the schema judged (route host,
   * request-id header, name; ctx.configFieldsValid), and the gateway's own (Via, X-Forwarded-*, request id,
   * traceparent, the endpoint's host). Any hook on requests, a cache phase (stored
   * validators) or HTTP/2 (its parser lets other control bytes through) clears it.
   */
  #fieldsChecked = false;
  #hasBody = false;
  /** The body's declared length (Content-Length), or -1: chunked or none (request-headers.ts). */
  #bodyLength = -1;
  /** A gRPC answer's grpc-status / grpc-message found in its head (Trailers-Only), repeated as trailers. */
  #grpcHeadStatus: Record<string, string> | undefined;
  #idempotent = false;
  #admitted = false;
  #refused = false;
  /** When the admission slot was granted, and when response headers came (for the adaptive limit). */
  #admittedAt = 0;
  /** performance.now() of the last try's response head (set by the Attempt). */
  headersAt = 0;
  /** The current (or last) try. */
  #attempt: Attempt | undefined;
  /** Endpoints that failed a try of this request; the balancer avoids them. */
  #tried: Set<Endpoint> | undefined;
  /** A retry decided and waiting for its delay. */
  #pending: RetryAgain | undefined;
  /** Retries after a lost keep-alive race that gave their try back (`#facts`; at most FREE_RACE_RETRIES). */
  #raceRetries = 0;
  /** Held while every endpoint is down: the failure to answer with if none comes back. */
  #held: Failure | undefined;
  /** performance.now() when it was first held (0: never); the hold time counts from there. */
  #heldFrom = 0;
  /** ms spent waiting for response heads by finished tries (the response timeout bounds the sum). */
  #headWaitMs = 0;
  /** The client sent `Expect: 100-continue` with a body: the upstream is asked first. */
  #expectContinue = false;
  /** The client was told to send its body (the upstream's 100 relayed). */
  #continued = false;
  /** Not safe (RFC 9110 §9.2.1): runs alone on its connection (./connection-order.ts). */
  readonly unsafe: boolean;
  /** Where it is in its connection's order. */
  #order: 'waiting' | 'running' = 'waiting';
  /** responseClosed ran (once). */
  #ended = false;
  #maxHeaderCount = Infinity;
  #expectArg = false;
  #headersSent = false;
  #complete = false;
  #published = false;
  /** The request's trace, begun at its first try when tracing is on (ctx.tracing). */
  #trace: RequestTrace | undefined;
  #error: Failure | undefined;
  /**
   * Why the request ended with no answer when no failure says it: HTTP/2, why the client's
   * stream ended (RST_STREAM code, GOAWAY); HTTP/1.1, that it never started, pipelined behind
   * an answer that ends the connection (`abandon`).
   */
  #goneDetail: string | undefined;
  #endedBy: EndedBy = 'complete';
  #bytesIn0: number;
  #bytesOut0: number;
  /** The cache phase (routes with `cache` only; every other request tests this one field). */
  #cache: CachePhase | undefined;

  constructor(ctx: GatewayContext, req: IncomingMessage, res: ServerResponse, listener: string, via: string, limits: ClientLimits = NO_CLIENT_LIMITS, front?: ListenerFront) {
    this.ctx = ctx;
    this.clientLimits = limits;
    this.front = front;
    this.req = req;
    this.res = res;
    this.listener = listener;
    this.via = via;
    const incoming = ctx.trustIncomingRequestId ? req.headers[ctx.requestIdHeader] : undefined;
    this.requestId = typeof incoming === 'string' && incoming.length > 0 && incoming.length <= 200 ? incoming : newRequestId(ctx);
    // HTTP/2: req.socket is Node's proxy of the stream, which forgets the connection once the
    // stream closes; keep the TLS connection itself (its byte counts are the connection's).
    this.#socket = front !== undefined && front.h2 ? h2Connection(req) : req.socket;
    // Read once: Node's getter goes through _getpeername() each time (~500 instructions, read
    // five times a request before), and the address stays known after the socket has closed.
    this.#peer = this.#socket.remoteAddress;
    this.#bytesIn0 = this.#socket.bytesRead;
    this.#bytesOut0 = this.#socket.bytesWritten;
    // Module-level listeners that find the exchange on the response: no closures per request.
    (res as ExchangeResponse)[kExchange] = this;
    // 'close' comes once per response, and the response is this exchange's: on(), not once() (no wrapper, no removal).
    res.on('close', onResClose);
    this.unsafe = runsAlone(req.method!, req.httpVersion);
    ctx.inflight++;
  }

  // ---- HookRequest -----------------------------------------------------------------------

  get method(): string {
    return this.req.method!;
  }

  get path(): string {
    return this.#path || (this.req.url ?? '');
  }

  get host(): string {
    return this.#host;
  }

  get routeName(): string | undefined {
    return this.route?.name;
  }

  get clusterName(): string | undefined {
    return this.route?.cluster.name;
  }

  get clientAddress(): string | undefined {
    return this.#peer;
  }

  /** The client's connection (HTTP/2: the connection, not the stream). */
  get clientSocket(): Socket {
    return this.#socket;
  }

  get upgrade(): boolean {
    return false;
  }

  /** The connection's TLS (server name, protocol, verified client certificate); undefined on plain HTTP. */
  get tls(): TlsInfo | undefined {
    return tlsInfoOf(this.#socket);
  }

  header(name: string): string | string[] | undefined {
    return this.req.headers[name];
  }

  /**
   * The client is gone: its response closed, or its connection closed before the response was
   * begun. The one test of every step that may start upstream work later (a queued slot, a
   * retry, a held request, the hooks, a collapsed cache wait): `res.destroyed` alone is
   * undefined on an HTTP/2 response, so a stream the client reset while it waited in the
   * cluster's queue was dispatched when its slot came, and its slot was never given back
   * (h2-rapid-reset.test finding).
   */
  get clientGone(): boolean {
    return this.#ended || this.res.destroyed;
  }

  /** The response is complete (the gateway ended it normally). */
  get complete(): boolean {
    return this.#complete;
  }

  // ---- the client's own slowness (the body relay's BodyWatch: owner and limits) ---------

  get owner(): this {
    return this;
  }

  get limits(): ClientLimits['body'] {
    return this.clientLimits.body;
  }

  get bodyDeferred(): boolean {
    return this.#expectContinue && !this.#continued;
  }

  /** The client is too slow with the request body: 408 (or cut, once answering) and the try aborted. */
  bodyStalled(detail: string): void {
    this.refuse(new Failure({ type: 'http_request_error', phase: 'send', reason: 'request_timeout', detail }));
  }

  /** The client did not read the response for the send timeout: cut it, and the try. */
  clientNotReading(detail: string): void {
    this.refuse(new Failure({ type: 'http_request_error', phase: 'body', detail }));
  }

  // ---- request phases --------------------------------------------------------------------

  /**
   * Check the head (header count, Host, request-target), route, run the request hooks and
   * admit. Errors become gateway responses; nothing throws out of here.
   */
  start(maxHeaderCount = Infinity, expectContinue = false): void {
    this.#maxHeaderCount = maxHeaderCount;
    this.#expectArg = expectContinue;
    const front = this.front;
    // HTTP/2 streams are independent: no order across them.
    if (front !== undefined && front.h2) {
      this.begin();
      return;
    }
    // Pipelined requests start in their connection's order (./connection-order.ts).
    offer(this.#socket, this);
  }

  /** Its turn on the connection came (Ordered). */
  begin(): void {
    this.#order = 'running';
    if (this.res.destroyed || this.#socket.destroyed || (this.front !== undefined && this.front.h2 && h2StreamClosed(this.res))) {
      // The client left while it waited (a response never assigned to the socket gets no 'close');
      // an HTTP/2 stream the client reset in the same read as its HEADERS is closed before Node
      // emits it (h2-rapid-reset.test finding: it went upstream all the same).
      this.responseClosed();
      return;
    }
    this.#run(this.#maxHeaderCount, this.#expectArg);
  }

  #run(maxHeaderCount: number, expectContinue: boolean): void {
    const req = this.req;
    try {
      checkHeaderCount(req, maxHeaderCount);
      // HTTP/1.0 with Transfer-Encoding: faulty framing, refused and closed (http/framing.ts; one compare for HTTP/1.1).
      if (req.httpVersion === '1.0') {
        const framing = versionFramingProblem('1.0', req.headers['transfer-encoding'] !== undefined);
        if (framing !== undefined) throw parserRefusal(framing);
      }
      if (!HTTP_METHODS.has(req.method!)) {
        throw new Failure({ type: 'http_request_error', phase: 'accept', reason: 'not_implemented', detail: `method ${req.method} is not an HTTP method the gateway forwards` });
      }
      if (req.url === '*') {
        this.#answerAsterisk();
        return;
      }
      const target = checkRequestTarget(req, this.ctx.escapedSlashes);
      const path = (this.#path = target.path);
      const host = (this.#host = target.routeHost);
      this.#hostField = target.hostField ?? '';
      const front = this.front;
      // ACME HTTP-01 validations come over plain HTTP, before routing and before a redirect (one field test when off).
      if (this.ctx.acme !== undefined && front?.scheme !== 'https' && path.startsWith(ACME_CHALLENGE_PREFIX)) {
        this.#answerAcmeChallenge(path);
        return;
      }
      if (front !== undefined && front.redirect !== undefined) {
        this.#redirectToHttps(front, target.hostValue ?? '', path);
        return;
      }
      const route = this.ctx.router.match(host, req.method!, target.routePath, req);
      if (!route) {
        this.#noRoute(host, path, target.routePath);
        return;
      }
      this.route = route;
      const hostValue = literalHost(route.host);
      const head = buildUpstreamHead(this.ctx, req, this.#peer, this.requestId, hostValue, this.via, front === undefined ? 'http' : front.scheme, target.hostValue);
      this.#headers = head.headers;
      this.#bodyLength = head.bodyLength;
      this.#fieldsChecked = (front === undefined || !front.h2) && this.ctx.hooks?.request === undefined && this.ctx.configFieldsValid;
      // HTTP/2 has no chunked coding: a body without content-length is DATA frames, and only
      // END_STREAM on the HEADERS frame says there is none (h2.test / h2c.test finding: such
      // a body was dropped, gRPC's messages among them).
      this.#hasBody = head.hasBody || (front !== undefined && front.h2 && (req as unknown as { stream: { endAfterHeaders: boolean } }).stream.endAfterHeaders === false);
      // RFC 9110 §10.1.1: forward the expectation; the client sends its body once the
      // upstream's 100 is relayed (continueClient), or not at all after a final answer.
      this.#expectContinue = expectContinue && head.hasBody;
      this.#upstreamPath = rewritePath(route, path, target.routePath);
      this.#idempotent = IDEMPOTENT_METHODS.has(req.method!) || (route.retry.idempotencyKey && req.headers['idempotency-key'] !== undefined);
      if (!runRequestPhase(this.ctx.hooks, this)) return;
      if (route.cache !== undefined && this.#cacheLookup(route.cache)) return;
      this.#admit();
    } catch (err) {
      this.fail(err instanceof Failure ? err : classify(err, NO_PROGRESS));
    }
  }

  /**
   * No route takes the request: 404 when none matches its host, path and headers; when some
   * do but none takes its method, RFC 9110 §15.5.6's 405 with the `Allow` of those routes, or
   * for OPTIONS the gateway's own 204 with it (router.ts `Router.allowed`). Throws the failure.
   */
  #noRoute(host: string, path: string, routePath: string): void {
    const req = this.req;
    const allow = this.ctx.router.allowed(host, routePath, req);
    if (allow !== undefined && req.method === 'OPTIONS') {
      this.#complete = true;
      respondToOptions(this.res, this.ctx, this.requestId, allow, this.front?.hsts);
      return;
    }
    throw noRouteFailure(req.method!, `${host || '(no host)'}${path.split('?')[0]}`, allow);
  }

  /**
   * Asterisk-form (RFC 9112 §3.2.4) names the server, not a resource: `OPTIONS *` is
   * answered by the gateway itself; any other method with `*` is malformed.
   */
  #answerAsterisk(): void {
    if (this.req.method !== 'OPTIONS') {
      throw new Failure({ type: 'http_request_error', phase: 'accept', reason: 'bad_request', detail: 'asterisk-form is only valid with OPTIONS' });
    }
    this.#complete = true;
    respondToOptionsAsterisk(this.res, this.ctx, this.requestId, this.front?.hsts);
  }

  /** An ACME HTTP-01 validation: the pending challenge's key authorization, or 404 when no challenge has this token. */
  #answerAcmeChallenge(path: string): void {
    const keyAuthorization = this.ctx.acme!.answer(path);
    if (keyAuthorization === undefined) {
      throw new Failure({ type: 'destination_not_found', phase: 'route', detail: 'no ACME challenge is pending for this token' });
    }
    this.#complete = true;
    respondWithAcmeChallenge(this.res, this.ctx, this.requestId, keyAuthorization);
    this.#watchSend(); // a body, as a failure answer has (see fail)
  }

  /** A plain listener that redirects to HTTPS: the gateway's own answer, not a failure. */
  #redirectToHttps(front: ListenerFront, host: string, path: string): void {
    if (host === '') {
      throw new Failure({ type: 'http_request_error', phase: 'accept', reason: 'bad_request', detail: 'a redirect to HTTPS needs the Host the client asked for' });
    }
    this.#complete = true;
    respondWithRedirect(this.res, this.ctx, this.requestId, front.redirect!.status, httpsLocation(front.redirect!, host, path));
  }

  /** The asynchronous `onRequest` hooks settled (runRequestPhase): refuse, or go on. */
  afterRequestHooks(f: Failure | undefined): void {
    if (this.clientGone) return;
    if (f !== undefined) {
      this.fail(f);
      return;
    }
    try {
      const rc = this.route!.cache;
      if (rc !== undefined && this.#cacheLookup(rc)) return;
      this.#admit();
    } catch (err) {
      this.fail(err instanceof Failure ? err : classify(err, NO_PROGRESS));
    }
  }

  // ---- the cache phase (./cache-phase.ts) -------------------------------------------------

  /** Look the request up in the route's cache: true when answered (or waiting for a collapsed request). */
  #cacheLookup(rc: RouteCache): boolean {
    const phase = (this.#cache = new CachePhase(this, rc));
    this.#fieldsChecked = false;
    if (phase.lookup()) return true;
    this.#headers = phase.upstreamHeaders(this.#headers);
    return false;
  }

  /** A collapsed wait ended without an answer from the cache: go upstream. */
  cacheGoOn(): void {
    if (this.clientGone) return;
    try {
      this.#headers = this.#cache!.upstreamHeaders(this.#headers);
      this.#admit();
    } catch (err) {
      this.fail(err instanceof Failure ? err : classify(err, NO_PROGRESS));
    }
  }

  /** Answer from the cache (a hit, a revalidated or a stale stored response); the answer is complete. */
  answerFromCache(statusCode: number, stored: string[], body: Buffer | undefined): void {
    // A stored response: received over HTTP/1.1 or h2 once; which one is not stored, 1.1 is said.
    // Its trailers are not stored: a Trailer field would announce none, and node:http refuses
    // one on the whole body it writes (every hit of a chunked answer with trailers was a 500).
    stored = withoutUncarriedTrailer(stored, false);
    stored.push('via', this.ctx.responseVia.http1, this.ctx.requestIdHeader, this.requestId);
    // What every response of the listener gets, as a relayed head does (#writeResponseHead):
    // the onResponse hooks and HSTS. A stored answer skipped both before session 30 (a hook's
    // added CSP missing on hits, a field it strips back; hits on a TLS listener without HSTS).
    const head = this.#listenerHead(statusCode, stored);
    if (head instanceof Failure) {
      this.fail(head);
      return;
    }
    if (this.ctx.draining) head.push('connection', 'close');
    // An upstream's head, stored (not a gateway-made answer: those go through the responder).
    // Stored fields passed Node's checks when they were first passed on.
    this.res.writeHead(statusCode, head);
    this.#complete = true;
    this.#headersSent = true;
    if (body !== undefined && body.length > 0) this.res.end(body);
    else this.res.end();
    // Written whole with one end(): no try's ResponseTimer watches the client take it. A client
    // that stops reading held the connection and the stored bytes queued for it for ever (the
    // stall hunt of session 13); the listener's send timeout applies as to a streamed answer.
    this.#watchSend();
  }

  /** What every upstream answer of the listener gets, relayed or stored: the onResponse hooks, then HSTS. A hook that throws is a Failure. */
  #listenerHead(statusCode: number, head: string[]): string[] | Failure {
    let out = head;
    const hooks = this.ctx.hooks;
    if (hooks !== undefined && hooks.response !== undefined) {
      try {
        out = hooks.runResponse(this, statusCode, out);
      } catch (err) {
        return new Failure({ type: 'proxy_internal_error', phase: 'headers', detail: 'an onResponse hook failed', cause: err });
      }
    }
    const front = this.front;
    if (front !== undefined && front.hsts !== undefined && !hasHsts(out)) out.push('strict-transport-security', front.hsts);
    return out;
  }

  /** The request has content to relay: Content-Length above 0, Transfer-Encoding, or (HTTP/2) a HEADERS frame that did not end the stream. */
  get hasBody(): boolean {
    return this.#hasBody;
  }

  /** The request as it goes upstream (path and header pairs), for the cache's background revalidation. */
  upstreamRequest(): { path: string; headers: readonly string[] } {
    return { path: this.#upstreamPath, headers: this.#headers };
  }

  /** The next hop of the current try. */
  get currentEndpoint(): string | undefined {
    return this.#attempt?.endpoint.nextHop;
  }

  /** Take a slot of the cluster's concurrency limit (or queue for one), then try. */
  #admit(): void {
    const cluster = this.route!.cluster;
    cluster.onRequest(Date.now());
    if (!admitPhase(cluster, this)) return;
    this.#admitted = cluster.admission !== undefined;
    this.#admittedAt = performance.now();
    this.#attemptNow(false);
  }

  /** Queued, then given a slot (admitPhase). */
  admitted(): void {
    this.#admitted = true;
    this.#admittedAt = performance.now();
    if (this.clientGone) {
      this.#releaseAdmission(true);
      return;
    }
    this.#attemptNow(false);
  }

  /** Queued too long (admitPhase). */
  queueRefused(f: Failure): void {
    this.fail(f);
  }

  /** Pick an endpoint and a connection, and start a try. */
  #attemptNow(fresh: boolean): void {
    const route = this.route!;
    const cluster = route.cluster;
    const now = Date.now();
    let ep = cluster.pick(now, this.#tried, this.req, this.#peer);
    if (ep === undefined && this.#tried !== undefined) ep = cluster.pick(now, undefined, this.req, this.#peer);
    if (ep === undefined) {
      const f = new Failure({
        type: 'destination_unavailable',
        phase: 'pick',
        retryAfter: cluster.retryAfterSeconds(now),
        detail: `no endpoint of cluster ${cluster.name} is available (${cluster.describeAvailability(now)})`,
      });
      if (!this.#hold(f)) this.fail(f);
      return;
    }
    if (route.host === 'endpoint') {
      const h = this.#headers;
      for (let i = 0; i < h.length; i += 2) {
        if (h[i] === 'host') {
          h[i + 1] = ep.hostHeader;
          break;
        }
      }
    }
    // Until the client was told to go on, the expectation goes upstream (undici cannot send it).
    const expect = this.#expectContinue && !this.#continued;
    const prev = this.#attempt?.relay;
    // A body that cannot be kept whole for a replay goes on a connection opened for it, as a
    // non-idempotent request does: a lost keep-alive race could not be recovered (#bodyKept).
    const client = expect ? ep.pool.openExpectClient() : ep.pool.acquire(now, this.#idempotent && (!this.#hasBody || this.#bodyKept(prev)), fresh);
    // The body is kept for a retry: with `tries` > 1, and for an idempotent request whatever
    // `tries` says (a lost keep-alive race is sent again with `tries: 1` too). A non-idempotent
    // request with one try is sent again only after a reset before any byte of it was written,
    // when nothing was taken from the body either (both clients write it as they take it).
    const relay = !this.#hasBody ? undefined : prev !== undefined ? prev.replay() : new BodyRelay(this.req, route.retry.tries > 1 || this.#idempotent ? REPLAY_LIMIT : 0, undefined, this);
    const attempt = new Attempt(this, ep, client, relay, Math.round(performance.now() - this.t0));
    this.#attempt = attempt;
    this.attempts.push(attempt.record);
    const headers = expect ? [...this.#headers, 'expect', '100-continue'] : this.#headers;
    const tracing = this.ctx.tracing;
    attempt.dispatch(this.#upstreamPath, this.req.method!, tracing === undefined ? headers : this.#traced(tracing, attempt.record, headers), this.#fieldsChecked);
  }

  /**
   * The whole body will be kept for a replay, whatever this try meets, so it may go on a
   * reused connection: its declared length is within REPLAY_LIMIT, or (chunked, or HTTP/2
   * without a Content-Length) all of it has come from the client and fits (`wholeBodyWithin`).
   * Otherwise a reused connection the upstream closed as the body was written (the keep-alive
   * race, RFC 9112 §9.6) would end in a 502 once more than REPLAY_LIMIT of it was taken: such
   * a body goes on a fresh connection, where no idle time precedes it, without buffering it.
   * Measured by nothing but what is known now: no wait for the body to show its length.
   */
  #bodyKept(prev: BodyRelay | undefined): boolean {
    const length = this.#bodyLength;
    if (length >= 0) return length <= REPLAY_LIMIT;
    return wholeBodyWithin(this.req, prev, REPLAY_LIMIT);
  }

  /** Tracing on: the try's span, and its `traceparent` in a copy of the headers. */
  #traced(tracing: GatewayTracing, a: AttemptRecord, headers: string[]): string[] {
    const t = traceTry(tracing, this.#trace, this.req, performance.timeOrigin + this.t0, a, headers);
    this.#trace = t.trace;
    return t.headers;
  }

  // ---- what the tries report -------------------------------------------------------------

  /** The response-head timeout of a try that is now waiting for its head (the retry policy's choice). */
  tryTimeoutMs(a: Attempt, now: number, perfNow: number): number {
    const route = this.route!;
    return tryTimeoutMs(route, {
      overallMs: route.cluster.responseTimeoutMs,
      idempotent: this.#idempotent,
      tries: this.attempts.length,
      alternative: route.perTryTimeoutMs === undefined && route.cluster.hasAlternative(a.endpoint, this.#tried, now),
      spentMs: this.#headWaitMs,
      elapsedMs: perfNow - this.t0,
    });
  }

  /** A try's wait for its head ended after `ms` (it failed or timed out). */
  headWaitEnded(ms: number): void {
    this.#headWaitMs += ms;
  }

  /** Facts about a try for the retry policy. */
  #facts(a: Attempt, responseStarted: boolean): TryFacts {
    return {
      alternative: this.route!.cluster.hasAlternative(a.endpoint, this.#tried, Date.now()),
      endpoint: a.endpoint,
      connected: a.connected,
      reused: a.reused,
      neverRead: a.neverRead,
      notProcessed: a.notProcessed,
      responseStarted,
      idempotent: this.#idempotent,
      replayable: a.relay === undefined || a.relay.replayable,
      // A lost keep-alive race gives its try back (as nginx's ngx_http_upstream_next does for a
      // cached connection): `retry.tries: 1` still sends a GET again on a fresh connection.
      tries: this.attempts.length - this.#raceRetries,
      racesGivenBack: this.#raceRetries,
      elapsedMs: performance.now() - this.t0,
      clientGone: this.clientGone,
    };
  }

  /** An upstream 5xx: the policy decides whether it is drained and retried (the budget is spent now). */
  decideOnStatus(a: Attempt, status: number, raw: readonly RawField[]): RetryDecision {
    const route = this.route!;
    const now = Date.now();
    const d = decideOnStatus(status, raw, this.#facts(a, false), route, route.cluster.retryBudget, now);
    this.#decided(a, d, now);
    return d;
  }

  /**
   * A try failed; `responseStarted`: its response head was passed on to the client, so it is not
   * retried. (An answer dropped for a retry never comes here: its Attempt drains it and goes on
   * with the retry already decided, whatever ends the drain.)
   */
  tryFailed(a: Attempt, f: Failure, responseStarted: boolean): void {
    if (!responseStarted) {
      const route = this.route!;
      // Refused or timed out while connecting: the endpoint is unreachable until something connects to it again.
      const connectFailed = !a.connected && f.phase === 'connect';
      if (connectFailed) route.cluster.wait?.connectFailed(a.endpoint);
      const now = Date.now();
      const d = decideOnFailure(f, this.#facts(a, false), route, route.cluster.retryBudget, now);
      this.#decided(a, d, now);
      if (d.action === 'retry') {
        this.retry(d);
        return;
      }
      // The request never left: hold it while every endpoint is down.
      if (connectFailed && this.#hold(f)) return;
    }
    this.fail(f);
  }

  /**
   * Hold the request until an endpoint comes back (the cluster's `waitForEndpoint`), when
   * every endpoint is down, the hold time (counted from the first hold) and the route's
   * deadline allow, and the hold has room; false: answer now.
   */
  #hold(f: Failure): boolean {
    const route = this.route!;
    const wait = route.cluster.wait;
    if (wait === undefined || this.clientGone) return false;
    // A stale copy that may answer now is better than holding the client.
    if (this.#cache !== undefined && this.#cache.canAnswer(f)) return false;
    const now = performance.now();
    if (this.#heldFrom === 0) this.#heldFrom = now;
    let left = wait.timeoutMs - (now - this.#heldFrom);
    if (route.deadlineMs !== undefined) left = Math.min(left, route.deadlineMs - (now - this.t0));
    if (left <= 0 || !route.cluster.allDown(Date.now())) return false;
    if (!wait.hold(this, left)) return false;
    this.#held = f;
    return true;
  }

  /** An endpoint came back while held (EndpointWaiter): try again, on a new connection. */
  endpointBack(): void {
    this.#held = undefined;
    if (this.clientGone) return;
    this.#attemptNow(true);
  }

  /** No endpoint came back in time (EndpointWaiter): answer with what failed. */
  waitExpired(): void {
    const f = this.#held;
    this.#held = undefined;
    if (f === undefined || this.clientGone) return;
    this.fail(f);
  }

  #decided(a: Attempt, d: RetryDecision, now: number): void {
    if (d.action === 'retry') {
      // A keep-alive race retry (fresh) did not need the budget and does not spend it; a free one not a try either.
      if (!d.fresh) this.route!.cluster.retryBudget.onRetry(now);
      if (d.free === true) this.#raceRetries++;
      (this.#tried ??= new Set()).add(d.avoid);
    } else if (d.budget) {
      a.record.detail = `${a.record.detail ?? ''} (retry budget exhausted)`.trim();
    }
  }

  /** Act on a retry decision: try again now or after its delay. */
  retry(d: RetryAgain): void {
    if (d.delayMs <= 0) {
      this.#attemptNow(d.fresh);
      return;
    }
    this.#pending = d;
    // On the one deadline list, like every per-request timer (no Node timer per retry).
    new Timeout(() => retryLater(this), d.delayMs);
  }

  /** A delayed retry is due. */
  retryNow(): void {
    const d = this.#pending;
    this.#pending = undefined;
    if (this.clientGone || d === undefined) return;
    this.#attemptNow(d.fresh);
  }

  /** Write the upstream's response head to the client; false when it cannot be forwarded (the try is aborted). */
  writeResponseHead(a: Attempt, statusCode: number, rawHeaders: RawField[]): boolean {
    const ep = a.endpoint;
    const member = statusCode >= 500 ? receivedMember(statusCode, ep.nextHop, proxyStatusOptions(this.ctx, this.#peer, this.#socket)) : undefined;
    // Via names the protocol this response was received in: the try's connection's (RFC 9110 §7.6.3).
    // HTTP/1.x carries trailers only in a chunked body (http/headers.ts trailersCarried).
    const front = this.front;
    const carried = (front !== undefined && front.h2) || trailersCarried(statusCode, this.method, this.req.httpVersion);
    const built = finalResponseHead(rawHeaders, a.h2 ? this.ctx.responseVia.h2 : this.ctx.responseVia.http1, this.ctx.requestIdHeader, this.requestId, member, ep.nextHop, carried);
    if (built instanceof Failure) {
      a.abort(built);
      return false;
    }
    let head = built;
    // The cache may answer instead (a 304 to its validators, a stale copy for a 5xx): the try is
    // then drained or cut; or a 304 it cannot use goes again as the client sent it, once.
    if (this.#cache !== undefined) {
      const v = this.#cache.onHead(statusCode, rawHeaders, head);
      if (v === 'answered') return true;
      if (v === 'resend') {
        this.#headers = this.#cache.resendHeaders();
        a.sendAgain('a 304 naming none of the stored responses the cache asked about; sent again without its validators');
        return true;
      }
    } else if (statusCode < 400 && this.ctx.cache !== undefined && !SAFE_METHODS.has(this.method)) {
      // An unsafe request on a route without a cache still invalidates what the cached routes to its cluster stored (RFC 9111 §4.4).
      invalidateAfterUnsafe(this.ctx.cache, this.route!.cluster.name, this.#host, this.#path, this.#upstreamPath, rawHeaders, this.ctx.escapedSlashes);
    }
    const listened = this.#listenerHead(statusCode, head);
    if (listened instanceof Failure) {
      a.abort(listened);
      return false;
    }
    head = listened;
    // The client was never told to send its body: close rather than read it as the next request.
    if ((this.ctx.draining || (this.#expectContinue && !this.#continued)) && (front === undefined || !front.h2)) head.push('connection', 'close');
    // gRPC "Trailers-Only" (grpc-status in a head that ends the stream): undici does not say
    // the head ended the stream, and the client's head is sent before the end is known, so the
    // status is kept and sent again as trailers at the end, where every gRPC client reads it.
    if (front !== undefined && front.h2 && isGrpc(this.req.headers['content-type'])) this.#grpcHeadStatus = grpcStatusIn(head);
    try {
      this.res.writeHead(statusCode, head);
    } catch (err) {
      // Node refused a header (invalid name or value bytes): never forward it.
      a.abort(new Failure({ type: 'http_protocol_error', phase: 'headers', nextHop: ep.nextHop, detail: 'the response has a header the gateway cannot forward', cause: err }));
      return false;
    }
    this.#headersSent = true;
    return true;
  }

  /** A body chunk for the client; false (and undici pauses) while the client's buffer is full. */
  writeBody(chunk: Buffer): boolean {
    this.#cache?.tap(chunk);
    if (this.res.write(chunk)) return true;
    this.#attempt!.pause();
    this.res.once('drain', onResDrain);
    return false;
  }

  responseComplete(rawTrailers: UpstreamTrailers): void {
    this.#complete = true;
    this.#cache?.complete();
    const t = rawTrailers != null ? trailersOf(rawTrailers) : undefined;
    if (t !== undefined) this.res.addTrailers(t);
    else if (this.#grpcHeadStatus !== undefined) this.res.addTrailers(this.#grpcHeadStatus);
    this.res.end();
    // The upstream's part is over: the admission slot goes back now, not when the client has
    // taken the answer. A pipelined answer waits for its turn behind the answers before it (an
    // event stream: for as long as that lasts, RFC 9112 §9.3.2), and held the slot all that
    // time (test/gateway/stall-pipelined-behind-stream.test.ts).
    this.#releaseAdmission(false);
    this.#watchSend();
  }

  /**
   * An answer just ended with `end()`: when bytes are left in the client socket's own buffer
   * (the kernel's are full), the response finishes only once the client takes them, and
   * nothing else times that (the try's ResponseTimer stopped at the upstream's end; node:http
   * arms its keep-alive timer only at 'finish'). The listener's send timeout applies, as to
   * an answer still streaming; a client that never read held the connection, the request's
   * in-flight count and its admission slot for ever (the stall hunt of session 14,
   * test/gateway/stall-sent-unread.test.ts). No watch when the buffer is empty: a deadline
   * entry per answer would live for the whole send timeout.
   */
  #watchSend(): void {
    const sendMs = this.clientLimits.sendMs;
    if (sendMs <= 0) return;
    const front = this.front;
    // HTTP/2: the bytes wait in the stream (its flow-control window is shut, or the connection's
    // buffer is full), not in the connection, which the other streams share. The stream finishes
    // (and the response closes) only once the client opens its window; a client that never did
    // held the stream, the request's in-flight count and its record for ever (the HTTP/2 stall
    // hunt, test/gateway/stall-h2.test.ts).
    const queue: Queued = front !== undefined && front.h2 ? h2Stream(this.res) : this.#socket;
    if (queue.writableLength === 0) return;
    // A corked socket (the net front's, until the end of the tick) has not tried to write yet:
    // judged once it has. Every answer there got a watch, which held its exchange for the whole
    // send timeout (test/gateway/send-watch-retention.test.ts).
    if (queue.writableCorked > 0) process.nextTick(watchSendLater, this, queue, sendMs);
    else new SendWatch(this, queue, sendMs);
  }

  /** The upstream answered 100 Continue: tell the client (once) to send its body. */
  continueClient(): void {
    if (!this.#expectContinue || this.#continued || this.res.destroyed || this.#headersSent) return;
    this.#continued = true;
    this.res.writeContinue();
    this.#attempt?.relay?.startTiming();
  }

  /** A 103 from the upstream: passed on when Node accepts it as valid, else dropped. */
  earlyHints(raw: readonly RawField[]): void {
    const hints: Record<string, string | string[]> = {};
    for (let i = 0; i < raw.length; i += 2) {
      const k = fieldText(raw[i]!).toLowerCase();
      const v = fieldText(raw[i + 1]!);
      const prev = hints[k];
      hints[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    if (hints.link === undefined) return;
    try {
      this.res.writeEarlyHints(hints as { link: string | string[] });
    } catch {
      // An invalid Link (or field) from the upstream: an interim answer is only a hint, so it
      // is dropped; the final answer still comes. Never the gateway's 500 for the upstream's fault.
    }
  }

  /** The client took the buffered body: let the try read from the upstream again. */
  resumeUpstream(): void {
    this.#attempt?.resume();
  }

  // ---- the end ---------------------------------------------------------------------------

  /** The client's request turned out malformed while in flight (bad chunking): stop the try and refuse. */
  refuse(f: Failure): void {
    this.#refused = true;
    this.#attempt?.abandon(f);
    this.fail(f);
  }

  /** The final word on a failure: a gateway-made response (the responder), or an aborted client connection. */
  fail(f: Failure): void {
    const cache = this.#cache;
    // A stale stored copy may answer instead (stale-if-error, the route's serveStaleOn).
    if (cache !== undefined && !this.#headersSent && !this.res.headersSent && cache.onFailure(f)) return;
    this.#error = f;
    // The upstream work is over (failed, or aborted with the client's request): the slot goes
    // back now, as at responseComplete, not when the answer has reached the client.
    this.#releaseAdmission(f.source !== 'client');
    const res = this.res;
    if (this.#headersSent || res.headersSent) {
      // A truncated body must never look complete: cut the connection.
      this.#endedBy = f.source === 'client' ? 'client' : 'upstream';
      const front = this.front;
      if (front !== undefined && front.h2 && !res.writableEnded && isGrpc(this.req.headers['content-type'])) {
        // gRPC over h2: the call ends with the failure's grpc-status in the trailers (a status
        // other than OK never looks like a complete answer), so a stream cut upstream or an
        // upstream that stops sending gives the client UNAVAILABLE / DEADLINE_EXCEEDED, not INTERNAL.
        // Proxy-Status goes in the trailers too (RFC 9209 §2: a failure after the head).
        const ps = proxyStatusOptions(this.ctx, this.#peer, this.#socket);
        res.addTrailers({ ...grpcTrailers(f, ps.revealTopology), 'proxy-status': failureMember(f, ps) });
        res.end();
        this.#watchSend(); // the body's rest may still be queued before the trailers (see below)
        return;
      }
      // HTTP/2: RST_STREAM INTERNAL_ERROR (a plain destroy would end the stream with NO_ERROR, complete-looking).
      // Watched for the send timeout: a connection that takes no frame any more never writes
      // the RST_STREAM, and the stream (with this record) would never close (h2.ts StuckResets).
      if (front !== undefined && front.h2) resetStream((res as unknown as { stream: Http2Stream }).stream, H2_INTERNAL_ERROR, this.clientLimits.sendMs);
      else res.destroy();
      return;
    }
    if (res.destroyed || this.#ended) return; // no one to answer
    this.#endedBy = f.source;
    // An unread request body would be parsed as the next request: close instead (HTTP/2: the
    // stream ends on its own, the connection and its other streams stay).
    const h2 = this.front !== undefined && this.front.h2;
    const close = !h2 && (f.source === 'client' || this.ctx.draining || (this.#hasBody && !this.req.complete));
    if (close) closeAfter(this.#socket);
    this.#error = respondWithFailure(res, f, {
      ctx: this.ctx,
      requestId: this.requestId,
      accept: this.req.headers.accept,
      clientAddress: this.#peer,
      clientSocket: this.#socket,
      attempts: this.attempts,
      head: this.req.method === 'HEAD',
      close,
      hookRequest: this,
      cacheStatus: cache?.failureStatus,
      hsts: this.front?.hsts,
      grpc: isGrpc(this.req.headers['content-type']),
    });
    // The gateway's own answer (a problem page, a 502/503/504) is ended with end() like an
    // upstream's: over HTTP/2 its body waits in the stream while the client keeps the stream's
    // flow-control window shut (initial window 0, no WINDOW_UPDATE), and nothing timed it. The
    // stream, the request's in-flight count and its record were held for ever (the HTTP/2 stall
    // hunt, second round: test/gateway/stall-h2-client.test.ts). The send timeout applies.
    this.#watchSend();
  }

  #releaseAdmission(dropped: boolean): void {
    if (!this.#admitted) return;
    this.#admitted = false;
    // Latency for the adaptive limit: slot granted → response headers (not queue wait, not body streaming).
    const end = this.headersAt > this.#admittedAt ? this.headersAt : performance.now();
    this.route!.cluster.admission!.release(end - this.#admittedAt, dropped);
  }

  /** Its connection closed before its answer was written (Ordered): it ends without one, its try cancelled. */
  abandon(): void {
    // Never started, behind an answer that ends the connection (read to its close, a refusal):
    // it could never be answered, and the gateway did not forward it.
    if (this.#order === 'waiting' && !this.#ended && closingAfterAnswer(this.#socket)) this.#goneDetail = NOT_STARTED_AFTER_CLOSE;
    this.responseClosed();
  }

  /** The client response closed: finished, or the client went away. */
  responseClosed(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.ctx.inflight--;
    this.#cache?.end();
    const h2 = this.front !== undefined && this.front.h2;
    /** The gateway closed the client's connection itself (shutdown; HTTP/2: a protocol error, rapid reset): its failure. */
    let cut: Failure | undefined;
    if (h2) {
      if (!this.#complete && this.#error === undefined) {
        cut = gatewayCut((this.res as unknown as { stream: Http2Stream }).stream, this.#attempt?.record.phase ?? 'accept');
        // Else a stream reset by the client, or a connection gone: named in the record.
        if (cut === undefined) this.#goneDetail = h2GoneDetail(this.res);
      }
    } else {
      if (this.#order === 'running') {
        // Its answer ends the connection (read to its close, say): what waits behind it never starts.
        if (answerEndsConnection(this.res)) closeAfter(this.#socket);
        finished(this.#socket, this);
      } else withdrawn(this.#socket, this);
      // Cut at the drain timeout, unless the client had left first.
      if (!this.#complete && this.#error === undefined) cut = connectionCut(this.ctx.cut, this.#socket, this.#attempt?.record.phase ?? 'accept');
    }
    if (this.#held !== undefined) {
      this.route!.cluster.wait?.cancel(this);
      this.#held = undefined;
    }
    const dropped = this.#error !== undefined && this.#error.source !== 'client';
    if (!this.#complete && !this.#error) {
      // The client left (or the gateway closed its connection) before the response was complete: stop the upstream work.
      this.#endedBy = cut === undefined && this.#goneDetail !== NOT_STARTED_AFTER_CLOSE ? 'client' : 'gateway';
      this.#error = cut;
      if (!this.#refused) this.#attempt?.cancel();
    }
    this.#releaseAdmission(dropped);
    this.#publish();
  }

  #publish(): void {
    if (this.#published) return;
    this.#published = true;
    const hooks = this.ctx.hooks;
    const finish = hooks !== undefined && hooks.finish !== undefined;
    const tracing = this.ctx.tracing;
    if (!requestEnd.hasSubscribers && !finish && tracing === undefined) return;
    const req = this.req;
    const f = this.#error;
    // Built here as one literal in requestRecord's field order (the same shape for every
    // subscriber), not as an options object that requestRecord copies: one object of 25
    // fields per request less, on the path every request with metrics or a log takes.
    const record: ReverseRecord = {
      face: 'reverse',
      protocol: 'http',
      time: Date.now(),
      requestId: this.requestId,
      listener: this.listener,
      clientAddress: plainAddress(this.#peer),
      method: req.method,
      host: this.#hostField ?? req.headers.host ?? '',
      path: this.#path || (req.url ?? ''),
      httpVersion: req.httpVersion ?? '',
      route: this.route?.name,
      cluster: this.route?.cluster.name,
      // Left before any answer: 499, as the forward face and nginx record it (docs/access-log.md);
      // Node's default 200 made abandoned requests count as successes (session 31). A client that
      // left during the body keeps the status of the head it got.
      // Cut by the gateway before any answer (its HTTP/2 connection closed): no status was sent.
      status: this.res.headersSent || (this.#endedBy !== 'client' && this.#endedBy !== 'gateway') ? this.res.statusCode : this.#endedBy === 'client' ? CLIENT_CLOSED_STATUS : undefined,
      error: f?.type,
      reason: f?.reason,
      phase: f?.phase ?? (this.#endedBy === 'client' ? (this.#attempt?.record.phase ?? 'accept') : undefined),
      endedBy: this.#endedBy,
      detail: f?.detail ?? this.#goneDetail,
      attempts: this.attempts,
      bytesUp: this.#socket.bytesRead - this.#bytesIn0,
      bytesDown: this.#socket.bytesWritten - this.#bytesOut0,
      durationMs: Math.round((performance.now() - this.t0) * 1000) / 1000,
      upgrade: false,
      cache: this.#cache?.outcome,
      bypass: this.#cache?.bypass,
      storeRefused: this.#cache?.storeRefused,
      recoveredFrom: this.#cache?.recoveredFrom,
    };
    if (requestEnd.hasSubscribers) requestEnd.publish(record);
    if (finish) hooks.runFinish(record);
    if (tracing !== undefined) tracing.finish(this.#trace, req, record, performance.timeOrigin + this.t0);
  }
}

/** Where an ended answer's bytes wait for the client: its connection (HTTP/1.1) or its HTTP/2 stream. */
interface Queued {
  readonly writableLength: number;
  readonly writableCorked: number;
  readonly destroyed: boolean;
}

/** The tick's corked writes were tried: watch what is still queued. */
function watchSendLater(ex: Exchange, queue: Queued, ms: number): void {
  if (queue.writableLength > 0 && !queue.destroyed && !ex.clientGone) new SendWatch(ex, queue, ms);
}

/**
 * The send timeout of an answer ended with bytes still queued for the client (a cache hit
 * written whole, the end of a streamed answer): the client's connection (HTTP/2: its stream)
 * must take some of what is queued for it every `ms`, or the exchange is told (`clientNotReading`).
 */
class SendWatch extends DeadlineEntry {
  readonly #ex: Exchange;
  readonly #socket: Queued;
  readonly #ms: number;
  #left: number;

  constructor(ex: Exchange, socket: Queued, ms: number) {
    super();
    this.#ex = ex;
    this.#socket = socket;
    this.#ms = ms;
    this.#left = socket.writableLength;
    deadlines.add(this, performance.now(), ms);
  }

  deadlineReached(now: number): void {
    const s = this.#socket;
    const left = s.writableLength;
    // Taken, cut, or finished (the bytes queued now are a later answer's, timed by its own exchange).
    if (s.destroyed || left === 0 || this.#ex.clientGone) return;
    if (left < this.#left) {
      this.#left = left; // it took some: wait again
      deadlines.add(this, now, this.#ms);
      return;
    }
    this.#ex.clientNotReading(`the client took nothing of the answer queued for it for ${this.#ms} ms (send timeout)`);
  }
}

const kExchange = Symbol('gatewise.exchange');
type ExchangeResponse = ServerResponse & { [kExchange]?: Exchange };

/** The exchange answering this response, if the gateway created one for it. */
export function exchangeOf(res: ServerResponse): Exchange | undefined {
  return (res as ExchangeResponse)[kExchange];
}

function onResClose(this: ServerResponse): void {
  (this as ExchangeResponse)[kExchange]!.responseClosed();
}

function onResDrain(this: ServerResponse): void {
  (this as ExchangeResponse)[kExchange]!.resumeUpstream();
}

/** The TLS connection an HTTP/2 stream is on. */
function h2Connection(req: IncomingMessage): Socket {
  const stream = (req as unknown as { stream?: Http2Stream }).stream;
  return (stream !== undefined ? streamConnection(stream) : undefined) ?? req.socket;
}

/** The HTTP/2 stream under a response (a destroyed stand-in when Node has let go of it). */
function h2Stream(res: ServerResponse): Queued {
  return (res as unknown as { stream?: Http2Stream }).stream ?? GONE;
}
const GONE: Queued = { writableLength: 0, writableCorked: 0, destroyed: true };

/** The HTTP/2 stream under a response is closed already (Http2ServerResponse has no `destroyed`). */
function h2StreamClosed(res: ServerResponse): boolean {
  const stream = (res as unknown as { stream?: { closed: boolean; destroyed: boolean } }).stream;
  return stream === undefined || stream.closed || stream.destroyed;
}

/**
 * Why an HTTP/2 stream closed before its answer was complete: the client's RST_STREAM (any
 * code, NO_ERROR included), or its connection gone (`closedByClient` tells them apart; the
 * stream's rstCode cannot: Node closes the streams of a closed connection with CANCEL).
 */
function h2GoneDetail(res: ServerResponse): string | undefined {
  const stream = (res as unknown as { stream?: Http2Stream & { rstCode?: number } }).stream;
  if (stream === undefined) return undefined;
  const code = stream.rstCode ?? 0;
  const by = closedByClient(stream);
  if (by === 'stream') return `the client reset the HTTP/2 stream (RST_STREAM ${h2ErrorName(code)})`;
  if (by === 'connection') return H2_CONNECTION_GONE;
  if (code !== 0) return `the client reset the HTTP/2 stream (RST_STREAM ${h2ErrorName(code)})`;
  const session = stream.session as { closed?: boolean; destroyed?: boolean } | undefined;
  if (session === undefined || session.closed === true || session.destroyed === true) return H2_CONNECTION_GONE;
  return undefined;
}

const H2_CONNECTION_GONE = 'the client closed the HTTP/2 connection (GOAWAY or close) before the answer was complete';

const H2_INTERNAL_ERROR = 2;

function retryLater(ex: Exchange): void {
  ex.retryNow();
}

/** grpc-status and grpc-message of a response head (flat name, value pairs), when it has them. */
function grpcStatusIn(head: readonly string[]): Record<string, string> | undefined {
  let out: Record<string, string> | undefined;
  for (let i = 0; i < head.length; i += 2) {
    const n = head[i]!.toLowerCase();
    if (n === 'grpc-status' || n === 'grpc-message') (out ??= {})[n] = head[i + 1]!;
  }
  return out !== undefined && out['grpc-status'] !== undefined ? out : undefined;
}

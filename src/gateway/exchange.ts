import { METHODS, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Dispatcher } from 'undici';
import { Failure, classify, receivedMember, type AttemptSummary } from '../failure/index.js';
import { viaValue } from '../http/headers.js';
import { plainAddress } from '../http/trust.js';
import { ResponseTimer, type ResponseTimerOwner } from '../timing/response-timer.js';
import type { PooledClient } from '../upstream/connection-pool.js';
import type { Endpoint } from '../upstream/endpoint.js';
import { BodyRelay } from './body-relay.js';
import { proxyStatusOptions, type GatewayContext } from './context.js';
import { requestEnd, requestRecord, type AttemptRecord, type EndedBy } from './events.js';
import { buildUpstreamHead } from './request-headers.js';
import { respondToOptionsAsterisk, respondWithFailure } from './responder.js';
import { buildResponseHead, trailersObject } from './response-headers.js';
import { retryKindOf, backoffMs, retryAfterMs, type RetryKind } from './retry-policy.js';
import { normalizeHost, rewritePath, type Route } from './router.js';

/** A new request id (src/http/request-id.ts). */
export function newRequestId(ctx: GatewayContext): string {
  return ctx.requestIds.next();
}

/** Origin-form path of a request-target (absolute-form reduced to its path). */
export function originForm(url: string): string | undefined {
  if (url.charCodeAt(0) === 47 /* / */) return url;
  if (url === '*') return url;
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
    return u.pathname + u.search;
  } catch {
    return undefined;
  }
}

/** Methods of HTTP (Node's registry); llhttp also parses RTSP methods, which must not be forwarded as HTTP. */
const HTTP_METHODS = new Set(METHODS);

/** RFC 9110 §9.2.2. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Request bodies up to this size are kept while in flight so a retry can send them again. */
const REPLAY_LIMIT = 64 * 1024;

const NO_PROGRESS = { connected: false, responseStarted: false, headersReceived: false } as const;

/**
 * One client request through the gateway: route → admit → pick → forward → (retry)
 * → respond. It is also the undici dispatch handler, so a request costs one object,
 * not a chain of closures. Only `fail()` writes gateway-made error responses.
 */
export class Exchange implements Dispatcher.DispatchHandler, ResponseTimerOwner {
  readonly ctx: GatewayContext;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly listener: string;
  readonly via: string;
  /** Via for the response: received from the upstream over HTTP/1.1, whatever the client spoke. */
  readonly #responseVia: string;
  readonly requestId: string;
  readonly t0 = performance.now();
  readonly attempts: AttemptRecord[] = [];
  route: Route | undefined;
  endpoint: Endpoint | undefined;
  /** Kept: Node detaches req.socket once the response closes. */
  readonly #socket: Socket;
  #path = '';
  #upstreamPath = '';
  #headers: string[] = [];
  #hasBody = false;
  #idempotent = false;
  #admitted = false;
  #refused = false;
  /** When the admission slot was granted, and when response headers came (for the adaptive limit). */
  #admittedAt = 0;
  #headersAt = 0;
  // the current attempt
  #attempt: AttemptRecord | undefined;
  #client: PooledClient | undefined;
  #relay: BodyRelay | undefined;
  #abort: ((err?: Error) => void) | undefined;
  #resume: (() => void) | undefined;
  #connected = false;
  #responseStarted = false;
  #discard = false;
  #retryDelayMs = 0;
  /** The attempt's waits for the response head and between body bytes. */
  readonly #timer = new ResponseTimer(this);
  #wantFresh = false;
  #tried: Set<Endpoint> | undefined;
  // the exchange
  #headersSent = false;
  #complete = false;
  #published = false;
  #error: Failure | undefined;
  #endedBy: EndedBy = 'complete';
  #bytesIn0: number;
  #bytesOut0: number;

  constructor(ctx: GatewayContext, req: IncomingMessage, res: ServerResponse, listener: string, via: string) {
    this.ctx = ctx;
    this.req = req;
    this.res = res;
    this.listener = listener;
    this.via = via;
    this.#responseVia = req.httpVersion === '1.1' ? via : viaValue('1.1', ctx.identity);
    const incoming = ctx.trustIncomingRequestId ? req.headers[ctx.requestIdHeader] : undefined;
    this.requestId = typeof incoming === 'string' && incoming.length > 0 && incoming.length <= 200 ? incoming : newRequestId(ctx);
    this.#socket = req.socket;
    this.#bytesIn0 = req.socket.bytesRead;
    this.#bytesOut0 = req.socket.bytesWritten;
    // Module-level listeners that find the exchange on the response: no closures per request.
    (res as ExchangeResponse)[kExchange] = this;
    // 'close' comes once per response, and the response is this exchange's: on(), not once() (no wrapper, no removal).
    res.on('close', onResClose);
    ctx.inflight++;
  }

  /** Route and forward. Errors become gateway responses; nothing throws out of here. */
  start(): void {
    const req = this.req;
    try {
      if (!HTTP_METHODS.has(req.method!)) {
        throw new Failure({ type: 'http_request_error', phase: 'accept', reason: 'not_implemented', detail: `method ${req.method} is not an HTTP method the gateway forwards` });
      }
      if (req.url === '*') {
        this.#answerAsterisk();
        return;
      }
      const path = originForm(req.url ?? '');
      if (path === undefined) {
        throw new Failure({ type: 'http_request_error', phase: 'accept', reason: 'bad_request', detail: 'invalid request-target' });
      }
      this.#path = path;
      const host = normalizeHost(req.headers.host);
      const route = this.ctx.router.match(host, req.method!, path, req.headers);
      if (!route) {
        throw new Failure({ type: 'destination_not_found', phase: 'route', detail: `no route for ${req.method} ${host || '(no host)'}${path.split('?')[0]}` });
      }
      this.route = route;
      const hostValue = route.host === 'preserve' || route.host === 'endpoint' ? undefined : route.host;
      const head = buildUpstreamHead(this.ctx, req, this.requestId, hostValue, this.via, 'http');
      this.#headers = head.headers;
      this.#hasBody = head.hasBody;
      this.#upstreamPath = rewritePath(route, path);
      const method = req.method!;
      this.#idempotent = IDEMPOTENT.has(method) || (route.retry.idempotencyKey && req.headers['idempotency-key'] !== undefined);
      const cluster = route.cluster;
      cluster.onRequest(Date.now());
      const adm = cluster.admission;
      if (adm === undefined || adm.tryAcquire()) {
        this.#admitted = adm !== undefined;
        this.#admittedAt = performance.now();
        this.#attemptNow();
        return;
      }
      const waiting = adm.acquire();
      if (waiting === 'full') {
        throw new Failure({ type: 'connection_limit_reached', phase: 'admit', retryAfter: 1, detail: `cluster ${cluster.name} is at its limit of ${adm.limit} requests in flight and its queue is full` });
      }
      waiting.then(
        () => this.#onAdmitted(),
        () => this.#onQueueTimeout(),
      );
    } catch (err) {
      this.fail(err instanceof Failure ? err : classify(err, NO_PROGRESS));
    }
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
    respondToOptionsAsterisk(this.res, this.ctx, this.requestId);
  }

  #onAdmitted(): void {
    this.#admitted = true;
    this.#admittedAt = performance.now();
    if (this.res.destroyed) {
      this.#releaseAdmission(true);
      return;
    }
    this.#attemptNow();
  }

  #onQueueTimeout(): void {
    const adm = this.route!.cluster.admission!;
    this.fail(new Failure({ type: 'connection_limit_reached', phase: 'admit', retryAfter: 1, detail: `waited in the queue of cluster ${this.route!.cluster.name} longer than its queue timeout (limit ${adm.limit})` }));
  }

  /** Pick an endpoint and a connection, and send the request. */
  #attemptNow(): void {
    const route = this.route!;
    const cluster = route.cluster;
    const now = Date.now();
    let ep = cluster.pick(now, this.#tried, this.req, this.#socket.remoteAddress);
    if (ep === undefined && this.#tried !== undefined) ep = cluster.pick(now, undefined, this.req, this.#socket.remoteAddress);
    if (ep === undefined) {
      this.fail(
        new Failure({
          type: 'destination_unavailable',
          phase: 'pick',
          retryAfter: cluster.retryAfterSeconds(now),
          detail: `no endpoint of cluster ${cluster.name} is available (${cluster.describeAvailability(now)})`,
        }),
      );
      return;
    }
    this.endpoint = ep;
    if (route.host === 'endpoint') {
      const h = this.#headers;
      for (let i = 0; i < h.length; i += 2) {
        if (h[i] === 'host') {
          h[i + 1] = ep.hostHeader;
          break;
        }
      }
    }
    const client = ep.pool.acquire(now, this.#idempotent, this.#wantFresh);
    this.#client = client;
    this.#connected = false;
    this.#responseStarted = false;
    this.#discard = false;
    this.#abort = undefined;
    this.#attempt = {
      endpoint: ep.nextHop,
      phase: 'connect',
      connection: client.connected ? 'reused' : 'new',
      startMs: Math.round(performance.now() - this.t0),
    };
    this.attempts.push(this.#attempt);
    ep.inflight++;
    const prev = this.#relay;
    this.#relay = !this.#hasBody ? undefined : prev !== undefined ? prev.replay() : new BodyRelay(this.req, this.#idempotent && route.retry.tries > 1 ? REPLAY_LIMIT : 0);
    client.dispatch(
      {
        path: this.#upstreamPath,
        method: this.req.method as Dispatcher.HttpMethod,
        headers: this.#headers,
        body: this.#relay ?? null,
        // The exchange times the attempt itself (#arm): undici's own timers would swap a
        // FastTimer per phase per request, and those live until its next 1 s tick, reach the
        // old generation and made RSS climb ~25 MB between major GCs under load.
        headersTimeout: 0,
        bodyTimeout: 0,
      },
      this,
    );
  }

  // ---- undici dispatch handler -----------------------------------------------------------

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    this.#connected = true;
    const a = this.#attempt!;
    a.phase = 'send';
    const now = performance.now();
    a.connectedMs = Math.round(now - this.t0);
    if (a.connection === 'new' && this.#client) {
      const t = this.#client.timings;
      a.dnsMs = t.dnsMs;
      a.tcpMs = t.connectMs;
      a.tlsMs = t.tlsMs;
    }
    if (this.res.destroyed) {
      abort();
      return;
    }
    const relay = this.#relay;
    this.#timer.headers(this.route!.perTryTimeoutMs ?? this.route!.cluster.responseTimeoutMs, now);
    if (relay !== undefined && !relay.readableEnded) {
      // The response wait counts from when the whole request has been sent.
      relay.once('end', () => {
        if (this.#relay === relay && this.#timer.phase === 'headers') this.#timer.restart(performance.now());
      });
    }
  }

  onResponseStarted(): void {
    this.#responseStarted = true;
    const a = this.#attempt!;
    a.phase = 'headers';
    a.firstByteMs = Math.round(performance.now() - this.t0);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, _statusText: string): boolean {
    if (statusCode < 200) {
      if (statusCode === 103 && !this.#discard) this.#earlyHints(rawHeaders);
      this.#timer.restart(performance.now());
      return true;
    }
    const now = performance.now();
    this.#timer.body(this.route!.cluster.idleTimeoutMs, now);
    const a = this.#attempt!;
    a.phase = 'body';
    a.status = statusCode;
    this.#headersAt = now;
    a.headersMs = Math.round(now - this.t0);
    const ep = this.endpoint!;
    const cluster = this.route!.cluster;
    const wall = Date.now();
    cluster.observeLatency(ep, a.headersMs - a.startMs, wall);
    if (statusCode >= 500) {
      cluster.recordOutcome(ep, 'upstream-5xx', wall);
      if (this.#retryStatus(statusCode, rawHeaders)) {
        // Drain this answer (keeps the connection) and try again when it ends.
        this.#discard = true;
        return true;
      }
    } else {
      cluster.recordOutcome(ep, 'success', wall);
    }
    this.#resume = resume;
    const member = statusCode >= 500 ? receivedMember(statusCode, ep.nextHop, proxyStatusOptions(this.ctx, this.#socket.remoteAddress)) : undefined;
    const head = buildResponseHead(rawHeaders, this.#responseVia, this.ctx.requestIdHeader, this.requestId, member);
    if (this.ctx.draining) head.push('connection', 'close');
    try {
      this.res.writeHead(statusCode, head);
    } catch (err) {
      // Node refused a header (invalid name or value bytes): never forward it.
      this.#abort?.(new Failure({ type: 'http_protocol_error', phase: 'headers', nextHop: ep.nextHop, detail: 'the response has a header the gateway cannot forward', cause: err }));
      return false;
    }
    this.#headersSent = true;
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.#timer.progressAt = performance.now();
    if (this.#discard) return true;
    if (this.res.write(chunk)) return true;
    this.#timer.paused = true;
    this.res.once('drain', onResDrain);
    return false;
  }

  onComplete(rawTrailers: Array<Buffer | string> | null): void {
    this.#timer.stop();
    this.#settleAttempt(true);
    if (this.#discard) {
      this.#scheduleRetry(this.#retryDelayMs);
      return;
    }
    this.#complete = true;
    if (rawTrailers && rawTrailers.length > 0) this.res.addTrailers(trailersObject(rawTrailers));
    this.res.end();
  }

  onError(err: Error): void {
    this.#timer.stop();
    if (this.#refused) {
      this.#settleAttempt(false);
      return;
    }
    const wasConnected = this.#connected;
    const reused = this.#attempt?.connection === 'reused';
    this.#settleAttempt(false);
    if (this.res.destroyed && !this.#complete) return; // the client left; our abort came back here
    const failure = err instanceof Failure
      ? err
      : classify(err, {
          connected: wasConnected,
          responseStarted: this.#responseStarted,
          headersReceived: this.#headersSent,
          bodyChunked: this.#headersSent && !this.res.hasHeader('content-length'),
          nextHop: this.endpoint?.nextHop,
        });
    const a = this.#attempt;
    if (a) {
      a.phase = failure.phase;
      a.error = failure.type;
      a.detail = failure.detail;
    }
    if (failure.source === 'upstream' && this.endpoint) this.route!.cluster.recordOutcome(this.endpoint, 'gateway-failure', Date.now());
    if (!this.#headersSent && !this.#discard) {
      const kind = retryKindOf(failure, wasConnected);
      if (kind !== undefined && this.#mayRetry(kind)) {
        // A reused connection that died before any response byte: the keep-alive race. Retry fresh.
        this.#wantFresh = kind === 'reset' && reused;
        this.#scheduleRetry(backoffMs(this.route!.retry, this.attempts.length));
        return;
      }
    }
    this.fail(failure);
  }

  // ---- the attempt's timer (ResponseTimerOwner) ----------------------------------------

  uploading(): BodyRelay | undefined {
    const relay = this.#relay;
    return relay !== undefined && !relay.readableEnded ? relay : undefined;
  }

  uploadedBytes(): number {
    return this.#relay?.bytes ?? 0;
  }

  timedOut(err: Error): void {
    if (this.#abort === undefined || this.#attempt?.endMs !== undefined) return;
    this.#abort(err);
  }

  // ---- retries --------------------------------------------------------------------------

  /** Whether another attempt is allowed for a failure of this kind. */
  #mayRetry(kind: RetryKind): boolean {
    const route = this.route!;
    const policy = route.retry;
    if (this.attempts.length >= policy.tries || this.res.destroyed) return false;
    if (!route.retryOn.has(kind)) return false;
    // A body is streamed; one that was (partly) sent can be sent again only if it was small enough to keep.
    if (this.#relay !== undefined && !this.#relay.replayable) return false;
    // RFC 9110 §9.2.2: only failures that prove the request never left the gateway retry non-idempotent requests.
    if (kind !== 'connect-failure' && !this.#idempotent) return false;
    if (route.deadlineMs !== undefined && performance.now() - this.t0 >= route.deadlineMs) return false;
    const now = Date.now();
    if (!route.cluster.retryBudget.canRetry(now)) {
      this.#attempt!.detail = `${this.#attempt!.detail ?? ''} (retry budget exhausted)`.trim();
      return false;
    }
    route.cluster.retryBudget.onRetry(now);
    (this.#tried ??= new Set()).add(this.endpoint!);
    return true;
  }

  #retryStatus(status: number, raw: Buffer[]): boolean {
    if (status !== 502 && status !== 503 && status !== 504) return false;
    const route = this.route!;
    const wait = retryAfterMs(raw);
    if (wait !== undefined && wait > route.retryAfterMaxMs) return false;
    if (!this.#mayRetry(String(status) as RetryKind)) return false;
    this.#attempt!.error = undefined;
    this.#attempt!.detail = `upstream answered ${status}; retrying`;
    this.#retryDelayMs = Math.max(wait ?? 0, backoffMs(route.retry, this.attempts.length));
    return true;
  }

  #scheduleRetry(delayMs: number): void {
    if (delayMs <= 0) {
      this.#attemptNow();
      return;
    }
    setTimeout(retryLater, delayMs, this);
  }

  /** A scheduled retry is due. */
  retryNow(): void {
    if (this.res.destroyed) return;
    this.#attemptNow();
  }

  // ---- responses ------------------------------------------------------------------------

  /** The client's request turned out malformed while in flight (bad chunking): stop the upstream attempt and refuse. */
  refuse(f: Failure): void {
    this.#refused = true;
    this.#relay?.destroy();
    this.#abort?.(f);
    this.fail(f);
  }

  /** The final word on a failure: a gateway-made response, or an aborted client connection. */
  fail(f: Failure): void {
    this.#error = f;
    const res = this.res;
    if (this.#headersSent || res.headersSent) {
      // A truncated body must never look complete: cut the connection.
      this.#endedBy = 'upstream';
      res.destroy();
      return;
    }
    if (res.destroyed) return;
    this.#endedBy = f.source === 'client' ? 'client' : f.source === 'gateway' ? 'gateway' : 'upstream';
    this.#error = respondWithFailure(res, f, {
      ctx: this.ctx,
      requestId: this.requestId,
      accept: this.req.headers.accept,
      clientAddress: this.#socket.remoteAddress,
      attempts: this.attempts.length ? this.attempts.map(toSummary) : undefined,
      head: this.req.method === 'HEAD',
      // An unread request body would be parsed as the next request: close instead.
      close: f.source === 'client' || this.ctx.draining || (this.#hasBody && !this.req.complete),
    });
  }

  #earlyHints(raw: Buffer[]): void {
    const hints: Record<string, string | string[]> = {};
    for (let i = 0; i < raw.length; i += 2) {
      const k = raw[i]!.toString('latin1').toLowerCase();
      const v = raw[i + 1]!.toString('latin1');
      const prev = hints[k];
      hints[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    if (hints.link !== undefined) this.res.writeEarlyHints(hints as { link: string | string[] });
  }

  /** The client took the buffered body: let undici read from the upstream again. */
  resumeUpstream(): void {
    this.#timer.paused = false;
    this.#timer.progressAt = performance.now();
    this.#resume?.();
  }

  /** The current attempt is over: give back the connection and the endpoint slot. */
  #settleAttempt(ok: boolean): void {
    const a = this.#attempt;
    if (!a || a.endMs !== undefined) return;
    a.endMs = Math.round(performance.now() - this.t0);
    const now = Date.now();
    this.endpoint!.inflight--;
    if (this.#client) {
      this.endpoint!.pool.release(this.#client, now, ok);
      this.#client = undefined;
    }
  }

  #releaseAdmission(dropped: boolean): void {
    if (!this.#admitted) return;
    this.#admitted = false;
    // Latency for the adaptive limit: slot granted → response headers (not queue wait, not body streaming).
    const end = this.#headersAt > this.#admittedAt ? this.#headersAt : performance.now();
    this.route!.cluster.admission!.release(end - this.#admittedAt, dropped);
  }

  /** The client response closed: finished, or the client went away. */
  responseClosed(): void {
    this.ctx.inflight--;
    if (!this.#complete && !this.#error) {
      // The client left before the response was complete: stop the upstream work.
      this.#endedBy = 'client';
      const abort = this.#abort;
      this.#timer.stop();
      if (abort) abort();
      else this.#settleAttempt(false);
      this.#relay?.destroy();
    }
    this.#releaseAdmission(this.#error !== undefined && this.#error.source !== 'client');
    this.#publish();
  }

  #publish(): void {
    if (this.#published) return;
    this.#published = true;
    if (!requestEnd.hasSubscribers) return;
    const req = this.req;
    const f = this.#error;
    const record = requestRecord(this.requestId, this.listener, plainAddress(this.#socket.remoteAddress), req, {
      path: this.#path || (req.url ?? ''),
      route: this.route?.name,
      cluster: this.route?.cluster.name,
      status: this.res.statusCode,
      error: f?.type,
      phase: f?.phase ?? (this.#endedBy === 'client' ? (this.#attempt?.phase ?? 'accept') : undefined),
      endedBy: this.#endedBy,
      detail: f?.detail,
      attempts: this.attempts,
      bytesIn: this.#socket.bytesRead - this.#bytesIn0,
      bytesOut: this.#socket.bytesWritten - this.#bytesOut0,
      durationMs: Math.round((performance.now() - this.t0) * 1000) / 1000,
      upgrade: false,
    });
    requestEnd.publish(record);
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

function retryLater(ex: Exchange): void {
  ex.retryNow();
}

function toSummary(a: AttemptRecord): AttemptSummary {
  return { endpoint: a.endpoint, phase: a.phase, error: a.error, status: a.status, durationMs: (a.endMs ?? a.startMs) - a.startMs };
}

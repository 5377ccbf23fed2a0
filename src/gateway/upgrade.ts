import { destroyAfter } from '../timing/deadlines.js';
import { Tunnel } from '../tunnel/tunnel.js';
import { ResponseTimer, type ResponseTimerOwner } from '../timing/response-timer.js';
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { tlsInfoOf, type TlsInfo } from '../tls/index.js';
import type { Dispatcher } from 'undici';
import { CLIENT_CLOSED_STATUS, Failure, classify } from '../failure/index.js';
import { plainAddress } from '../http/trust.js';
import type { PoolConnection } from '../pool/index.js';
import type { Endpoint } from '../upstream/endpoint.js';
import type { GatewayContext } from './context.js';
import { requestEnd, requestRecord, type AttemptRecord, type EndedBy } from './events.js';
import { newRequestId } from './exchange.js';
import { connectionCut } from '../failure/index.js';
import { checkHeaderCount, checkRequestTarget } from './request-target.js';
import { admitPhase, type Admittable } from './admit.js';
import { runRequestPhase, type HookedRequest } from './hooks.js';
import { buildUpstreamHead } from './request-headers.js';
import { respondToOptions, respondWithFailure } from './responder.js';
import { finalResponseHead, switchResponseHead } from './response-headers.js';
import { hasHsts } from './front.js';
import { allowedUpgrade, noRouteFailure, rewritePath, type Route } from './router.js';
import { traceTry, type RequestTrace } from './tracing.js';
import { fieldText, type RawField } from '../http/headers.js';
import { nameIs } from '../http/token.js';

/** Bytes of an upgrade request's client read (and kept) while its answer is awaited. */
const EARLY_LIMIT = 64 * 1024;

/** How long an upgrade's client (or upstream) may take to read what is left once its answer, or the tunnel's other side, ended. */
const TUNNEL_LINGER_MS = 5000;

function headBytes(status: number, headers: readonly string[]): string {
  let s = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
  for (let i = 0; i < headers.length; i += 2) s += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return s + '\r\n';
}

/**
 * A WebSocket (or other `Upgrade`) request, going through the same phases as any request:
 * route → hooks → admission → pick → one try (no retries: an upgrade is not idempotent
 * once switched) with outlier records and the endpoint's in-flight count; on 101 the two
 * sockets are spliced; any other answer is passed back and the connection closed.
 * Failures before the switch are answered by the responder like any other request. The
 * upgrade counts in `ctx.inflight` (graceful drain) until the client socket closes.
 *
 * The admission slot is released at the upstream's final head (101 or another answer), not
 * held for the tunnel's life: the limit protects the upstream's request handling (and the
 * adaptive limit measures slot → head latency); a tunnel held for hours would otherwise
 * keep a slot from every plain request, so a few hundred open WebSockets would turn all
 * other traffic of the cluster into 503s. Open tunnels are bounded by `maxConnections`.
 *
 * Switched, it is the forward proxy's `Tunnel` (tunnel/tunnel.ts): each way half-closes on its
 * own (both sockets half-open: an upstream's FIN no longer ends what the client still sends),
 * the cluster's `timeouts.tunnelIdle` and the listener's `sendTimeout` (a client that leaves its
 * buffer full that long: both sides cut, recorded ended by the client). The record is
 * published once both sockets are closed, with every byte counted.
 */
export class UpgradeExchange extends Tunnel implements Dispatcher.DispatchHandler, HookedRequest, Admittable, ResponseTimerOwner {
  readonly #ctx: GatewayContext;
  readonly #req: IncomingMessage;
  readonly #socket: Duplex;
  readonly #head: Buffer;
  /**
   * What the client sent after its request while the answer is awaited. The socket is read
   * (not left paused, as Node hands it over) so that a client leaving before the answer is
   * seen and the upstream request aborted, as nginx does for any request; the bytes are put
   * back in front of the socket's buffer at a 101, behind `#head`. Bounded: past
   * EARLY_LIMIT the socket is paused again (a WebSocket client sends nothing before its 101).
   */
  #early: Buffer[] = [];
  #earlyBytes = 0;
  readonly #onEarlyData = (c: Buffer): void => {
    this.#early.push(c);
    this.#earlyBytes += c.length;
    if (this.#earlyBytes >= EARLY_LIMIT) this.#socket.pause();
  };
  /** The client ended before any answer: it left (nginx's "client prematurely closed connection"). */
  readonly #onEarlyEnd = (): void => {
    if (this.#status === 0 && !this.#headersSent) this.#socket.destroy();
  };
  readonly #via: string;
  readonly #listener: string;
  readonly requestId: string;
  readonly #t0 = performance.now();
  readonly #attempts: AttemptRecord[] = [];
  #route: Route | undefined;
  #path = '';
  /** #path without `;` parameters: what the route was matched on. */
  #routePath = '';
  #host = '';
  #headers: string[] = [];
  /** The protocol(s) asked of the upstream; undefined: none is allowed, a plain request. */
  #upgradeProtocol: string | undefined;
  #attempt: AttemptRecord | undefined;
  /** The upgrade's trace, begun at its try when tracing is on (ctx.tracing). */
  #trace: RequestTrace | undefined;
  #endpoint: Endpoint | undefined;
  #connected = false;
  #responseStarted = false;
  #headersSent = false;
  #status = 0;
  #error: Failure | undefined;
  #endedBy: EndedBy = 'complete';
  #upstream: Duplex | undefined;
  #published = false;
  #closed = false;
  #admitted = false;
  #admittedAt = 0;
  #bytesIn = 0;
  #bytesOut = 0;
  #release: (() => void) | undefined;
  /**
   * The wait for the upstream's head, then (an answer that does not switch) between its body
   * bytes, with the client's send timeout while it does not read; on both clients (undici's
   * own timers are off for the dispatch).
   */
  #timer: ResponseTimer | undefined;
  #abortUp: ((err?: Error) => void) | undefined;
  /**
   * Dispatched behind another request on a busy connection (the endpoint at maxConnections):
   * when (performance.now()). Nothing times it from onConnect, which comes only when the
   * request ahead ends, so the timer runs from the dispatch with either client
   * (ConnectionPool.queuedOn; 0: sent at once).
   */
  #queuedAt = 0;
  /** Given up while queued: answered; what the client reports later only settles it. */
  #gaveUp = false;
  #client: PoolConnection | undefined;
  /** Reads the upstream again after the client's buffer drained (an answer that does not switch). */
  #resumeUp: (() => void) | undefined;
  /** The listener's sendTimeout: the non-switching answer's ResponseTimer, then the tunnel's. */
  readonly sendMs: number;

  /** Strict-Transport-Security of a TLS listener with hsts: on every answer, this one's too. */
  readonly #hsts: string | undefined;

  constructor(ctx: GatewayContext, req: IncomingMessage, socket: Duplex, head: Buffer, listener: string, via: string, sendMs = 0, hsts?: string) {
    super(socket as Socket);
    this.#ctx = ctx;
    this.#hsts = hsts;
    this.sendMs = sendMs;
    this.#req = req;
    this.#socket = socket;
    this.#head = head;
    this.#via = via;
    this.#listener = listener;
    const incoming = ctx.trustIncomingRequestId ? req.headers[ctx.requestIdHeader] : undefined;
    this.requestId = typeof incoming === 'string' && incoming.length > 0 && incoming.length <= 200 ? incoming : newRequestId(ctx);
    ctx.inflight++;
    socket.on('error', () => socket.destroy());
    socket.once('close', () => {
      this.#closed = true;
      ctx.inflight--;
      if (this.#error === undefined && this.#endedBy === 'complete') {
        // Cut by the gateway itself (the drain timeout), waiting for the answer, in it or
        // switched, unless the client had left first (failure/connections-cut.ts) or the gateway had
        // ended its side already (the answer written, or the tunnel ended by the upstream).
        const cut = socket.writableEnded ? undefined : connectionCut(ctx.cut, socket, this.#attempt?.phase ?? 'accept');
        if (cut !== undefined) {
          this.#error = cut;
          this.#endedBy = 'gateway';
          // Cut: the tunnel's upstream goes with it (a clean close lets it flush, Tunnel's linger).
          this.#upstream?.destroy();
        } else if (!this.#upstream && this.#status === 0) this.#endedBy = 'client';
      }
      // No switch (yet): the upstream request is still under way; the client that asked is gone.
      if (this.#upstream === undefined && this.#release !== undefined) this.#abortUp?.();
      this.#releaseAdmission(true);
      // Switched: recorded once both sides closed (tunnelEnded).
      if (this.#upstream === undefined) this.#publish();
    });
    socket.on('data', this.#onEarlyData);
    socket.once('end', this.#onEarlyEnd);
    // node:http hands the socket over neither flowing nor paused (a 'data' listener starts it);
    // the net front hands it over paused.
    socket.resume();
  }

  // ---- HookRequest -----------------------------------------------------------------------

  get method(): string {
    return this.#req.method!;
  }

  get path(): string {
    return this.#path || (this.#req.url ?? '');
  }

  get host(): string {
    return this.#host;
  }

  get routeName(): string | undefined {
    return this.#route?.name;
  }

  get clusterName(): string | undefined {
    return this.#route?.cluster.name;
  }

  get clientAddress(): string | undefined {
    return this.#req.socket.remoteAddress;
  }

  get upgrade(): boolean {
    return true;
  }

  get tls(): TlsInfo | undefined {
    return tlsInfoOf(this.#req.socket);
  }

  header(name: string): string | string[] | undefined {
    return this.#req.headers[name];
  }

  // ---- phases ----------------------------------------------------------------------------

  start(maxHeaderCount = Infinity): void {
    const req = this.#req;
    try {
      checkHeaderCount(req, maxHeaderCount);
      if (req.url === '*') throw new Failure({ type: 'http_request_error', phase: 'accept', reason: 'bad_request', detail: 'invalid request-target' });
      const target = checkRequestTarget(req, this.#ctx.escapedSlashes);
      const path = target.path;
      // A body on an upgrade request would turn into tunnel data after a 101: refuse it.
      const cl = req.headers['content-length'];
      if ((cl !== undefined && cl !== '0') || req.headers['transfer-encoding'] !== undefined) {
        throw new Failure({ type: 'http_request_error', phase: 'accept', reason: 'bad_request', detail: 'an upgrade request must not carry a body' });
      }
      this.#path = path;
      this.#routePath = target.routePath;
      const route = this.#ctx.router.match((this.#host = target.routeHost), req.method!, target.routePath, req);
      if (!route) {
        // As a plain request's (exchange.ts #noRoute): 404, the 405 of the path's routes, or OPTIONS answered with their Allow.
        const allow = this.#ctx.router.allowed(target.routeHost, target.routePath, req);
        if (allow !== undefined && req.method === 'OPTIONS') {
          this.#status = respondToOptions(this.#socket, this.#ctx, this.requestId, allow, this.#hsts);
          this.#endClient();
          return;
        }
        throw noRouteFailure(req.method!, `${target.routeHost}${path}`, allow);
      }
      this.#route = route;
      const hostValue = route.host === 'preserve' ? undefined : route.host === 'endpoint' ? undefined : route.host;
      const head = buildUpstreamHead(this.#ctx, req, req.socket.remoteAddress, this.requestId, hostValue, this.#via, (req.socket as TLSSocket).encrypted === true ? 'https' : 'http', target.hostValue);
      this.#headers = head.headers;
      // Only the route's protocols are tunnelled; for any other the request goes upstream as
      // plain HTTP without Upgrade, and what the client sent after its head is dropped.
      // An HTTP/1.0 request's Upgrade is ignored (RFC 9110 §7.8 MUST): its Connection may not be understood.
      this.#upgradeProtocol = req.httpVersionMinor === 0 ? undefined : allowedUpgrade(route, head.upgrade);
      if (!runRequestPhase(this.#ctx.hooks, this)) return;
      this.#admit();
    } catch (err) {
      this.#fail(err instanceof Failure ? err : classify(err, NO_PROGRESS));
    }
  }

  /** The asynchronous `onRequest` hooks settled (runRequestPhase): refuse, or go on. */
  afterRequestHooks(f: Failure | undefined): void {
    if (this.#closed) return;
    try {
      if (f !== undefined) throw f;
      this.#admit();
    } catch (err) {
      this.#fail(err instanceof Failure ? err : classify(err, NO_PROGRESS));
    }
  }

  /** The cluster's concurrency limit, as for any request (released at the final head; see the class). */
  #admit(): void {
    const cluster = this.#route!.cluster;
    if (!admitPhase(cluster, this)) return;
    this.#admitted = cluster.admission !== undefined;
    this.#admittedAt = performance.now();
    this.#dispatch();
  }

  /** Queued too long (admitPhase). */
  queueRefused(f: Failure): void {
    this.#fail(f);
  }

  /** Queued, then given a slot (admitPhase). */
  admitted(): void {
    this.#admitted = true;
    this.#admittedAt = performance.now();
    if (this.#closed || this.#socket.destroyed) {
      this.#releaseAdmission(true);
      return;
    }
    try {
      this.#dispatch();
    } catch (err) {
      this.#fail(err instanceof Failure ? err : classify(err, NO_PROGRESS));
    }
  }

  #dispatch(): void {
    const route = this.#route!;
    const req = this.#req;
    const now = Date.now();
    const ep = route.cluster.pick(now, undefined, req, req.socket.remoteAddress);
    if (ep === undefined) {
      throw new Failure({ type: 'destination_unavailable', phase: 'pick', retryAfter: route.cluster.retryAfterSeconds(now), detail: `no endpoint of cluster ${route.cluster.name} is available (${route.cluster.describeAvailability(now)})` });
    }
    if (route.host === 'endpoint') {
      const i = this.#headers.indexOf('host');
      this.#headers[i + 1] = ep.hostHeader;
    }
    this.#endpoint = ep;
    this.#attempt = { endpoint: ep.nextHop, phase: 'connect', startMs: Math.round(performance.now() - this.#t0) };
    this.#attempts.push(this.#attempt);
    // The socket leaves the pool once upgraded: always a connection of its own.
    const client = ep.pool.acquire(now, false, true);
    ep.inflight++;
    this.#release = () => {
      ep.inflight--;
      ep.pool.release(client, Date.now(), false);
    };
    // Timed by its own ResponseTimer on either client (undici's timers are off below): undici
    // restarts its headersTimeout at every 1xx, so an upstream sending 103s for ever held the
    // upgrade for ever (test/gateway/stall-interim-forever.test.ts).
    const t = performance.now();
    this.#client = client;
    if (ep.pool.queuedOn(client)) this.#queuedAt = t;
    this.#timer = new ResponseTimer(this, this.sendMs);
    this.#timer.headers(route.cluster.responseTimeoutMs, t);
    const tracing = this.#ctx.tracing;
    let headers = this.#headers;
    if (tracing !== undefined) {
      const t = traceTry(tracing, this.#trace, req, performance.timeOrigin + this.#t0, this.#attempt!, headers);
      this.#trace = t.trace;
      headers = t.headers;
    }
    client.dispatch(
      {
        path: rewritePath(route, this.#path, this.#routePath),
        method: req.method as Dispatcher.HttpMethod,
        headers,
        upgrade: this.#upgradeProtocol,
        body: null,
        headersTimeout: 0,
        bodyTimeout: 0,
      },
      this,
    );
  }

  // ---- undici dispatch handler -----------------------------------------------------------

  onConnect(abort: (err?: Error) => void): void {
    if (this.#gaveUp) {
      // undici's Client kept the request queued after the wait was given up (it cannot drop one): not sent.
      abort();
      return;
    }
    this.#queuedAt = 0;
    this.#abortUp = abort;
    this.#connected = true;
    this.#attempt!.phase = 'send';
    if (this.#socket.destroyed) abort();
  }

  onResponseStarted(): void {
    this.#responseStarted = true;
    this.#attempt!.phase = 'headers';
  }

  onUpgrade(statusCode: number, rawHeaders: RawField[] | null, upstream: Duplex): void {
    this.#settle();
    const refused = unofferedSwitch(rawHeaders ?? [], this.#upgradeProtocol ?? '');
    if (refused !== undefined) {
      // Spliced, the client's next bytes would reach the upstream unrouted (WebSocket smuggling).
      upstream.destroy();
      this.onError(new Failure({ type: 'http_upgrade_failed', phase: 'headers', nextHop: this.#attempt?.endpoint, detail: refused }));
      return;
    }
    this.#finalHead(statusCode);
    const head = this.#responseHead(statusCode, switchResponseHead(rawHeaders ?? [], this.#via, this.#ctx.requestIdHeader, this.requestId));
    const client = this.#socket;
    if (client.destroyed) {
      upstream.destroy();
      return;
    }
    // What the client sent behind its request goes up first, in order (the tunnel reads it).
    client.removeListener('data', this.#onEarlyData);
    client.removeListener('end', this.#onEarlyEnd);
    client.pause();
    const early = this.#head.length > 0 ? [this.#head, ...this.#early] : this.#early;
    this.#early = [];
    if (early.length > 0) client.unshift(early.length === 1 ? early[0]! : Buffer.concat(early));
    client.write(headBytes(statusCode, head));
    this.#headersSent = true;
    this.#upstream = upstream;
    upstream.on('error', () => {
      if (this.#error === undefined) this.#endedBy = 'upstream';
    });
    // Each way ends on its own: the upstream's socket is made not half-open (pool/plain-connector.ts,
    // undici's connector), so its FIN ended the gateway's side towards it and the client's later
    // bytes were lost (test/gateway/upgrade-upstream-half-close.test.ts); the net front's client
    // socket is made half-open at the handover (net-front.ts), node:http's are.
    (upstream as Socket).allowHalfOpen = true;
    (client as Socket).allowHalfOpen = true;
    this.watchClient();
    this.splice(upstream as Socket);
  }

  // ---- the tunnel (Tunnel) ------------------------------------------------------------------

  /** The cluster's timeouts.tunnelIdle (read at the splice and at the deadline). */
  get idleMs(): number {
    return this.#route!.cluster.tunnelIdleMs;
  }

  /**
   * Once the upstream or the client closed, how long the other may take to flush: an upstream
   * that sends its last bytes and closes, to a client reading slower than loopback, lost its
   * tail when the client was destroyed at once (test/gateway/stall-upgrade-tail.test.ts).
   */
  override get lingerMs(): number {
    return TUNNEL_LINGER_MS;
  }

  onUp(bytes: number): void {
    this.#bytesIn += bytes;
  }

  onDown(bytes: number): void {
    this.#bytesOut += bytes;
  }

  /** The client left its buffer full for the sendTimeout: the tunnel is being cut. */
  onNotReading(detail: string): void {
    if (this.#error !== undefined) return;
    this.#error = new Failure({ type: 'http_request_error', phase: 'body', detail });
    this.#endedBy = 'client';
  }

  /** No byte either way for the cluster's tunnelIdle: recorded `endedBy: idle`. */
  override idleCut(): void {
    if (this.#error === undefined && this.#endedBy === 'complete') this.#endedBy = 'idle';
  }

  /** Both sockets closed: the record. */
  tunnelEnded(): void {
    this.#publish();
  }

  /** Never: the client is watched by the tunnel only from the splice (its own 'close' listener before). */
  clientLeftEarly(): void {}

  onHeaders(statusCode: number, rawHeaders: RawField[], resume: () => void): boolean {
    // 1xx: not the answer the response timeout waits for; restarting the wait at each let an
    // upstream sending 103s for ever hold the upgrade (test/gateway/stall-interim-forever.test.ts).
    if (statusCode < 200) {
      // A 101 undici did not take as a switch (no Upgrade field): RFC 9110 §7.8 has the server name the protocol.
      if (statusCode !== 101) return true;
      this.#abortUp?.(new Failure({ type: 'http_upgrade_failed', phase: 'headers', nextHop: this.#attempt?.endpoint, detail: NO_UPGRADE_FIELD }));
      return false;
    }
    const built = finalResponseHead(rawHeaders, this.#via, this.#ctx.requestIdHeader, this.requestId, undefined, this.#attempt?.endpoint);
    if (built instanceof Failure) {
      this.#abortUp?.(built);
      return false;
    }
    // No switch: pass the answer back, then close (the client expected a new protocol).
    this.#finalHead(statusCode);
    this.#timer?.body(this.#route!.cluster.idleTimeoutMs, performance.now());
    this.#resumeUp = resume;
    const head = this.#responseHead(statusCode, built);
    head.push('connection', 'close');
    this.#socket.write(headBytes(statusCode, head));
    this.#headersSent = true;
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.#bytesOut += chunk.length;
    const timer = this.#timer;
    if (timer !== undefined) timer.progressAt = performance.now();
    if (this.#socket.write(chunk)) return true;
    // The client's buffer is full: the upstream waits until it drains (returning false pauses
    // the client below; without the resume the answer stalled for good past the buffers).
    timer?.pause(performance.now());
    this.#socket.once('drain', this.#onDrain);
    return false;
  }

  readonly #onDrain = (): void => {
    this.#timer?.resume(performance.now());
    this.#resumeUp?.();
  };

  // ---- the response timer (ResponseTimerOwner, client native) ------------------------------

  timedOut(err: Error): void {
    const timer = this.#timer!;
    if (this.#abortUp === undefined && this.#queuedAt > 0) {
      // Still behind the request ahead on its connection: given up unsent.
      this.#gaveUp = true;
      const ep = this.#endpoint!;
      this.onError(ep.pool.giveUpQueued(this.#client!, this, ep.nextHop, this.#queuedAt, performance.now()));
      return;
    }
    if (timer.phase === 'headers') {
      const ms = this.#route!.cluster.responseTimeoutMs;
      this.#abortUp?.(new Failure({ type: 'http_response_timeout', phase: 'headers', nextHop: this.#attempt?.endpoint, detail: `no upgrade answer within ${ms} ms` }));
    } else this.#abortUp?.(err);
  }

  notReading(detail: string): void {
    this.#abortUp?.(new Failure({ type: 'http_request_error', phase: 'body', detail }));
  }

  onComplete(): void {
    this.#settle();
    this.#endClient();
  }

  onError(err: Error): void {
    this.#settle();
    if (this.#socket.destroyed || (this.#gaveUp && this.#error !== undefined)) return;
    const f = err instanceof Failure ? err : classify(err, { connected: this.#connected, responseStarted: this.#responseStarted, headersReceived: this.#headersSent, nextHop: this.#attempt?.endpoint });
    if (this.#attempt) {
      this.#attempt.error = f.type;
      this.#attempt.phase = f.phase;
    }
    // An upstream that refuses or garbles upgrades counts against it, as for any request.
    if (f.source === 'upstream' && this.#endpoint !== undefined) this.#route!.cluster.recordOutcome(this.#endpoint, 'gateway-failure', Date.now());
    this.#fail(f);
  }

  // ---- steps -----------------------------------------------------------------------------

  /** The upstream's final head (101 or another answer): record it, passive health, give back the admission slot. */
  #finalHead(statusCode: number): void {
    this.#timer?.stop();
    this.#status = statusCode;
    const a = this.#attempt!;
    a.status = statusCode;
    a.phase = 'body';
    a.headersMs = Math.round(performance.now() - this.#t0);
    const cluster = this.#route!.cluster;
    const ep = this.#endpoint!;
    const wall = Date.now();
    cluster.observeLatency(ep, a.headersMs - a.startMs, wall);
    cluster.recordOutcome(ep, statusCode >= 500 ? 'upstream-5xx' : 'success', wall);
    this.#releaseAdmission(false);
  }

  /** The response head through the onResponse hooks, if any. */
  #responseHead(statusCode: number, head: string[]): string[] {
    if (this.#hsts !== undefined && !hasHsts(head)) head.push('strict-transport-security', this.#hsts);
    const hooks = this.#ctx.hooks;
    if (hooks === undefined || hooks.response === undefined) return head;
    try {
      return hooks.runResponse(this, statusCode, head);
    } catch {
      return head; // the switch is under way: a failing hook cannot refuse it any more
    }
  }

  /**
   * End the client connection after a non-switching answer. Bytes the client sent after
   * its head are read and dropped, or the paused socket would never finish closing.
   */
  #endClient(): void {
    const s = this.#socket;
    if (!s.writableEnded) s.end();
    s.resume();
    destroyAfter(s, TUNNEL_LINGER_MS);
  }

  #settle(): void {
    this.#timer?.stop();
    const r = this.#release;
    this.#release = undefined;
    r?.();
  }

  #releaseAdmission(dropped: boolean): void {
    if (!this.#admitted) return;
    this.#admitted = false;
    this.#route!.cluster.admission!.release(performance.now() - this.#admittedAt, dropped);
  }

  #fail(f: Failure): void {
    this.#error = f;
    this.#endedBy = f.source;
    this.#releaseAdmission(f.source !== 'client');
    if (this.#headersSent) {
      this.#socket.destroy();
      return;
    }
    if (this.#socket.destroyed) return;
    this.#error = respondWithFailure(this.#socket, f, {
      ctx: this.#ctx,
      requestId: this.requestId,
      accept: this.#req.headers.accept,
      clientAddress: this.#req.socket.remoteAddress,
      clientSocket: this.#req.socket,
      attempts: this.#attempts,
      head: this.#req.method === 'HEAD',
      close: true,
      rawForm: 'upgrade',
      hookRequest: this,
      hsts: this.#hsts,
    });
    this.#status = this.#error.status;
    this.#endClient();
  }

  #publish(): void {
    if (this.#published) return;
    this.#published = true;
    const hooks = this.#ctx.hooks;
    const finish = hooks !== undefined && hooks.finish !== undefined;
    const tracing = this.#ctx.tracing;
    if (!requestEnd.hasSubscribers && !finish && tracing === undefined) return;
    const req = this.#req;
    const record = requestRecord(this.requestId, this.#listener, plainAddress(req.socket.remoteAddress), req, {
      route: this.#route?.name,
      cluster: this.#route?.cluster.name,
      // Left before any answer: 499, as a plain request records it (docs/access-log.md), not 0.
      // Cut by the gateway before any answer: no status was sent.
      status: this.#status !== 0 ? this.#status : this.#endedBy === 'client' ? CLIENT_CLOSED_STATUS : this.#endedBy === 'gateway' ? undefined : 0,
      error: this.#error?.type,
      reason: this.#error?.reason,
      phase: this.#error?.phase,
      endedBy: this.#endedBy,
      detail: this.#error?.detail,
      attempts: this.#attempts,
      bytesUp: this.#bytesIn,
      bytesDown: this.#bytesOut,
      durationMs: Math.round((performance.now() - this.#t0) * 1000) / 1000,
      upgrade: true,
    });
    if (requestEnd.hasSubscribers) requestEnd.publish(record);
    if (finish) hooks.runFinish(record);
    if (tracing !== undefined) tracing.finish(this.#trace, req, record, performance.timeOrigin + this.#t0);
  }
}

const NO_UPGRADE_FIELD = 'the upstream answered 101 without an Upgrade field';

/**
 * Why a 101 is no switch to what was offered, or undefined when it is: RFC 9110 §7.8 has the
 * server name the new protocol(s) in Upgrade, each one the client offered (names compared
 * without case or version, as the route's `upgrades`).
 */
export function unofferedSwitch(raw: readonly RawField[], offered: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (nameIs(fieldText(raw[i]!), 'upgrade')) value = value === undefined ? fieldText(raw[i + 1]!) : `${value}, ${fieldText(raw[i + 1]!)}`;
  }
  if (value === undefined) return NO_UPGRADE_FIELD;
  const names = new Set(offered.split(',').map(protocolName));
  let any = false;
  for (const part of value.split(',')) {
    const name = protocolName(part);
    if (name === '') continue;
    if (!names.has(name)) return `the upstream switched to ${JSON.stringify(part.trim())}, which was not offered (${JSON.stringify(offered)})`;
    any = true;
  }
  return any ? undefined : NO_UPGRADE_FIELD;
}

function protocolName(token: string): string {
  const p = token.trim();
  const slash = p.indexOf('/');
  return (slash < 0 ? p : p.slice(0, slash)).toLowerCase();
}

const NO_PROGRESS = { connected: false, responseStarted: false, headersReceived: false } as const;

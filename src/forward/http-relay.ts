import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { CLIENT_CLOSED_STATUS, Failure, connectionCut } from '../failure/index.js';
import { closeAfter } from '../http/connection-order.js';
import { requestCodingRefusal } from '../http/framing.js';
import { unbracket, type EgressDial, type ExitChoice } from '../egress/index.js';
import { withScope } from '../egress/exit-failure.js';
import { ExpectClient } from '../http/expect-client.js';
import { undici } from '../http/undici.js';
import { IDEMPOTENT_METHODS } from '../http/methods.js';
import { lostKeepAliveRace, type PooledClient } from '../pool/index.js';
import type { CancelSignal } from '../timing/cancel.js';
import type { FinishFields, MeterSession } from '../tenants/index.js';
import type { ForwardContext } from './context.js';
import { ClientBody } from './client-body.js';
import { clientLeft } from './client-fin.js';
import { dialOptions, exitHeaders, noteExit, noteFailedExit } from './egress-admission.js';
import { debugValue, wantsDebug } from './debug-header.js';
import { forwardRequestHeaders, headerBytes } from './forward-headers.js';
import { ForwardRelay, type RelayOutcome, type RelayThrough } from './forward-relay.js';
import { sendFailure } from './http-failure.js';
import { OrderedRequest } from './ordered-request.js';
import { cutFields } from './record-fields.js';
import type { HttpTarget } from './http-target.js';
import type { ForwardPipeline, ForwardRequest, ForwardResponder, Relay } from './pipeline.js';
import type { UpstreamTls } from './upstream-tls.js';

/** The client waits for a 100 before it sends its body (RFC 9110 §10.1.1). */
export function expectsContinue(req: IncomingMessage): boolean {
  const e = req.headers.expect;
  return e !== undefined && e.toLowerCase() === '100-continue';
}

/** `#relay`'s answer when the request is to be sent again: a hop refused it and it goes through another exit, or it lost the keep-alive race. */
const AGAIN = Symbol('again');

function hasBody(req: IncomingMessage): boolean {
  const cl = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0');
}

/**
 * One absolute-form HTTP request: its responder (a refusal is a full response with
 * Proxy-Status) and its relay, which forwards it and streams the response back by one
 * dispatch handler (`ForwardRelay`, timed by the ResponseTimer), whatever the way out:
 * - direct: the connection pool of the user's rules scope and the origin (`DirectPools`,
 *   the reverse gateway's `ConnectionPool` with its keep-alive race defence; connections
 *   opened by the dialer under the user's rules);
 * - through an egress pool: a fresh connection through the chosen exit per request
 *   (rotation and sessions decide per request, so pooled connections would defeat them),
 *   handed to a one-request undici Client; through an HTTP upstream proxy, plain HTTP
 *   goes in absolute-form with the exit's credentials.
 * TLS to the destination is `UpstreamTls` in both cases.
 *
 * The exchange is also the cancel signal of the connection it opens (the pool's `opener`,
 * `DirectPools.connectOnce`, an egress pool's exit through `openExit`): `aborted` once its client has left, read from the sockets'
 * state, so a request whose client left while the destination's name resolved gets no
 * connection (client-fin.ts: the same reading as a tunnel's at its dial). It costs nothing per
 * request: no object, no listener on a socket; the dialer reads it before it resolves and
 * before each connect, and the listeners a dial adds are told when the relay hears the
 * client's close (the relay's own 'close' listener), which stops a resolution or a connect in
 * flight. An exit's connection is made before any relay exists: there the response's order
 * listener (OrderedRequest.watch, one per request already) tells the exchange, so a client
 * that leaves during the exit's handshake stops it at once too (before, a `Cancel` and a
 * 'close' listener of its own per request did).
 */
export class HttpExchange implements ForwardResponder, Relay, CancelSignal {
  readonly okFields: FinishFields;
  readonly #ctx: ForwardContext;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #requestId: string;
  /** Set by the front once the target parsed. */
  target: HttpTarget | undefined;
  /** The request's user, whose byte quotas the relay checks per chunk (set by `run`). */
  #user: string | null = null;
  /** The abort listeners of a dial in flight for this request (a resolution, a connect); none mostly. */
  #onAbort: (() => void)[] | undefined = undefined;

  constructor(ctx: ForwardContext, req: IncomingMessage, res: ServerResponse, requestId: string) {
    this.#ctx = ctx;
    this.#req = req;
    this.#res = res;
    this.#requestId = requestId;
    this.okFields = { method: req.method };
  }

  refuse(f: Failure, debug?: string): FinishFields {
    this.#req.resume();
    // A client still holding the body it was not asked for (Expect): this answer ends the connection.
    sendFailure(this.#ctx, this.#req, this.#res, f, this.#requestId, expectsContinue(this.#req) && !this.#req.complete, debug);
    return { status: f.status, method: this.#req.method };
  }

  gone(): FinishFields {
    return { method: this.#req.method };
  }

  // ---- the cancel signal of this request's dial (CancelSignal) -----------------------------

  /**
   * The client has left: its response or socket is destroyed (a reset, a close), or it sent
   * its FIN before any answer (read from the socket's state, client-fin.ts; node:http, which
   * does not keep a half-open client connection, then ends it too).
   */
  get aborted(): boolean {
    return this.#res.destroyed || clientLeft(this.#req.socket);
  }

  addEventListener(_type: 'abort', listener: () => void): void {
    (this.#onAbort ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const l = this.#onAbort;
    const i = l === undefined ? -1 : l.indexOf(listener);
    if (i >= 0) l!.splice(i, 1);
  }

  /** The response closed while a dial was made with no relay listening (OrderedRequest.watch). */
  responseClosed(): void {
    this.#abortDial();
  }

  /** The client left (the relay heard it): stop a dial still in flight for it. */
  #abortDial(): void {
    const l = this.#onAbort;
    if (l === undefined || l.length === 0) return;
    this.#onAbort = undefined;
    for (const f of l) f();
  }

  /**
   * A request whose client left before its answer: no answer is written, the connection is
   * closed (a half-closed client's too, as Squid's `half_closed_clients off` and node:http
   * close it), and the record says the client ended it (499).
   */
  #left(): FinishFields {
    this.#res.destroy();
    return this.#drainCut('connect') ?? { ...this.gone(), status: CLIENT_CLOSED_STATUS, error: null, endedBy: 'client' };
  }

  /**
   * close() cut this request's client connection at the drain timeout (`ctx.cut`), and its
   * client had not left first: the record says the proxy ended it, with the drain's failure
   * (500 proxy_internal_error unless the answer's head had gone out), not a client that left.
   */
  #drainCut(phase: 'connect' | 'headers' | 'body', unanswered = false, unsent?: number): FinishFields | undefined {
    const cut = this.#ctx.cut;
    if (cut === undefined) return undefined;
    // Its head written (to the socket): the answer's status went out, cut in its body. A head
    // queued behind an earlier answer and never written (`unanswered`) did not go out.
    const sent = !unanswered && this.#res.headersSent;
    const f = connectionCut(cut, this.#req.socket, sent ? 'body' : phase);
    if (f === undefined) return undefined;
    const detail = unanswered
      ? 'its answer had come, queued behind an earlier answer of the connection, and was never written to the client'
      : unsent !== undefined
        ? `its whole answer had come; ${unsent} bytes of it were still unsent, in its socket's buffer`
        : undefined;
    return cutFields(f, { method: this.#req.method, status: sent ? this.#res.statusCode : f.status }, detail);
  }

  /**
   * A dial made while no relay listens to the client: its close reaches the dial (this exchange
   * is the dial's cancel signal) through the response's order listener, so a name resolution or
   * a connect in flight stops when the client leaves.
   */
  async #watched<T>(dial: () => Promise<T>): Promise<T> {
    OrderedRequest.watch(this.#res, this);
    try {
      return await dial();
    } finally {
      OrderedRequest.watch(this.#res, undefined);
    }
  }

  async run(freq: ForwardRequest, pipeline: ForwardPipeline): Promise<FinishFields> {
    const ctx = pipeline.ctx;
    const req = this.#req;
    // A client that left before this point (a reset during its password check, a hook, a
    // shared-state admission): no dial for no one. Before (session 31) the origin was dialled
    // and the request recorded as a gateway fault (500 proxy_internal_error), as tunnels were
    // before TunnelRun.start checked the same.
    if (this.aborted) return this.#left();
    const target = this.target!;
    const session = freq.session;
    const route = freq.route;
    this.#user = route.user;
    // Codings other than chunked alone are refused, as the reverse gateway refuses them
    // (http/framing.ts): the relay takes the chunked framing off and would pass the coded bytes on under no Transfer-Encoding.
    const codings = req.headers['transfer-encoding'];
    if (codings !== undefined) {
      const refusal = requestCodingRefusal(codings);
      if (refusal !== undefined) {
        // Its framing is not one the relay passes on: its body is not read, nothing behind it
        // is parsed, and the connection closes after the answer (as http-front.ts refuses an
        // HTTP/1.0 request's Transfer-Encoding).
        req.socket.pause();
        closeAfter(req.socket);
        this.#res.shouldKeepAlive = false;
        sendFailure(this.#ctx, req, this.#res, refusal, this.#requestId, true);
        return { status: refusal.status, method: req.method };
      }
    }
    const headers = forwardRequestHeaders(req.rawHeaders, target.authority, req.httpVersion, ctx.settings.name);
    const headUp = headerBytes(headers) + (req.method?.length ?? 0) + target.path.length + 12;
    let body: Readable | null = null;
    if (hasBody(req)) {
      const s = ctx.settings;
      body = new ClientBody(req, session, { gapMs: s.clientBodyMs, minRate: s.clientBodyMinRate }, expectsContinue(req), ctx.plans, route.user);
    } else {
      req.resume();
    }

    const pool = ctx.egress.poolName(route, target.host);
    const expect = body !== null && expectsContinue(req);
    // Gatewise-Debug for a user who asked (debug-header.ts); undefined otherwise: nothing is built.
    const debugOn = wantsDebug(ctx, freq);
    const debug = (choice: ExitChoice | undefined): ((bytesUp: number) => string) | undefined =>
      debugOn ? (bytesUp) => debugValue(ctx, freq, choice, headUp + bytesUp) : undefined;
    if (expect && typeof pool !== 'string') {
      // Our own connection: undici cannot carry the expectation (http/expect-client.ts).
      let socket: Socket;
      try {
        socket = await this.#watched(() => ctx.direct.connectOnce(route.user, target.scheme === 'https' ? 'https:' : 'http:', target.host, target.port, this));
      } catch (err) {
        // A client that left while the name resolved or the connection was made: its dial was stopped.
        if (this.aborted) return this.#left();
        throw err;
      }
      return this.#expect(ctx, session, socket, target.path, headers, body, headUp, undefined, debug(undefined));
    }
    if (typeof pool !== 'string') return this.#direct(ctx, session, route.user, target.path, headers, body, headUp, debugOn ? { debug: debug(undefined) } : undefined);
    // Through a pool: the exit is chosen and dialled first (a client that leaves meanwhile cancels it).
    // A hop that refuses the request (407, or its own 403/502/504) is that exit's failure: the
    // request goes through another exit when that is safe — no body (nothing of it was sent) and
    // an idempotent method, or a 407 (the hop refused before forwarding anything).
    const tried = new Set<string>();
    const maxExits = ctx.egress.pools.get(pool)!.exits.length;
    const maxTries = Math.min(maxExits, Math.max(1, ctx.egress.pools.get(pool)!.maxAttempts));
    for (;;) {
      // The exchange is the dial's signal, as on the direct path.
      let exit: ExitConnection;
      try {
        exit = await this.#watched(() => openExit(ctx, ctx.tls.pooled, route, target, this, session, tried));
      } catch (err) {
        if (this.aborted) return this.#left();
        // The record names the pool, the exit that failed last and the exits tried.
        if (err instanceof Failure) noteFailedExit(session, err, route.session);
        throw err;
      }
      const h = exit.proxyAuthorization !== undefined ? [...headers, 'proxy-authorization', exit.proxyAuthorization] : headers;
      const path = exit.absoluteForm ? `${target.origin}${target.path}` : target.path;
      if (expect) {
        try {
          return await this.#expect(ctx, session, exit.socket, path, h, body, headUp, exitHeaderList(exit.choice), debug(exit.choice));
        } finally {
          exit.untrack();
        }
      }
      const choice = exit.choice;
      // Exits tried so far, this one included (the router counts the ones refused here among its `retried`).
      const tries = 1 + (choice?.retried ?? 0);
      const retry = body === null && choice !== undefined && tries < maxTries ? (IDEMPOTENT_METHODS.has(req.method!) ? 'idempotent' : 'refused-only') : undefined;
      const inspect = exit.absoluteForm && choice ? (status: number, list: readonly string[]) => inspectHop(ctx, choice, unbracket(target.host), status, list, retry) : undefined;
      // undici's index is loaded by the first request that needs one of its clients: a forward
      // proxy that only tunnels never holds it (~11 MiB resident, docs/benchmarks.md §27 and §32).
      const client = new (undici().Client)(target.origin, {
        // undici wants the connector to answer asynchronously.
        connect: (_o, cb) => setImmediate(cb, null, exit.socket),
        pipelining: 1,
      });
      let r: FinishFields | typeof AGAIN;
      try {
        r = await this.#dispatch(ctx, session, client, path, h, body, headUp, () => exit.address, { extraHeaders: exitHeaderList(choice), inspect, debug: debug(choice) }, retry !== undefined ? hopRefused : undefined);
      } finally {
        exit.untrack();
        client.destroy().catch(() => {});
      }
      if (r !== AGAIN) return r;
      tried.add(choice!.exit.id);
      if (this.aborted) return this.#left();
    }
  }

  /**
   * A request that expects 100-continue, over `socket` (its own connection, closed after): the
   * expectation goes upstream by an ExpectClient driving the same ForwardRelay.
   */
  async #expect(ctx: ForwardContext, session: MeterSession, socket: Socket, path: string, headers: string[], body: Readable | null, headUp: number, extra: readonly string[] | undefined, debug: ((bytesUp: number) => string) | undefined): Promise<FinishFields> {
    const address = socket.remoteAddress ?? null;
    const client = new ExpectClient(socket);
    const send = (relay: ForwardRelay): void => client.dispatch({ path, method: this.#req.method!, headers: [...headers, 'expect', '100-continue'], body }, relay);
    try {
      return await this.#relay(ctx, session, send, body, headUp, () => address, { extraHeaders: extra, expect: this.#req, debug });
    } finally {
      client.close();
    }
  }

  /** How a relay ended, as the record's fields; a failure before the response head is answered here. */
  #settled(ctx: ForwardContext, session: MeterSession, o: RelayOutcome, headUp: number, address: string | null, close: boolean): FinishFields {
    if (o.endedBy === 'client' && o.failure === undefined && o.error === undefined) {
      const cut = this.#drainCut('headers', o.unanswered === true, o.unsent);
      if (cut !== undefined) {
        cut.address = address;
        return cut;
      }
    }
    const fields: FinishFields = { method: this.#req.method, address, endedBy: o.endedBy };
    // Cut or refused by a byte quota: the record names the refusal's reason (its `quota` the limit).
    if (session.quotaCut !== undefined) fields.reason = (o.failure ?? o.error)?.reason;
    if (o.failure) {
      sendFailure(ctx, this.#req, this.#res, o.failure, session.requestId, close);
      fields.status = o.failure.status;
      fields.error = o.failure.type;
      // The phase the answer's problem+json names (dns, connect, tls...) and the failure in
      // words: the HTTP proxy's line and the dashboard's record said neither (but for a client's
      // own failure), while CONNECT's and SOCKS's said both (error-story probe).
      fields.phase = o.failure.phase;
      fields.detail = o.failure.detail;
    } else {
      if (o.status !== CLIENT_CLOSED_STATUS) session.up(headUp);
      fields.status = o.status;
      fields.error = o.error?.type ?? null;
      if (o.error !== undefined) {
        fields.phase = o.error.phase;
        fields.detail = o.error.detail;
      }
    }
    return fields;
  }

  /**
   * Direct: on a connection of the origin's pool (`DirectPools`). The pool's keep-alive race
   * defence, as on the reverse gateway: a request that could not be sent again (not
   * idempotent, or with a body, which is streamed and not kept) never goes on a reused
   * connection; an idempotent bodiless one whose reused connection closed before any response
   * byte (`lostKeepAliveRace`) is sent once more, at once, on a fresh connection.
   */
  async #direct(ctx: ForwardContext, session: MeterSession, user: string | null, path: string, headers: string[], body: Readable | null, headUp: number, through: RelayThrough | undefined): Promise<FinishFields> {
    const pool = ctx.direct.for(user, this.target!.origin, Date.now());
    const retryable = body === null && IDEMPOTENT_METHODS.has(this.#req.method!);
    let fresh = false;
    for (;;) {
      // A new connection is opened for this request, with it as the dial's signal (see the class comment).
      const client: PooledClient = pool.acquire(Date.now(), retryable, fresh, this);
      const reused = client.connected;
      const mayRetry = retryable && !fresh;
      const settled = (o: RelayOutcome): boolean => {
        pool.release(client, Date.now(), o.endedBy === 'complete');
        return mayRetry && o.failure !== undefined && lostKeepAliveRace(o.failure, reused, o.responseStarted === true);
      };
      const r = await this.#dispatch(ctx, session, client, path, headers, body, headUp, () => client.remoteAddress ?? null, through, settled);
      if (r !== AGAIN) return r;
      if (this.aborted) return this.#left();
      fresh = true;
    }
  }

  /** Through an undici dispatcher (a pooled connection, or a one-request Client on an exit's connection). */
  #dispatch(
    ctx: ForwardContext,
    session: MeterSession,
    dispatcher: Dispatcher,
    path: string,
    headers: string[],
    body: Readable | null,
    headUp: number,
    address: () => string | null,
    through?: RelayThrough,
    again?: (o: RelayOutcome) => boolean,
  ): Promise<FinishFields | typeof AGAIN> {
    const origin = this.target!.origin;
    const method = this.#req.method as Dispatcher.HttpMethod;
    // The relay times the response itself (ResponseTimer): undici's timers off.
    const send = (relay: ForwardRelay): void => {
      dispatcher.dispatch({ origin, path, method, headers, body, headersTimeout: 0, bodyTimeout: 0 }, relay);
    };
    return this.#relay(ctx, session, send, body, headUp, address, through, again);
  }

  /**
   * One request sent by `send` driving a ForwardRelay; resolves with the record's fields once
   * it ended, or AGAIN when `again` (told every outcome, once) says nothing was answered and
   * the request is to be sent again.
   */
  #relay(ctx: ForwardContext, session: MeterSession, send: (relay: ForwardRelay) => void, body: Readable | null, headUp: number, address: () => string | null, through: RelayThrough | undefined): Promise<FinishFields>;
  #relay(ctx: ForwardContext, session: MeterSession, send: (relay: ForwardRelay) => void, body: Readable | null, headUp: number, address: () => string | null, through: RelayThrough | undefined, again: ((o: RelayOutcome) => boolean) | undefined): Promise<FinishFields | typeof AGAIN>;
  #relay(
    ctx: ForwardContext,
    session: MeterSession,
    send: (relay: ForwardRelay) => void,
    body: Readable | null,
    headUp: number,
    address: () => string | null,
    through: RelayThrough | undefined,
    again?: (o: RelayOutcome) => boolean,
  ): Promise<FinishFields | typeof AGAIN> {
    return new Promise<FinishFields | typeof AGAIN>((resolve) => {
      const done = (o: RelayOutcome): void => {
        // The relay heard the client leave: a dial still in flight for it stops.
        if (o.endedBy === 'client') this.#abortDial();
        if (again !== undefined && again(o)) {
          resolve(AGAIN);
          return;
        }
        // A failure before any answer while the client has gone: its dial refused for it (the
        // dialer read `aborted` before the relay heard the close, as after a FIN), or an
        // upstream failure it is no longer there to read. It ended the request, as a tunnel's
        // client does whose dial failed after it left (tunnel-run.ts). The client's own
        // failures (a stalled or cut upload) keep their record.
        if (o.failure !== undefined && o.failure.source !== 'client' && this.aborted) {
          resolve(this.#left());
          return;
        }
        // The client's own failure (a stalled body), a client still holding a body it was not
        // asked for (Expect), or an upload cut by a byte quota: the rest of its body is never
        // read, so close.
        const cutUpload = body !== null && session.quotaCut !== undefined && !this.#req.complete;
        resolve(this.#settled(ctx, session, o, headUp, address(), o.failure?.source === 'client' || through?.expect !== undefined || cutUpload));
      };
      const relay = new ForwardRelay(this.#res, session, ctx.settings.name, body, ctx.relayTimeouts, done, through, ctx.plans, this.#user);
      try {
        send(relay);
      } catch (err) {
        relay.onError(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }
}

/** A connection through an exit of a pool, ready for one request. */
interface ExitConnection {
  socket: Socket;
  choice: ExitChoice | undefined;
  address: string | null;
  /** Through an HTTP upstream proxy: send plain HTTP in absolute-form, with these credentials. */
  absoluteForm: boolean;
  proxyAuthorization: string | undefined;
  untrack: () => void;
}

async function openExit(ctx: ForwardContext, tls: UpstreamTls, route: ForwardRequest['route'], target: HttpTarget, cancel: CancelSignal, session: MeterSession, exclude?: ReadonlySet<string>): Promise<ExitConnection> {
  const https = target.scheme === 'https';
  const host = unbracket(target.host);
  const dest = { host, port: target.port };
  const opts = dialOptions(ctx, route.user, cancel);
  const d: EgressDial & { absoluteForm?: { proxyAuthorization?: string } } = https ? await ctx.egress.dial(dest, opts, route) : await ctx.egress.dialHttp(dest, opts, route, exclude);
  noteExit(session, d.choice);
  const untrack = ctx.tracker.track(d.socket);
  let socket: Socket = d.socket;
  if (https) {
    try {
      socket = await new Promise<Socket>((resolve, reject) => tls.upgrade(d.socket, host, target.port, (err, s) => (err ? reject(err) : resolve(s as Socket))));
    } catch (err) {
      untrack();
      throw err;
    }
  }
  const absolute = d.absoluteForm;
  const choice = d.choice;
  return {
    socket,
    choice,
    address: socket.remoteAddress ?? d.socket.remoteAddress ?? null,
    absoluteForm: absolute !== undefined,
    proxyAuthorization: absolute?.proxyAuthorization,
    untrack,
  };
}

/** Hop refusals to be retried through another exit (never answered to the client). */
const HOP_RETRY = new WeakSet<Failure>();

/** A hop's refusal marked for another exit (inspectHop): nothing was answered yet. */
function hopRefused(o: RelayOutcome): boolean {
  return o.failure !== undefined && HOP_RETRY.has(o.failure);
}

/** The `error=` of an upstream Proxy-Status member, when the hop made this answer itself. */
function hopMadeIt(headers: readonly string[]): boolean {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.toLowerCase() === 'proxy-status' && /;\s*error=/i.test(headers[i + 1]!)) return true;
  }
  return false;
}

/**
 * The answer of an HTTP upstream proxy hop to a plain-HTTP request. A 407 is the hop
 * refusing our credentials (the exit's configuration: the exit marked); a 403, 502 or 504
 * carrying the hop's own Proxy-Status error is the hop refusing or failing to reach the
 * destination (this exit marked for the domain). A refusal is retried through another exit
 * when `retry` allows (`idempotent`: any of them; `refused-only`: a 407, which the hop
 * answered before forwarding anything); otherwise a 407 is refused with the hop as next
 * hop, and the hop's own 403/502/504 is passed on as it is (its Proxy-Status names it).
 */
function inspectHop(ctx: ForwardContext, choice: ExitChoice, host: string, status: number, headers: readonly string[], retry: 'idempotent' | 'refused-only' | undefined): Failure | undefined {
  const label = choice.exit.label;
  if (status === 407) {
    const f = withScope(new Failure({ type: 'proxy_configuration_error', phase: 'headers', nextHop: label, detail: `upstream proxy ${label} refused our credentials (407)`, params: { 'received-status': 407 } }), 'exit');
    ctx.egress.report(choice, host, 'exit', f);
    if (retry !== undefined) HOP_RETRY.add(f);
    return f;
  }
  if ((status === 403 || status === 502 || status === 504) && hopMadeIt(headers)) {
    const f = withScope(new Failure({ type: status === 403 ? 'http_request_denied' : 'destination_unavailable', phase: 'headers', nextHop: label, detail: `upstream proxy ${label} answered ${status}`, params: { 'received-status': status } }), 'domain');
    ctx.egress.report(choice, host, 'domain', f);
    if (retry !== 'idempotent') return undefined;
    HOP_RETRY.add(f);
    return f;
  }
  return undefined;
}

function exitHeaderList(choice: ExitChoice | undefined): string[] | undefined {
  if (!choice) return undefined;
  const out: string[] = [];
  for (const [k, v] of Object.entries(exitHeaders(choice))) out.push(k, v);
  return out;
}

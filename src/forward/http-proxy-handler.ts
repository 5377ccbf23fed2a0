import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform, pipeline, type Readable } from 'node:stream';
import { CLIENT_CLOSED_STATUS, Failure, classify } from '../failure/index.js';
import { viaContains } from '../http/headers.js';
import type { MeterSession } from '../tenants/index.js';
import { admit } from './admission.js';
import { hostPort, newRequestId, type ForwardContext, clientAddressFor } from './context.js';
import { forwardRequestHeaders, forwardResponseHeaders, headerBytes } from './forward-headers.js';
import { sendFailure } from './http-failure.js';
import { parseAbsoluteTarget } from './http-target.js';
import { authenticate, parseBasicCredentials } from './proxy-auth.js';
import { connect as tlsConnect } from 'node:tls';
import { isIP, type Socket } from 'node:net';
import { Client, type Dispatcher } from 'undici';
import { unbracket, type EgressRoute, type ExitChoice } from '../egress/index.js';
import { admitPlan, dialOptions, exitHeaders, noteExit } from './egress-admission.js';
import { ForwardRelay, type RelayTimeouts } from './forward-relay.js';

function counter(onBytes: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      onBytes(chunk.length);
      cb(null, chunk);
    },
  });
}

function hasBody(req: IncomingMessage): boolean {
  const cl = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0');
}

/**
 * The HTTP proxy Handler for absolute-form requests (`GET http://host/path`):
 * authenticate → parse target → loop check → rules (name) → admit → forward through the
 * user's Agent (rules on the resolved address) → stream the response back.
 */
export class HttpProxyHandler {
  readonly #ctx: ForwardContext;
  readonly #relayTimeouts: RelayTimeouts;

  constructor(ctx: ForwardContext) {
    this.#ctx = ctx;
    this.#relayTimeouts = { headersMs: ctx.settings.responseHeadersMs, bodyIdleMs: ctx.settings.responseBodyIdleMs };
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const session = this.#ctx.meter.open({ protocol: 'http', requestId: newRequestId(), user: null, clientAddress: clientAddressFor(this.#ctx, req.socket) });
    this.#handle(req, res, session).catch((err: unknown) => {
      const f = classify(err, { connected: false, responseStarted: false, headersReceived: false });
      this.#fail(req, res, session, f);
    });
  }

  #fail(req: IncomingMessage, res: ServerResponse, session: MeterSession, f: Failure, refused = true): void {
    req.resume();
    sendFailure(this.#ctx, req, res, f, session.requestId);
    session.finish({ status: f.status, error: f.type, method: req.method, refused, endedBy: 'proxy' });
  }

  async #handle(req: IncomingMessage, res: ServerResponse, session: MeterSession): Promise<void> {
    const ctx = this.#ctx;
    const authHeader = req.headers['proxy-authorization'];
    const creds = parseBasicCredentials(authHeader);
    // Checks that need no I/O return plain values: not awaited (an await of a value still costs a microtask turn).
    const authed = authenticate(ctx, creds, authHeader !== undefined && !creds);
    const auth = authed instanceof Promise ? await authed : authed;
    if (!auth.ok) return this.#fail(req, res, session, auth.failure);
    const user = auth.user;
    session.user = user;

    const target = parseAbsoluteTarget(req.url);
    if (target instanceof Failure) return this.#fail(req, res, session, target);
    const nextHop = hostPort(target.host, target.port);
    session.destination = nextHop;

    const via = req.headers.via;
    if (via && viaContains([via], ctx.settings.name)) {
      return this.#fail(req, res, session, new Failure({ type: 'proxy_loop_detected', phase: 'accept', nextHop, detail: 'the request already passed through this proxy' }));
    }
    const denied = ctx.rules.checkName(user, target.host, target.port);
    if (denied) return this.#fail(req, res, session, denied);
    const planned = admitPlan(ctx, auth.route, target.host, session);
    const planRefusal = planned instanceof Promise ? await planned : planned;
    if (planRefusal) return this.#fail(req, res, session, planRefusal);
    const release = admit(ctx, user, 'request', nextHop);
    if (release instanceof Failure) return this.#fail(req, res, session, release);
    try {
      const pool = ctx.egress.poolName(auth.route, target.host);
      if (typeof pool === 'string') await this.#forward(req, res, session, user, target.origin, target.path, target.authority, auth.route);
      else await this.#forward(req, res, session, user, target.origin, target.path, target.authority);
    } finally {
      release();
    }
  }

  /**
   * One request through an egress pool: a fresh connection through the chosen exit
   * (rotation and sessions decide per request, so pooled keep-alive connections would
   * defeat them). Through a single HTTP upstream proxy, plain HTTP goes in absolute-form.
   */
  async #pooledRequest(
    req: IncomingMessage,
    session: MeterSession,
    route: EgressRoute,
    origin: string,
    path: string,
    headers: string[],
    body: Readable | null,
    signal: AbortSignal,
  ): Promise<{ response: Dispatcher.ResponseData; choice: ExitChoice | undefined; address: string | null; done: () => void }> {
    const ctx = this.#ctx;
    const url = new URL(origin);
    const https = url.protocol === 'https:';
    const host = unbracket(url.hostname);
    const port = Number(url.port) || (https ? 443 : 80);
    const opts = dialOptions(ctx, route.user, signal);
    const d = https ? await ctx.egress.dial({ host, port }, opts, route) : await ctx.egress.dialHttp({ host, port }, opts, route);
    noteExit(session, d.choice);
    const untrack = ctx.tracker.track(d.socket);
    let sock: Socket = d.socket;
    if (https) {
      sock = await new Promise<Socket>((resolve, reject) => {
        const tls = tlsConnect({ socket: d.socket, servername: isIP(host) ? undefined : host, ALPNProtocols: ['http/1.1'] });
        const timer = setTimeout(() => tls.destroy(Object.assign(new Error('TLS handshake timed out'), { code: 'UND_ERR_CONNECT_TIMEOUT' })), ctx.settings.connectTimeoutMs);
        tls.once('secureConnect', () => {
          clearTimeout(timer);
          tls.removeAllListeners('error');
          resolve(tls);
        });
        tls.once('error', (err) => {
          clearTimeout(timer);
          d.socket.destroy();
          reject(classify(err, { connected: false, responseStarted: false, headersReceived: false, nextHop: `${host}:${port}` }));
        });
      });
    }
    const absolute = (d as { absoluteForm?: { proxyAuthorization?: string } }).absoluteForm;
    const h = [...headers];
    if (absolute?.proxyAuthorization) h.push('proxy-authorization', absolute.proxyAuthorization);
    const client = new Client(origin, {
      // undici wants the connector to answer asynchronously.
      connect: (_o, cb) => setImmediate(() => cb(null, sock)),
      headersTimeout: ctx.settings.responseHeadersMs,
      bodyTimeout: ctx.settings.responseBodyIdleMs,
      pipelining: 1,
    });
    const done = (): void => {
      untrack();
      client.destroy().catch(() => {});
    };
    try {
      const response = await client.request({ origin, path: absolute ? `${origin}${path}` : path, method: req.method as 'GET', headers: h, body, signal });
      if (absolute && response.statusCode === 407 && d.choice) {
        response.body.destroy();
        done();
        const f = new Failure({ type: 'proxy_configuration_error', phase: 'headers', nextHop: d.choice.exit.label, detail: `upstream proxy ${d.choice.exit.label} refused our credentials (407)` });
        ctx.egress.report(d.choice, host, 'exit', f);
        throw f;
      }
      if (absolute && d.choice && (response.statusCode === 502 || response.statusCode === 504) && response.headers['proxy-status'] !== undefined) {
        // The upstream proxy could not reach the destination: a per-domain mark for this exit.
        ctx.egress.report(d.choice, host, 'domain', new Failure({ type: 'destination_unavailable', phase: 'headers', nextHop: d.choice.exit.label, detail: `upstream proxy ${d.choice.exit.label} answered ${response.statusCode}` }));
      }
      return { response, choice: d.choice, address: sock.remoteAddress ?? d.socket.remoteAddress ?? null, done };
    } catch (err) {
      done();
      throw err;
    }
  }

  async #forward(req: IncomingMessage, res: ServerResponse, session: MeterSession, user: string | null, origin: string, path: string, authority: string, route?: EgressRoute): Promise<void> {
    const ctx = this.#ctx;
    const headers = forwardRequestHeaders(req.rawHeaders, authority, req.httpVersion, ctx.settings.name);
    const headUp = headerBytes(headers) + (req.method?.length ?? 0) + path.length + 12;

    let body: Readable | null = null;
    if (hasBody(req)) {
      const up = counter((n) => session.up(n));
      pipeline(req, up, () => {});
      body = up;
    } else {
      req.resume();
    }

    if (!route) return this.#relay(req, res, session, user, origin, path, headers, body, headUp);
    const ac = new AbortController();
    let clientGone = false;
    const onClose = (): void => {
      if (!res.writableFinished) {
        clientGone = true;
        ac.abort();
      }
    };
    res.once('close', onClose);
    let response: Dispatcher.ResponseData;
    let pooled: { choice: ExitChoice | undefined; address: string | null; done: () => void } | undefined;
    try {
      const r = await this.#pooledRequest(req, session, route, origin, path, headers, body, ac.signal);
      response = r.response;
      pooled = r;
    } catch (err) {
      res.off('close', onClose);
      const address = null;
      if (clientGone) {
        session.finish({ status: CLIENT_CLOSED_STATUS, error: null, method: req.method, endedBy: 'client', address });
        return;
      }
      const f = classify(err, { connected: true, responseStarted: false, headersReceived: false, nextHop: session.destination ?? undefined });
      sendFailure(ctx, req, res, f, session.requestId);
      session.finish({ status: f.status, error: f.type, method: req.method, endedBy: f.source === 'upstream' ? 'server' : 'proxy', address });
      return;
    }

    session.up(headUp);
    const address = pooled.address;
    const outHeaders = forwardResponseHeaders(response.headers, ctx.settings.name);
    for (const [k, v] of Object.entries(exitHeaders(pooled.choice))) outHeaders.push(k, v);
    session.down(headerBytes(outHeaders) + 17);
    res.writeHead(response.statusCode, response.statusText || undefined, outHeaders);
    const down = counter((n) => session.down(n));
    await new Promise<void>((resolve) => {
      pipeline(response.body, down, res, (err) => {
        res.off('close', onClose);
        pooled.done();
        if (!err) {
          session.finish({ status: response.statusCode, error: null, method: req.method, endedBy: 'server', address });
        } else if (clientGone || (err as { code?: string }).code === 'ERR_STREAM_PREMATURE_CLOSE') {
          response.body.destroy();
          session.finish({ status: response.statusCode, error: null, method: req.method, endedBy: 'client', address });
        } else {
          // The destination failed mid-body: abort the client connection, never a body that looks complete.
          const f = classify(err, { connected: true, responseStarted: true, headersReceived: true, nextHop: session.destination ?? undefined });
          res.destroy();
          session.finish({ status: response.statusCode, error: f.type, method: req.method, endedBy: 'server', address });
        }
        resolve();
      });
    });
  }

  /** Direct (no egress pool): through the user's pooled Agent, relayed by a dispatch handler. */
  #relay(req: IncomingMessage, res: ServerResponse, session: MeterSession, user: string | null, origin: string, path: string, headers: string[], body: Readable | null, headUp: number): Promise<void> {
    const ctx = this.#ctx;
    return new Promise<void>((resolve) => {
      const relay = new ForwardRelay(res, session, ctx.settings.name, body, this.#relayTimeouts, (o) => {
        const address = ctx.agents.lastAddress(user, origin) ?? null;
        if (o.failure) {
          sendFailure(ctx, req, res, o.failure, session.requestId);
          session.finish({ status: o.failure.status, error: o.failure.type, method: req.method, endedBy: o.endedBy, address });
        } else {
          if (o.status !== CLIENT_CLOSED_STATUS) session.up(headUp);
          session.finish({ status: o.status, error: o.error?.type ?? null, method: req.method, endedBy: o.endedBy, address });
        }
        resolve();
      });
      try {
        // The relay times the response itself (ResponseTimer): undici's timers off.
        ctx.agents.for(user).dispatch({ origin, path, method: req.method as Dispatcher.HttpMethod, headers, body, headersTimeout: 0, bodyTimeout: 0 }, relay);
      } catch (err) {
        relay.onError(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }
}

import type { Socket } from 'node:net';
import { CLIENT_CLOSED_STATUS, Failure, classify } from '../failure/index.js';
import type { MeterSession } from '../tenants/index.js';
import { admit } from './admission.js';
import type { ConnectRequest } from './connect-head.js';
import { hostPort, newRequestId, type ForwardContext, clientAddressFor } from './context.js';
import { writeRawFailure } from './http-failure.js';
import { parseAuthorityTarget } from './http-target.js';
import { authenticate, parseBasicCredentials } from './proxy-auth.js';
import { admitPlan, spliceMetered, dialOptions, exitHeaders, noteExit } from './egress-admission.js';
import type { EgressRoute, ExitChoice } from '../egress/index.js';
import { Cancel } from '../egress/cancel.js';
import { literalAddress } from '../egress/resolver.js';

/**
 * The CONNECT Handler: authenticate → target and port → rules (name) → admit → dial
 * (rules on the resolved address) → `200 Connection Established` → tunnel. Every
 * refusal before the tunnel opens is a full HTTP response with Proxy-Status.
 */
export class HttpConnectHandler {
  readonly #ctx: ForwardContext;

  /** The answer to a direct tunnel, encoded once. */
  readonly #established: Buffer;

  constructor(ctx: ForwardContext) {
    this.#ctx = ctx;
    this.#established = Buffer.from(`HTTP/1.1 200 Connection Established\r\nvia: 1.1 ${ctx.settings.name}\r\n\r\n`, 'latin1');
  }

  handle(req: ConnectRequest, socket: Socket, head: Buffer): void {
    // Bytes the client sends before the tunnel opens (a TLS ClientHello right behind the
    // CONNECT) wait in the socket's buffer until the tunnel reads them; flowing with no
    // listener, they would be dropped.
    socket.pause();
    const session = this.#ctx.meter.open({ protocol: 'connect', requestId: newRequestId(), user: null, clientAddress: clientAddressFor(this.#ctx, socket) });
    socket.on('error', ignore);
    this.#handle(req, socket, head, session).catch((err: unknown) => {
      const f = classify(err, { connected: false, responseStarted: false, headersReceived: false });
      this.#fail(req, socket, session, f);
    });
  }

  #fail(req: ConnectRequest, socket: Socket, session: MeterSession, f: Failure, address: string | null = null): void {
    socket.resume(); // read (and drop) what follows, so the client's close is seen
    writeRawFailure(this.#ctx, socket, f, session.requestId, req.headers.accept);
    session.finish({ status: f.status, error: f.type, method: 'CONNECT', refused: true, endedBy: 'proxy', address });
  }

  /**
   * The checks that need no I/O (no credentials, no plan) return plain values and are
   * not awaited: no promise or microtask turn for them on each tunnel.
   */
  async #handle(req: ConnectRequest, socket: Socket, head: Buffer, session: MeterSession): Promise<void> {
    const ctx = this.#ctx;
    const authHeader = req.headers['proxy-authorization'];
    const creds = parseBasicCredentials(authHeader);
    const authed = authenticate(ctx, creds, authHeader !== undefined && !creds);
    const auth = authed instanceof Promise ? await authed : authed;
    if (!auth.ok) return this.#fail(req, socket, session, auth.failure);
    const user = auth.user;
    const route = auth.route;
    session.user = user;

    const target = parseAuthorityTarget(req.url);
    if (target instanceof Failure) return this.#fail(req, socket, session, target);
    const nextHop = hostPort(target.host, target.port);
    session.destination = nextHop;
    if (!ctx.settings.connectPorts.has(target.port)) {
      return this.#fail(req, socket, session, new Failure({ type: 'http_request_denied', phase: 'route', nextHop, detail: `CONNECT to port ${target.port} is not allowed` }));
    }
    const denied = ctx.rules.checkName(user, target.host, target.port);
    if (denied) return this.#fail(req, socket, session, denied);
    const planned = admitPlan(ctx, route, target.host, session);
    const planRefusal = planned instanceof Promise ? await planned : planned;
    if (planRefusal) return this.#fail(req, socket, session, planRefusal);
    const release = admit(ctx, user, 'tunnel', nextHop);
    if (release instanceof Failure) return this.#fail(req, socket, session, release);

    try {
      await this.#open(req, socket, head, session, route, target);
    } finally {
      release();
    }
  }

  /** Dial (a client that leaves meanwhile cancels it), answer 200, splice until either side ends. */
  async #open(req: ConnectRequest, socket: Socket, head: Buffer, session: MeterSession, route: EgressRoute, target: { host: string; port: number }): Promise<void> {
    const ctx = this.#ctx;
    const cancel = new Cancel();
    (socket as CancelSocket)[kCancel] = cancel;
    socket.on('close', cancelDial);
    let upstream: Socket;
    let choice: ExitChoice | undefined;
    try {
      const d = await ctx.egress.dial(target, dialOptions(ctx, route.user, cancel), route);
      upstream = d.socket;
      choice = d.choice;
      noteExit(session, choice);
    } catch (err) {
      if (cancel.aborted) {
        session.finish({ status: CLIENT_CLOSED_STATUS, error: null, method: 'CONNECT', endedBy: 'client' });
        return;
      }
      const f = err instanceof Failure ? err : classify(err, { connected: false, responseStarted: false, headersReceived: false, nextHop: session.destination ?? undefined });
      return this.#fail(req, socket, session, f);
    } finally {
      socket.removeListener('close', cancelDial);
    }
    // Dialled directly to an IP literal: that is the address (saves a getpeername call).
    const address = (choice === undefined ? literalAddress(target.host)?.address : undefined) ?? upstream.remoteAddress ?? null;
    if (socket.destroyed) {
      upstream.destroy();
      session.finish({ status: CLIENT_CLOSED_STATUS, error: null, method: 'CONNECT', endedBy: 'client', address });
      return;
    }
    ctx.tracker.add(upstream);
    if (choice === undefined) {
      socket.write(this.#established);
    } else {
      let extra = '';
      for (const [k, v] of Object.entries(exitHeaders(choice))) extra += `${k}: ${v}\r\n`;
      socket.write(`HTTP/1.1 200 Connection Established\r\nvia: 1.1 ${ctx.settings.name}\r\n${extra}\r\n`);
    }
    const endedBy = await spliceMetered(ctx, session, route.user, socket, upstream, head);
    ctx.tracker.forget(upstream);
    session.finish({ status: 200, error: null, method: 'CONNECT', endedBy, address });
  }
}

const kCancel = Symbol('gatewise.connectCancel');
type CancelSocket = Socket & { [kCancel]?: Cancel };

/** The client closed while its tunnel was being dialled. */
function cancelDial(this: CancelSocket): void {
  this[kCancel]?.abort();
}

function ignore(): void {}

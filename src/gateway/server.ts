import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Config, ListenerConfig } from '../config/schema.js';
import { Failure, parserRefusal } from '../failure/index.js';
import { viaValue } from '../http/headers.js';
import { plainAddress } from '../http/trust.js';
import { buildContext, ms, type GatewayContext, type GatewayOptions } from './context.js';
import { gatewayLifecycle, requestEnd, requestRecord, type LifecycleRecord } from './events.js';
import { Exchange, exchangeOf, newRequestId } from './exchange.js';
import { respondWithFailure } from './responder.js';
import { UpgradeExchange } from './upgrade.js';

export interface ListeningAddress {
  address: string;
  port: number;
  url: string;
}

/**
 * The reverse gateway: one HTTP server per listener, all sharing one compiled context.
 */
export class Gateway {
  readonly ctx: GatewayContext;
  readonly config: Config;
  readonly #servers: Array<{ server: Server; cfg: ListenerConfig; name: string }> = [];
  /** Client sockets handed over by 'upgrade' (WebSocket tunnels): the HTTP server no longer tracks them. */
  readonly #tunnels = new Set<Duplex>();
  #closing: Promise<void> | undefined;

  constructor(config: Config, options: GatewayOptions = {}) {
    this.config = config;
    this.ctx = buildContext(config, options);
    const via11 = viaValue('1.1', this.ctx.identity);
    const via10 = viaValue('1.0', this.ctx.identity);
    for (const l of config.listeners) {
      const entry = { server: undefined as unknown as Server, cfg: l, name: `${l.address}:${l.port}` };
      const server = createServer({
        maxHeaderSize: l.maxHeaderSize,
        headersTimeout: ms(l.requestHeaderTimeout),
        // Node checks headersTimeout only every connectionsCheckingInterval (default 30 s), so a
        // slow head got its 408 up to 30 s late: check at a quarter of the timeout, 50 ms–1 s.
        connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(ms(l.requestHeaderTimeout) / 4))),
        requestTimeout: 0,
        keepAliveTimeout: ms(l.keepAliveTimeout),
        requireHostHeader: true,
        insecureHTTPParser: false,
        joinDuplicateHeaders: false,
      });
      server.on('request', (req: IncomingMessage, res: ServerResponse) => {
        new Exchange(this.ctx, req, res, entry.name, req.httpVersion === '1.0' ? via10 : via11).start();
      });
      server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        this.#tunnels.add(socket);
        socket.once('close', () => this.#tunnels.delete(socket));
        new UpgradeExchange(this.ctx, req, socket, head, entry.name, via11).start();
      });
      server.on('connect', (req: IncomingMessage, socket: Duplex) => {
        this.#refuseRaw(socket, new Failure({ type: 'http_request_error', phase: 'accept', reason: 'method_not_allowed', detail: 'CONNECT is not served by the reverse gateway (use the forward proxy)' }), entry.name, req);
      });
      server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#onClientError(err, socket, entry.name));
      entry.server = server;
      this.#servers.push(entry);
    }
  }

  async listen(): Promise<ListeningAddress[]> {
    await Promise.all(
      this.#servers.map(
        ({ server, cfg }) =>
          new Promise<void>((resolve, reject) => {
            const onError = (err: Error): void => reject(err);
            server.once('error', onError);
            server.listen(cfg.port, cfg.address, () => {
              server.off('error', onError);
              resolve();
            });
          }),
      ),
    );
    const addrs = this.addresses();
    addrs.forEach((a, i) => {
      this.#servers[i]!.name = `${a.address}:${a.port}`;
    });
    lifecycle({ event: 'listening', detail: addrs.map((a) => a.url).join(' ') });
    return addrs;
  }

  addresses(): ListeningAddress[] {
    return this.#servers.map(({ server }) => {
      const a = server.address() as AddressInfo;
      const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      return { address: a.address, port: a.port, url: `http://${host}:${a.port}` };
    });
  }

  /**
   * Stop accepting, let in-flight requests finish (idle keep-alive connections are
   * closed at once; busy ones get `Connection: close`), then cut what is left after
   * `drainMs` and close the upstream pools.
   */
  close(drainMs = ms(this.config.shutdown.drainTimeout)): Promise<void> {
    this.#closing ??= this.#close(drainMs);
    return this.#closing;
  }

  async #close(drainMs: number): Promise<void> {
    this.ctx.draining = true;
    lifecycle({ event: 'draining', detail: `${this.ctx.inflight} requests in flight` });
    const closed = this.#servers.map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve())));
    for (const { server } of this.#servers) server.closeIdleConnections();
    const deadline = Date.now() + drainMs;
    while ((this.ctx.inflight > 0 || this.#tunnels.size > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25));
      for (const { server } of this.#servers) server.closeIdleConnections();
    }
    for (const { server } of this.#servers) server.closeAllConnections();
    for (const t of this.#tunnels) t.destroy();
    await Promise.all(closed);
    await Promise.all([...this.ctx.clusters.values()].map((c) => c.close()));
    lifecycle({ event: 'closed', detail: '' });
  }

  #onClientError(err: NodeJS.ErrnoException, socket: Duplex, listener: string): void {
    const code = err.code;
    if (code === 'ECONNRESET' || code === 'EPIPE' || !socket.writable) {
      socket.destroy();
      return;
    }
    this.#refuseRaw(socket, parserRefusal(code), listener);
  }

  /** Answer on a raw socket (parser errors, CONNECT) and close it. */
  #refuseRaw(socket: Duplex, f: Failure, listener: string, req?: IncomingMessage): void {
    const sock = socket as Socket & { _httpMessage?: ServerResponse };
    const pending = sock._httpMessage;
    if (pending && !pending.writableFinished && !pending.req.complete) {
      // The body of the request being answered is malformed (bad chunking): refuse that request.
      const ex = exchangeOf(pending);
      if (ex) {
        ex.refuse(f);
        return;
      }
    }
    if (pending && !pending.writableFinished) {
      // A pipelined request failed to parse while the previous one is still being answered:
      // the refusal must not overtake that response. Answer once it is finished.
      pending.once('finish', () => this.#refuseRaw(socket, f, listener, req));
      pending.once('close', () => {
        if (!pending.writableFinished) socket.destroy();
      });
      return;
    }
    const requestId = newRequestId(this.ctx);
    const answered = respondWithFailure(socket, f, { ctx: this.ctx, requestId, accept: req?.headers.accept, clientAddress: sock.remoteAddress, close: true, rawForm: 'parser' });
    if (requestEnd.hasSubscribers) {
      const record = requestRecord(requestId, listener, plainAddress(sock.remoteAddress), req, {
        route: undefined,
        cluster: undefined,
        status: answered.status,
        error: answered.type,
        phase: answered.phase,
        endedBy: 'client',
        detail: answered.detail,
        attempts: [],
        bytesIn: 0,
        bytesOut: 0,
        durationMs: 0,
        upgrade: false,
      });
      requestEnd.publish(record);
    }
  }
}

function lifecycle(r: LifecycleRecord): void {
  if (gatewayLifecycle.hasSubscribers) gatewayLifecycle.publish(r);
}

/** Build and start a gateway from a validated config, with optional hooks and custom balancers. */
export async function startGateway(config: Config, options: GatewayOptions = {}): Promise<Gateway> {
  const gw = new Gateway(config, options);
  await gw.listen();
  return gw;
}

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Failure } from '../failure/index.js';
import { newRequestId, type ForwardContext } from './context.js';
import { HttpConnectHandler } from './http-connect-handler.js';
import { writeRawFailure } from './http-failure.js';
import { HttpProxyHandler } from './http-proxy-handler.js';

interface ParserError extends Error {
  code?: string;
  bytesParsed?: number;
  rawPacket?: Buffer;
}

/**
 * The HTTP side of a listener: one http.Server that never listens itself; listeners hand
 * it connections after sniffing the first byte. Node's strict parser (llhttp) rejects
 * ambiguous framing; each rejection is answered 400 with Proxy-Status and logged.
 * A client has `handshake` time to send each request head.
 */
export class HttpFront {
  readonly #ctx: ForwardContext;
  readonly #server: Server;
  readonly #headTimers = new WeakMap<Socket, NodeJS.Timeout>();

  constructor(ctx: ForwardContext) {
    this.#ctx = ctx;
    const s = ctx.settings;
    this.#server = createServer({
      requireHostHeader: false,
      maxHeaderSize: s.maxHeaderSize,
      keepAliveTimeout: s.clientKeepAliveMs,
      requestTimeout: 0,
      insecureHTTPParser: false,
      joinDuplicateHeaders: false,
    });
    const proxy = new HttpProxyHandler(ctx);
    const connect = new HttpConnectHandler(ctx);
    this.#server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.#stopHeadTimer(req.socket);
      res.once('finish', () => this.#startHeadTimer(req.socket));
      proxy.handle(req, res);
    });
    this.#server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      this.#stopHeadTimer(socket);
      connect.handle(req, socket, head);
    });
    this.#server.on('clientError', (err: ParserError, socket: Socket) => this.#clientError(err, socket));
  }

  /** Take over a connection whose first bytes are `first`. */
  accept(socket: Socket, first: Buffer): void {
    this.#startHeadTimer(socket);
    socket.once('close', () => this.#stopHeadTimer(socket));
    this.#server.emit('connection', socket);
    // Node's parser reads the socket handle directly from now on; feed it what we already read.
    socket.emit('data', first);
  }

  #startHeadTimer(socket: Socket): void {
    if (socket.destroyed) return;
    this.#stopHeadTimer(socket);
    const t = setTimeout(() => socket.destroy(), this.#ctx.settings.handshakeTimeoutMs + this.#ctx.settings.clientKeepAliveMs);
    t.unref();
    this.#headTimers.set(socket, t);
  }

  #stopHeadTimer(socket: Socket): void {
    const t = this.#headTimers.get(socket);
    if (t) clearTimeout(t);
    this.#headTimers.delete(socket);
  }

  #clientError(err: ParserError, socket: Socket): void {
    this.#stopHeadTimer(socket);
    const code = err.code ?? '';
    if (code === 'ECONNRESET' || code === 'EPIPE' || !socket.writable) {
      socket.destroy();
      return;
    }
    // An idle keep-alive connection that timed out is no request at all.
    if ((code === 'HPE_HEADERS_TIMEOUT' || code === 'ERR_HTTP_REQUEST_TIMEOUT') && !err.rawPacket?.length) {
      socket.destroy();
      return;
    }
    let status = 400;
    let detail = `malformed request (${code || 'parse error'})`;
    if (code === 'HPE_HEADER_OVERFLOW') {
      status = 431;
      detail = 'request header section too large';
    } else if (code === 'HPE_HEADERS_TIMEOUT' || code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      status = 408;
      detail = 'request head not received in time';
    }
    const f = new Failure({ type: 'http_request_error', phase: 'accept', status, detail, params: { 'status-code': status } });
    const requestId = newRequestId();
    const session = this.#ctx.meter.open({ protocol: 'http', requestId, user: null, clientAddress: socket.remoteAddress });
    writeRawFailure(this.#ctx, socket, f, requestId, undefined);
    session.finish({ status, error: f.type, refused: true, endedBy: 'proxy' });
  }

  close(): void {
    this.#server.close();
    this.#server.closeAllConnections?.();
  }
}

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { parserRefusal } from '../failure/index.js';
import { Timeout } from '../timing/deadlines.js';
import { newRequestId, type ForwardContext, clientAddressFor } from './context.js';
import { parseConnectHead } from './connect-head.js';
import { HttpConnectFront } from './http-connect-front.js';
import { writeRawFailure } from './http-failure.js';
import { HttpProxyFront } from './http-proxy-front.js';
import type { ForwardPipeline } from './pipeline.js';

const kHeadTimer = Symbol('gatewise.headTimer');
const kBusy = Symbol('gatewise.busy');
/**
 * The head timer lives on the socket itself (one deadline per connection on the process
 * list, re-armed with `refresh()`), not in a WeakMap: a WeakMap entry keyed by a young socket makes V8 keep
 * everything reachable from it through every scavenge, which promoted whole requests
 * into the old generation and cost 10 ms scavenges under load.
 */
type TimedSocket = Socket & { [kHeadTimer]?: Timeout; [kBusy]?: boolean };

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
  readonly #connect: HttpConnectFront;

  constructor(pipeline: ForwardPipeline) {
    const ctx = pipeline.ctx;
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
    const proxy = new HttpProxyFront(pipeline);
    const connect = new HttpConnectFront(pipeline);
    this.#connect = connect;
    this.#server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      stopHeadTimer(req.socket);
      res.once('finish', onResFinish);
      proxy.handle(req, res);
    });
    this.#server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      stopHeadTimer(socket);
      connect.handle({ url: req.url ?? '', headers: req.headers }, socket, head);
    });
    this.#server.on('clientError', (err: ParserError, socket: Socket) => this.#clientError(err, socket));
  }

  /** Take over a connection whose first bytes are `first`. */
  accept(socket: Socket, first: Buffer): void {
    if (first[0] === 0x43) {
      // 'C': most likely a CONNECT whose whole head came in the first read.
      const head = parseConnectHead(first, this.#ctx.settings.maxHeaderSize);
      if (head !== undefined) {
        this.#connect.handle(head, socket, first.subarray(head.length));
        return;
      }
    }
    const limit = this.#ctx.settings.handshakeTimeoutMs;
    // `handshake: "0s"`: no limit on the request head (Node's keepAliveTimeout still ends idle connections).
    if (limit > 0) {
      (socket as TimedSocket)[kHeadTimer] = new Timeout(() => onHeadTimeout(socket), limit + this.#ctx.settings.clientKeepAliveMs);
      socket.once('close', onSocketClose);
    }
    this.#server.emit('connection', socket);
    // Node's parser reads the socket handle directly from now on; feed it what we already read.
    socket.emit('data', first);
  }

  #clientError(err: ParserError, socket: Socket): void {
    stopHeadTimer(socket);
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
    const f = parserRefusal(code);
    const requestId = newRequestId();
    const session = this.#ctx.meter.open({ protocol: 'http', requestId, user: null, clientAddress: clientAddressFor(this.#ctx, socket) });
    writeRawFailure(this.#ctx, socket, f, requestId, undefined);
    session.finish({ status: f.status, error: f.type, refused: true, endedBy: f.source });
  }

  close(): void {
    this.#server.close();
    this.#server.closeAllConnections?.();
  }
}

/** A request head arrived: the connection is busy until its response has finished. */
function stopHeadTimer(socket: Socket): void {
  (socket as TimedSocket)[kBusy] = true;
}

/** The response finished: the next request head must arrive in time again. */
function onResFinish(this: ServerResponse): void {
  const socket = this.req.socket as TimedSocket;
  if (socket.destroyed) return;
  socket[kBusy] = false;
  socket[kHeadTimer]?.refresh();
}

function onHeadTimeout(socket: Socket): void {
  if (!(socket as TimedSocket)[kBusy]) socket.destroy();
}

function onSocketClose(this: TimedSocket): void {
  this[kHeadTimer]?.cancel();
}

import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants, createServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type Http2Stream, type ServerHttp2Session } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { parseDuration } from '../config/duration.js';
import type { Http2Config } from '../config/tls.js';

/**
 * HTTP/2 downstream on a TLS listener. The listener's HTTPS server negotiates ALPN; a
 * connection that chose `h2` is handed here (a `http2` server that never listens itself),
 * the others stay with the HTTP/1.1 server and its limits. Streams arrive through Node's
 * compatibility API (`Http2ServerRequest`/`Response`, close to `IncomingMessage`/
 * `ServerResponse`) and go through the same `Exchange` as HTTP/1.1, with an `h2` front:
 * no connection order (streams are independent), no `Connection` header, the stream ends
 * instead of the connection. Pseudo-headers are taken out of the head and `:authority`
 * becomes `Host` before the pipeline sees it (`adaptRequest`).
 *
 * The rapid-reset attack (CVE-2023-44487: open a stream, reset it at once, repeat) is
 * bounded per connection: more than `maxResets` streams the client reset before their
 * answer within `resetWindow`, and the connection gets GOAWAY ENHANCE_YOUR_CALM and is
 * closed (`onAbuse` records it). Counted on the session, no per-stream closure. What is
 * counted is a stream the gateway began to handle (Node emitted it) and the client reset:
 * a HEADERS frame nghttp2 drops together with its RST_STREAM before Node sees it cost no
 * request work, and nghttp2's own reset rate limit covers those.
 */
export class H2Front {
  readonly server: Http2Server;
  readonly #sessions = new Set<ServerHttp2Session>();
  readonly #maxResets: number;
  readonly #windowMs: number;
  readonly #onAbuse: (session: ServerHttp2Session, detail: string) => void;
  /** The socket being handed to the HTTP/2 server (its session is made synchronously). */
  #taking: TLSSocket | Socket | undefined;

  constructor(
    cfg: Http2Config,
    limits: { maxHeaderSize: number; idleMs: number },
    handlers: {
      request(req: IncomingMessage, res: ServerResponse): void;
      checkContinue(req: IncomingMessage, res: ServerResponse): void;
      abuse(session: ServerHttp2Session, detail: string): void;
    },
  ) {
    this.#maxResets = cfg.maxResets;
    this.#windowMs = parseDuration(cfg.resetWindow) ?? 10_000;
    this.#onAbuse = handlers.abuse;
    this.server = createServer({
      settings: { maxConcurrentStreams: cfg.maxConcurrentStreams, enablePush: false, maxHeaderListSize: limits.maxHeaderSize },
      maxSendHeaderBlockLength: 64 * 1024,
    });
    if (limits.idleMs > 0) this.server.setTimeout(limits.idleMs);
    const request = handlers.request;
    const checkContinue = handlers.checkContinue;
    this.server.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => {
      adaptRequest(req);
      request(req as unknown as IncomingMessage, res as unknown as ServerResponse);
    });
    this.server.on('checkContinue', (req: Http2ServerRequest, res: Http2ServerResponse) => {
      adaptRequest(req);
      checkContinue(req as unknown as IncomingMessage, res as unknown as ServerResponse);
    });
    this.server.on('session', (session: ServerHttp2Session) => {
      const s = session as GuardedSession;
      s[kGuard] = { front: this, resets: 0, windowStart: performance.now(), socket: this.#taking };
      this.#sessions.add(session);
      session.once('close', () => this.#sessions.delete(session));
      session.on('error', ignore);
      session.on('stream', onStream);
      // Own property, a module function (no closure): see destroyWithConnectionErrorCode.
      session.destroy = destroyWithConnectionErrorCode;
    });
    this.server.on('timeout', () => {});
  }

  /** A TLS connection that negotiated h2, or a plain one that began with the HTTP/2 preface (h2c, bytes put back). */
  take(socket: TLSSocket | Socket): void {
    this.#taking = socket;
    this.server.emit('connection', socket);
    this.#taking = undefined;
  }

  /** Sessions open now. */
  get sessions(): number {
    return this.#sessions.size;
  }

  /** A stream the client reset before its answer: count it, and close an abuser's connection. */
  reset(session: ServerHttp2Session): void {
    const g = (session as GuardedSession)[kGuard];
    if (g === undefined || session.destroyed) return;
    const now = performance.now();
    if (now - g.windowStart > this.#windowMs) {
      g.windowStart = now;
      g.resets = 0;
    }
    if (++g.resets <= this.#maxResets) return;
    g.front = undefined;
    const detail = `the client reset more than ${this.#maxResets} HTTP/2 streams within ${this.#windowMs} ms (rapid reset, CVE-2023-44487): GOAWAY ENHANCE_YOUR_CALM`;
    this.#onAbuse(session, detail);
    // Out of nghttp2's callback: destroy with a code sends the final GOAWAY with it, then closes.
    setImmediate(destroyCalm, session);
  }

  /** Graceful: GOAWAY to every connection (streams in flight finish). */
  close(): void {
    for (const s of this.#sessions) s.close();
  }

  /** Cut whatever is left. */
  destroy(): void {
    for (const s of this.#sessions) s.destroy();
  }
}

const kGuard = Symbol('gatewise.h2Guard');
interface Guard {
  front: H2Front | undefined;
  resets: number;
  windowStart: number;
  /** The connection itself (session.socket is a proxy that refuses destroy). */
  socket: TLSSocket | Socket | undefined;
}
type GuardedSession = ServerHttp2Session & { [kGuard]?: Guard };

/**
 * The connection under an HTTP/2 session: the TLS socket (or the plain one, h2c) handed to
 * `take`. Not `session.socket`: that is Node's proxy, which throws ERR_HTTP2_SOCKET_UNBOUND
 * on every property read once the client has closed the connection (an exchange reading the
 * byte counts for its record then took the process down).
 */
export function sessionConnection(session: ServerHttp2Session): Socket | undefined {
  return (session as GuardedSession)[kGuard]?.socket as Socket | undefined;
}

function onStream(this: ServerHttp2Session, stream: Http2Stream): void {
  stream.once('aborted', onAborted);
}

/** The client reset the stream before its answer was complete (module function: no closure per stream). */
function onAborted(this: Http2Stream): void {
  const session = this.session as GuardedSession | undefined;
  session?.[kGuard]?.front?.reset(session);
}

function destroyCalm(session: ServerHttp2Session): void {
  // session.socket is Node's proxy, which refuses destroy; the TCP socket under the TLS one is
  // reachable through it (_parent), and closing it ends the connection for certain.
  const socket = (session as GuardedSession)[kGuard]?.socket ?? (session.socket as unknown as { _parent?: { destroy(): void } } | undefined)?._parent;
  session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM);
  // Give the GOAWAY a moment to leave, then cut the connection whatever the client does.
  setTimeout(() => {
    session.destroy();
    socket?.destroy();
  }, 50).unref();
}

function ignore(): void {}

/**
 * RFC 9113 connection errors with their own code, not INTERNAL_ERROR. When nghttp2 finds a
 * connection error (HEADERS on stream 0 or on an even stream id: §5.1.1, §6.2), Node's
 * invalid-frame callback calls `session.destroy(new NghttpError(-505))` before nghttp2 sends
 * its own GOAWAY PROTOCOL_ERROR, and `destroy(err)` without a code closes with INTERNAL_ERROR
 * (h2-conformance.test finding, the same on a bare `http2.createServer()` of Node 20). Node
 * has no option for it; the session's `destroy` is the one place all those calls pass, so
 * the session gets its own `destroy` that gives the library error its RFC code, by the
 * error's number (nghttp2's own `get_error_code_from_lib_error_code` table), then calls
 * Node's. Every other call (a code given, another error) goes through unchanged.
 */
function destroyWithConnectionErrorCode(this: ServerHttp2Session, error?: Error | number, code?: number): void {
  if (code === undefined && typeof error === 'object' && (error as NodeJS.ErrnoException).code === 'ERR_HTTP2_ERROR') {
    code = CONNECTION_ERROR_CODE[(error as NodeJS.ErrnoException).errno ?? 0];
  }
  (Object.getPrototypeOf(this) as ServerHttp2Session).destroy.call(this, error as Error, code);
}

/** nghttp2's library error numbers (`NGHTTP2_ERR_*`) → RFC 9113 §7 error codes. */
const CONNECTION_ERROR_CODE: Record<number, number> = {
  [-505]: constants.NGHTTP2_PROTOCOL_ERROR, // NGHTTP2_ERR_PROTO
  [-531]: constants.NGHTTP2_PROTOCOL_ERROR, // NGHTTP2_ERR_HTTP_HEADER
  [-532]: constants.NGHTTP2_PROTOCOL_ERROR, // NGHTTP2_ERR_HTTP_MESSAGING
  [-510]: constants.NGHTTP2_STREAM_CLOSED, // NGHTTP2_ERR_STREAM_CLOSED
  [-522]: constants.NGHTTP2_FRAME_SIZE_ERROR, // NGHTTP2_ERR_FRAME_SIZE_ERROR
  [-523]: constants.NGHTTP2_COMPRESSION_ERROR, // NGHTTP2_ERR_HEADER_COMP
  [-524]: constants.NGHTTP2_FLOW_CONTROL_ERROR, // NGHTTP2_ERR_FLOW_CONTROL
  [-533]: constants.NGHTTP2_REFUSED_STREAM, // NGHTTP2_ERR_REFUSED_STREAM
};

/**
 * The head as the pipeline reads it: pseudo-headers out of `rawHeaders` (what is forwarded),
 * `:authority` as `Host` when the client sent no Host, cookies joined into one field
 * (RFC 9113 §8.2.3, for an HTTP/1.1 upstream).
 */
export function adaptRequest(req: Http2ServerRequest): void {
  const raw = req.rawHeaders;
  const out: string[] = [];
  let authority: string | undefined;
  let host = false;
  let cookie: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':authority') authority = raw[i + 1];
      continue;
    }
    if (name === 'cookie') {
      cookie = cookie === undefined ? raw[i + 1] : `${cookie}; ${raw[i + 1]}`;
      continue;
    }
    if (name === 'host') host = true;
    out.push(name, raw[i + 1]!);
  }
  if (cookie !== undefined) out.push('cookie', cookie);
  // req.headers keeps its pseudo-headers: Node's compat request reads method, url and authority from them.
  const headers = req.headers as Record<string, string | string[] | undefined>;
  if (!host && authority !== undefined) {
    out.unshift('host', authority);
    headers.host = authority;
  }
  Object.defineProperty(req, 'rawHeaders', { value: out, configurable: true });
}

import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants, createServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type Http2Stream, type ServerHttp2Session } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { parseDuration } from '../config/duration.js';
import { DeadlineEntry, deadlines } from '../timing/deadlines.js';
import type { Http2Config } from '../config/tls.js';
import { CONTINUE_EXPECTATION } from '../http/headers.js';
import { connectionClosedByGateway, type Failure, type Phase } from '../failure/index.js';
import { H2ConnectionClosed, h2ErrorName } from './h2-errors.js';

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
 * counted is every stream Node emitted that closed before its answer and that the gateway
 * did not reset itself (`resetStream`): a stream with its `aborted` flag when Node emits it
 * (HEADERS and RST_STREAM in one read), or its 'aborted' event later. Each stream reaches the
 * pipeline only once the read that brought it is parsed (`startAfterRead`), so one reset in
 * that read is never dialled for; a stream closed before the exchange begins never goes
 * upstream (`Exchange.begin`), nor once it waits for its upstream connection
 * (`Attempt.onConnect`). Streams Node refuses itself (over
 * SETTINGS_MAX_CONCURRENT_STREAMS) are never emitted and cost no request work.
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
    limits: { maxHeaderSize: number; keepAliveMs: number },
    handlers: {
      request(req: IncomingMessage, res: ServerResponse): void;
      checkContinue(req: IncomingMessage, res: ServerResponse): void;
      /** An Expect the gateway cannot meet (anything but 100-continue). */
      expectation(req: IncomingMessage, res: ServerResponse): void;
      abuse(session: ServerHttp2Session, detail: string): void;
      /** A header list (RFC 9113 §6.5.2 measure, `size` bytes) over the listener's maxHeaderSize. */
      tooLarge(req: IncomingMessage, res: ServerResponse, size: number): void;
    },
  ) {
    this.#maxResets = cfg.maxResets;
    this.#windowMs = parseDuration(cfg.resetWindow) ?? 10_000;
    this.#onAbuse = handlers.abuse;
    this.server = createServer({
      settings: { maxConcurrentStreams: cfg.maxConcurrentStreams, enablePush: false, maxHeaderListSize: limits.maxHeaderSize },
      // Node resets a stream with more fields than this itself (ENHANCE_YOUR_CALM, unrecorded;
      // default 128, pseudo-headers and cookie crumbs counted): set past what maxHeaderSize
      // lets through (a field costs more than 32 bytes of the list, so a stream Node refuses
      // by count is over maxHeaderSize anyway), so maxHeaderCount, reloadable, is judged by the
      // exchange (its recorded 431) and a listener allowing more than 128 is honoured
      // (h2-header-size.test finding).
      maxHeaderListPairs: Math.floor(limits.maxHeaderSize / 32) + 1,
      maxSendHeaderBlockLength: 64 * 1024,
    });
    const keepAliveMs = limits.keepAliveMs;
    const request = handlers.request;
    const checkContinue = handlers.checkContinue;
    const expectation = handlers.expectation;
    const maxHeaderSize = limits.maxHeaderSize;
    const tooLarge = handlers.tooLarge;
    const take = (handler: StreamHandler, req: Http2ServerRequest, res: Http2ServerResponse): void => {
      if (refusedForAbuse(req)) return;
      const size = adaptRequest(req);
      req.stream.once('finish', onAnswerSent);
      // SETTINGS_MAX_HEADER_LIST_SIZE binds only once the client acknowledged the SETTINGS
      // (nghttp2's local settings change at the ACK): a client that never does had header lists
      // of up to ~64 KiB forwarded whatever maxHeaderSize said (h2-header-size.test finding).
      // Measured as Node does after the ACK, so the boundary is the same either way.
      if (size > maxHeaderSize) startAfterRead((q, s) => tooLarge(q, s, size), req, res);
      else startAfterRead(handler, req, res);
    };
    this.server.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => take(request, req, res));
    this.server.on('checkContinue', (req: Http2ServerRequest, res: Http2ServerResponse) => take(checkContinue, req, res));
    // Node's Http2Server answers CONNECT (405) and any Expect but exactly `100-continue` (417)
    // itself, bare, when nobody listens: no Proxy-Status, no request id, no record (adversarial
    // review of the h2 front). Both go to the pipeline's own answer path instead, as over
    // HTTP/1.1: CONNECT reaches `request` (the listener refuses it by method, named), and
    // Expect is read by HTTP/1.1's rule (100-continue anywhere in the value, any case, is the
    // continue expectation; anything else the gateway's 417).
    this.server.on('connect', (req: Http2ServerRequest, res: Http2ServerResponse) => take(request, req, res));
    this.server.on('checkExpectation', (req: Http2ServerRequest, res: Http2ServerResponse) => {
      take(CONTINUE_EXPECTATION.test(String(req.headers.expect)) ? checkContinue : expectation, req, res);
    });
    this.server.on('session', (session: ServerHttp2Session) => {
      const s = session as GuardedSession;
      s[kGuard] = { front: this, resets: 0, windowStart: performance.now(), socket: this.#taking, open: 0, keepAliveMs };
      this.#sessions.add(session);
      const taken = this.#taking;
      if (taken !== undefined) this.#bySocket.set(taken, session);
      session.once('close', () => {
        this.#sessions.delete(session);
        if (taken !== undefined) this.#bySocket.delete(taken);
      });
      session.on('error', ignore);
      session.on('stream', onStream);
      // Own property, a module function (no closure): see destroyWithConnectionErrorCode.
      session.destroy = destroyWithConnectionErrorCode;
      closeWhenNghttp2IsDone(session);
      // keepAliveTimeout for HTTP/2: a session with no frame for that long and no stream open
      // is closed with GOAWAY NO_ERROR; one with streams open is left to their timers. On the
      // session with a lasting listener: the server's setTimeout listens once only, so after a
      // first timeout with a stream open the session was never closed.
      if (keepAliveMs > 0) {
        session.setTimeout(keepAliveMs);
        session.on('timeout', onSessionTimeout);
      }
    });
  }

  /** A TLS connection that negotiated h2, or a plain one that began with the HTTP/2 preface (h2c, bytes put back). */
  take(socket: TLSSocket | Socket): void {
    this.#taking = socket;
    this.server.emit('connection', socket);
    this.#taking = undefined;
  }

  /**
   * The connection handed over by `take` got no stream in its first-request time (a connection
   * admitted under pressure, server.ts #admit): its session is closed with GOAWAY NO_ERROR.
   * Never an HTTP/1.1 answer: bytes written under a live session broke its frame stream, and on
   * a TLS connection Node's HTTP/2 binding aborted the process (adversarial review, session 30).
   */
  closeIdle(socket: TLSSocket | Socket): void {
    const session = this.#bySocket.get(socket);
    if (session === undefined) return;
    const g = (session as GuardedSession)[kGuard];
    if (g !== undefined && g.open === 0 && !session.closed && !session.destroyed) session.close();
  }

  /** Each open session by the connection `take` was given (closeIdle: no scan of every session under pressure). */
  readonly #bySocket = new Map<TLSSocket | Socket, ServerHttp2Session>();

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
    // On the next tick: out of Node's stream-close callback (the session destroys its streams,
    // this one among them), but before nghttp2 reads the next frame of the same read (Node
    // drains the tick queue after each callback into JavaScript), so no further stream of
    // the abuser's reaches the pipeline. setImmediate let a whole read's streams through.
    process.nextTick(goawayCalm, session);
  }

  /** Graceful: GOAWAY to every connection (streams in flight finish). */
  close(): void {
    for (const s of this.#sessions) s.close();
  }

  /**
   * Cut whatever is left (the drain timeout passed): every stream still open is reset with
   * INTERNAL_ERROR (Node's `destroy` with an error does so before its GOAWAY), so an answer cut
   * here never looks complete. A bare `destroy()` reset them with NO_ERROR, and a client read
   * the cut body as whole (the HTTP/2 stall hunt, test/gateway/stall-h2.test.ts).
   */
  destroy(): void {
    for (const s of this.#sessions) s.destroy(new H2ConnectionClosed('GATEWISE_H2_DRAIN_TIMEOUT', 'the gateway closed the HTTP/2 connection at shutdown: the drain timeout passed'), constants.NGHTTP2_INTERNAL_ERROR);
  }
}

const kGuard = Symbol('gatewise.h2Guard');
interface Guard {
  front: H2Front | undefined;
  resets: number;
  windowStart: number;
  /** The connection itself (session.socket is a proxy that refuses destroy). */
  socket: TLSSocket | Socket | undefined;
  /** Streams open now (the idle timeout closes only a session without any). */
  open: number;
  /** The listener's keepAliveTimeout (ms). */
  keepAliveMs: number;
  /** Streams the gateway reset that have not closed yet (made at the first watched reset). */
  stuck?: StuckResets;
  /** The session was destroyed: its connection is cut if it is still open a while later. */
  cut?: CutLeft;
  /** The gateway destroyed the session itself, with this error (`destroyWithConnectionErrorCode`): its streams are cut by the gateway. */
  closedBy?: Error & { code: string };
}
type GuardedSession = ServerHttp2Session & { [kGuard]?: Guard };

/**
 * The connection a stream came on: the TLS socket (or the plain one, h2c) handed to `take`.
 * Not `session.socket`: that is Node's proxy, which throws ERR_HTTP2_SOCKET_UNBOUND on every
 * property read once the client has closed the connection (an exchange reading the byte
 * counts for its record then took the process down); and not through `stream.session`,
 * which Node forgets once the stream is destroyed (a stream started after its reset,
 * `startAfterRead`).
 */
export function streamConnection(stream: Http2Stream): Socket | undefined {
  return guardOf(stream)?.socket as Socket | undefined;
}

/** The guard of the session a stream came on: kept on the stream by `onStream`, else read from its session. */
function guardOf(stream: Http2Stream): Guard | undefined {
  return (stream as CountedStream)[kCounted] ?? (stream.session as GuardedSession | undefined)?.[kGuard];
}

type StreamHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** Streams emitted while the current reads are parsed, flat (handler, request, response), started by `startDeferred`. */
let deferred: unknown[] = [];

/**
 * A stream is handed to the pipeline once the read that brought it has been parsed, not at
 * its HEADERS: Node emits the stream from nghttp2's HEADERS callback, before it parses the
 * frames after it in the same read, so a stream whose RST_STREAM came in that read (node:http2's
 * own client writes a request and its reset together; the rapid-reset flood's pairs) was
 * dispatched at once and dialled the upstream, cancelled only when the reset was parsed a
 * moment later (h2-reset-before-dial.test finding: one upstream connection per reset stream).
 * Started on the check phase after the poll phase's reads, the stream is already closed: the
 * exchange records it 499 ended by the client, untried (`Exchange.begin`), as HTTP/1.1 does a
 * client gone before its dial, and a session closed for rapid reset by then has its streams
 * refused. One setImmediate per loop turn for every stream of every session, none per stream.
 */
function startAfterRead(handler: StreamHandler, req: Http2ServerRequest, res: Http2ServerResponse): void {
  if (deferred.length === 0) setImmediate(startDeferred);
  deferred.push(handler, req, res);
}

function startDeferred(): void {
  const batch = deferred;
  deferred = [];
  for (let i = 0; i < batch.length; i += 3) {
    const req = batch[i + 1] as Http2ServerRequest;
    if (refusedForAbuse(req)) continue;
    (batch[i] as StreamHandler)(req as unknown as IncomingMessage, batch[i + 2] as ServerResponse);
  }
}

/** A stream of a connection being closed for rapid reset, emitted before the close: refused, never a request. */
function refusedForAbuse(req: Http2ServerRequest): boolean {
  const g = guardOf(req.stream);
  if (g === undefined || g.front !== undefined) return false;
  resetStream(req.stream, constants.NGHTTP2_REFUSED_STREAM);
  return true;
}

function onStream(this: ServerHttp2Session, stream: Http2Stream): void {
  const g = (this as GuardedSession)[kGuard];
  if (g !== undefined) {
    g.open++;
    (stream as CountedStream)[kCounted] = g;
    stream.once('close', onStreamClose);
  }
  // HEADERS and RST_STREAM read together: Node closed the stream before it emitted it, so its
  // 'aborted' is past (h2-rapid-reset.test finding: such resets were never counted).
  if (stream.aborted) {
    noteClientReset(stream, this);
    clientReset(stream, this);
  } else stream.once('aborted', onAborted);
}

const kCounted = Symbol('gatewise.h2Counted');
type CountedStream = Http2Stream & { [kCounted]?: Guard };

function onStreamClose(this: Http2Stream): void {
  const g = (this as CountedStream)[kCounted];
  if (g === undefined) return;
  g.open--;
  if ((this as WatchedStream)[kWatched] === true) g.stuck?.closed();
}

/**
 * No frame for keepAliveTimeout. Idle (no stream open): closed gracefully, GOAWAY NO_ERROR, as
 * an HTTP/1.1 connection is after its keep-alive timeout. With streams open, a slow upstream or
 * a long poll is not cut here: the request's own timers bound it. (Node destroys a session
 * whose timeout nobody handles, streams and all; before this, a no-op handler kept idle
 * sessions open for ever.) Runs again after the next quiet spell: frames refresh the timer.
 */
function onSessionTimeout(this: ServerHttp2Session): void {
  const g = (this as GuardedSession)[kGuard];
  if (this.closed || this.destroyed || (g !== undefined && g.open > 0)) return;
  this.close();
  if (g !== undefined && !this.destroyed) new IdleClose(this, g);
}

/**
 * A session closed at its idle timeout that is still there a keepAliveTimeout later, with no
 * stream the gateway knows of, is destroyed. `close()` waits for nghttp2 to be done with every
 * stream, and nghttp2 counts a stream whose header block never ended (HEADERS without
 * END_HEADERS, the CONTINUATION never sent): Node emits no stream for it and has nothing to
 * time it, the session's timer fires once per quiet spell, so such a connection was held for
 * ever (the HTTP/2 stall hunt, test/gateway/stall-h2.test.ts). One entry on the deadline list
 * per idle close, never per stream; streams the gateway runs keep their own timers and are
 * waited for.
 */
class IdleClose extends DeadlineEntry {
  readonly #session: ServerHttp2Session;
  readonly #guard: Guard;

  constructor(session: ServerHttp2Session, guard: Guard) {
    super();
    this.#session = session;
    this.#guard = guard;
    deadlines.add(this, performance.now(), guard.keepAliveMs);
  }

  deadlineReached(now: number): void {
    const session = this.#session;
    if (session.destroyed) return;
    if (this.#guard.open > 0) {
      deadlines.add(this, now, this.#guard.keepAliveMs);
      return;
    }
    session.destroy();
  }
}

/**
 * The answer is sent whole (the stream's 'finish': its END_STREAM taken by nghttp2; the compat
 * response's own 'finish' comes only with the stream's close): a stream whose request the client has
 * not ended (a body cut short, a refusal or an early answer before the body was read) is
 * closed with RST_STREAM NO_ERROR, as RFC 9113 §8.1 lets a server that has answered ask the
 * client to stop sending. Node leaves such a stream half-closed, open until the client ends its
 * side: a client that never did held the stream, the request's in-flight count (the drain waits
 * for it) and its record for ever, and kept the session from its idle close (the HTTP/2 stall
 * hunt, test/gateway/stall-h2.test.ts: a 408 for a body that stopped, a 200 the upstream gave
 * before the body). Module function: no closure per stream.
 */
function onAnswerSent(this: Http2Stream): void {
  // Only when the client's side is still open: a stream both sides ended needs no frame more.
  if (!this.closed && !this.destroyed && this.state.remoteClose === 0) resetStream(this, constants.NGHTTP2_NO_ERROR);
}

/** The stream closed before its answer was complete (module function: no closure per stream). */
function onAborted(this: Http2Stream): void {
  const session = this.session as ServerHttp2Session | undefined;
  noteClientReset(this, session);
  clientReset(this, session);
}

const kClosedBy = Symbol('gatewise.h2ClosedBy');
type NotedStream = Http2Stream & { [kClosedBy]?: 'stream' | 'connection' };

/**
 * How a stream closed before its answer, noted when it happens, since the stream's `rstCode`
 * cannot tell: the client's own RST_STREAM, whatever its code, arrives while the connection
 * is there ('stream'); when the connection goes, Node closes each of its streams with CANCEL
 * (its socket's 'close') ('connection'). A client may reset with NO_ERROR (RFC 9113 §8.1):
 * such a reset was recorded as the connection closed, and a closed connection as "RST_STREAM
 * CANCEL" (test/gateway/h2-client-reset.test.ts). A stream of a session destroyed first (the
 * gateway's own close, a GOAWAY with an error) is not noted.
 */
function noteClientReset(stream: Http2Stream, session: ServerHttp2Session | undefined): void {
  if ((stream as MarkedStream)[kOwnReset] === true || session === undefined || session.destroyed) return;
  const socket = (session as GuardedSession)[kGuard]?.socket;
  if (socket === undefined) return;
  (stream as NotedStream)[kClosedBy] = socket.destroyed ? 'connection' : 'stream';
}

/** How the client closed this stream before its answer: its own RST_STREAM ('stream'), its connection gone ('connection'), or not known. */
export function closedByClient(stream: Http2Stream): 'stream' | 'connection' | undefined {
  return (stream as NotedStream)[kClosedBy];
}

const kOwnReset = Symbol('gatewise.h2OwnReset');
type MarkedStream = Http2Stream & { [kOwnReset]?: true };

/** A stream closed before its answer: counted unless the gateway reset it itself (`resetStream`). */
function clientReset(stream: Http2Stream, session: ServerHttp2Session | undefined): void {
  if ((stream as MarkedStream)[kOwnReset] === true || session === undefined) return;
  (session as GuardedSession)[kGuard]?.front?.reset(session);
}

/**
 * The gateway resets a stream itself (a body cut upstream): RST_STREAM with `code`. Marked so
 * the rapid-reset count, which sees every stream closed before its answer, leaves it out.
 * `watchMs` (the listener's send timeout; 0: none): the stream must be closed by then, or its
 * connection is cut (`StuckResets`).
 */
export function resetStream(stream: Http2Stream, code: number, watchMs = 0): void {
  (stream as MarkedStream)[kOwnReset] = true;
  stream.close(code);
  if (watchMs <= 0 || stream.destroyed) return;
  const g = (stream.session as GuardedSession | undefined)?.[kGuard];
  // Only streams counted open (onStream): their 'close' takes them out of the watch again.
  if (g === undefined || (stream as CountedStream)[kCounted] !== g || (stream as WatchedStream)[kWatched] === true) return;
  (stream as WatchedStream)[kWatched] = true;
  (g.stuck ??= new StuckResets(stream.session as ServerHttp2Session, g)).watch(watchMs);
}

const kWatched = Symbol('gatewise.h2ResetWatched');
type WatchedStream = Http2Stream & { [kWatched]?: true };

/**
 * Streams of one session that the gateway reset and whose close has not come. A stream closes
 * once its RST_STREAM is written; a client that stopped reading TCP altogether (the
 * connection's socket buffers full) takes no frame any more, so the stream of a send timeout
 * was reset and never closed: the request's in-flight count and its record (written at the
 * close) were held for ever, and so were the session and its other streams (the HTTP/2 stall
 * hunt, second round: test/gateway/stall-h2-client.test.ts). Such a stream still open a
 * `watchMs` later, with not one byte more written on the connection meanwhile, means the
 * connection takes nothing: the session is destroyed (INTERNAL_ERROR), which closes all its
 * streams. Bytes still moving: waited for again. One deadline entry per session, made at the
 * first such reset, never per stream.
 */
class StuckResets extends DeadlineEntry {
  readonly #session: ServerHttp2Session;
  readonly #guard: Guard;
  /** Watched streams not closed yet. */
  open = 0;
  #ms = 0;
  #written = 0;

  constructor(session: ServerHttp2Session, guard: Guard) {
    super();
    this.#session = session;
    this.#guard = guard;
  }

  watch(ms: number): void {
    this.open++;
    if (!Number.isNaN(this.deadlineAt)) return; // armed: the first reset's wait covers this one
    this.#ms = ms;
    this.#written = this.#guard.socket?.bytesWritten ?? 0;
    deadlines.add(this, performance.now(), ms);
  }

  closed(): void {
    if (--this.open === 0) deadlines.remove(this);
  }

  deadlineReached(now: number): void {
    const session = this.#session;
    if (session.destroyed || this.open === 0) return;
    const written = this.#guard.socket?.bytesWritten ?? 0;
    if (written !== this.#written) {
      this.#written = written;
      deadlines.add(this, now, this.#ms);
      return;
    }
    session.destroy(new H2ConnectionClosed('GATEWISE_H2_SEND_TIMEOUT', `the gateway closed the HTTP/2 connection: it took nothing for ${this.#ms} ms, not even the RST_STREAM of a reset stream (send timeout)`), constants.NGHTTP2_INTERNAL_ERROR);
    // Node's destroy waits for the write in progress, then ends the socket and waits for that
    // end to be written: neither ever happens on a connection that takes nothing (found: the
    // streams were closed and recorded, the session stayed). The connection itself is cut.
    const socket = this.#guard.socket;
    if (socket !== undefined && !socket.destroyed) socket.destroy();
  }
}

/**
 * The first step, on the next tick (still inside the read, before nghttp2 parses its next
 * frame): GOAWAY ENHANCE_YOUR_CALM submitted, so nghttp2 takes no stream above the last one
 * it saw, and streams emitted meanwhile are refused (the guard is off: see the 'request'
 * handler). Not `destroy` here: called from inside nghttp2's send (a stream closing as its
 * frame is written), Node's destroy found the session "sending", skipped writing, and the
 * client saw the connection close without the GOAWAY (h2-rapid-reset.test finding, TLS).
 */
function goawayCalm(session: ServerHttp2Session): void {
  if (session.destroyed) return;
  session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM);
  setImmediate(closeCalm, session);
}

/**
 * Then, out of every nghttp2 callback: `destroy(err, code)` sends its own GOAWAY with the
 * same code (a bare `destroy()` sent a second one with NO_ERROR) and ends the socket once
 * written; a client that does not read could hold that end, so the connection is cut a
 * second later whatever it does (every destroy passes `cutWhenLeft`).
 */
function closeCalm(session: ServerHttp2Session): void {
  if (!session.destroyed) session.destroy(new H2ConnectionClosed('GATEWISE_H2_RAPID_RESET', 'the gateway closed the HTTP/2 connection for rapid reset (CVE-2023-44487): GOAWAY ENHANCE_YOUR_CALM'), constants.NGHTTP2_ENHANCE_YOUR_CALM);
}

function ignore(): void {}

/**
 * RFC 9113 §5.4.1: after the GOAWAY of a connection error the endpoint MUST close the TCP
 * connection. For the errors nghttp2 handles alone (a frame over SETTINGS_MAX_FRAME_SIZE:
 * nghttp2 sends GOAWAY FRAME_SIZE_ERROR by itself) Node emits nothing to JavaScript and only
 * stops reading (`Http2Session::MaybeStopReading`), so the connection stayed open until the
 * client left (h2-conformance.test finding). Node 20.19+ has the one native signal for it:
 * with the session's graceful-close flag set, the native session calls
 * `ongracefulclosecomplete` once nghttp2 wants neither to read nor to write and nothing is
 * pending (`MaybeNotifyGracefulCloseComplete`, made for `session.close()`). The flag is set
 * here at the start, and the callback destroys the session: the GOAWAY is written by then, and
 * `destroy` adds no second one (nghttp2 ignores a terminate after its own). The same state is
 * reached when a GOAWAY was sent or received and no stream is left, where closing is right
 * too. A session being closed (`close()`, shutdown) keeps Node's own callback; one closed for
 * rapid reset keeps its own two-step close (`closeCalm`). The handle is Node's internal
 * (`kHandle`, found by its description once): where it or the method is missing (an older
 * Node), nothing changes and such a connection closes at its idle timeout instead.
 */
function closeWhenNghttp2IsDone(session: ServerHttp2Session): void {
  const handle = nativeHandle(session);
  if (handle === undefined) return;
  const nodeOwn = handle.ongracefulclosecomplete;
  handle.setGracefulClose();
  handle.ongracefulclosecomplete = function onNghttp2Done(): void {
    if (session.closed || session.destroyed) {
      nodeOwn?.();
      return;
    }
    if ((session as GuardedSession)[kGuard]?.front === undefined) return; // rapid reset: closeCalm
    session.destroy();
  };
}

interface NativeSession {
  setGracefulClose(): void;
  ongracefulclosecomplete?: () => void;
}
let kHandle: symbol | null | undefined;
function nativeHandle(session: ServerHttp2Session): NativeSession | undefined {
  if (kHandle === undefined) kHandle = Object.getOwnPropertySymbols(session).find((k) => k.description === 'kHandle') ?? null;
  if (kHandle === null) return undefined;
  const h = (session as unknown as Record<symbol, Partial<NativeSession> | undefined>)[kHandle];
  return typeof h?.setGracefulClose === 'function' ? (h as NativeSession) : undefined;
}

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
  const protocol = error instanceof Error && (error as NodeJS.ErrnoException).code === 'ERR_HTTP2_ERROR';
  if (code === undefined && protocol) code = CONNECTION_ERROR_CODE[(error as NodeJS.ErrnoException).errno ?? 0];
  noteGatewayClose(this, error, protocol ? (code ?? constants.NGHTTP2_INTERNAL_ERROR) : undefined);
  (Object.getPrototypeOf(this) as ServerHttp2Session).destroy.call(this, error as Error, code);
  cutWhenLeft(this);
}

/**
 * Noted before Node's destroy closes the streams (their records are written after): the
 * gateway's own closes (`H2ConnectionClosed`), and a connection error nghttp2 found in the
 * client's frames (`ERR_HTTP2_ERROR`, closed with its RFC 9113 code). Every other destroy is
 * the client's doing (its connection gone, reset, or a GOAWAY with an error) and is not noted.
 * The first one counts.
 */
function noteGatewayClose(session: ServerHttp2Session, error: Error | number | undefined, protocolCode: number | undefined): void {
  const g = (session as GuardedSession)[kGuard];
  if (g === undefined || g.closedBy !== undefined || session.destroyed) return;
  if (error instanceof H2ConnectionClosed) g.closedBy = error;
  else if (error instanceof Error && protocolCode !== undefined) {
    g.closedBy = Object.assign(new Error(`the gateway closed the HTTP/2 connection with GOAWAY ${h2ErrorName(protocolCode)}: a connection error in the frames it received`), { code: 'ERR_HTTP2_ERROR' });
  }
}

/**
 * A stream the gateway cut by closing its connection itself (`noteGatewayClose`): the failure
 * it ends with, in the phase its request had reached; undefined when the client closed it (its
 * own RST_STREAM or its connection gone, noted first) or the connection was not closed by the gateway.
 */
export function gatewayCut(stream: Http2Stream, phase: Phase): Failure | undefined {
  if (closedByClient(stream) !== undefined) return undefined;
  const e = guardOf(stream)?.closedBy;
  return e === undefined ? undefined : connectionClosedByGateway(e.code, phase, e.message);
}


/**
 * Node's `destroy` closes the connection only once the write in progress is done, then ends
 * the socket and waits for that end to be written: on a connection the client no longer reads
 * (its socket buffers full) neither ever happens, and the destroyed session and its connection
 * stayed for ever. Found at the graceful drain: the drain timeout destroyed the sessions, and
 * `close()` never resolved while such a client stayed (the HTTP/2 stall hunt, second round:
 * test/gateway/stall-h2-client.test.ts). Every destroy passes here: a connection still open
 * `CUT_AFTER_DESTROY_MS` later is cut. One deadline entry per destroyed session; a connection
 * that takes its last frames is closed long before and the entry finds nothing to do.
 */
function cutWhenLeft(session: ServerHttp2Session): void {
  const g = (session as GuardedSession)[kGuard];
  const socket = g?.socket;
  if (g === undefined || socket === undefined || socket.destroyed || g.cut !== undefined) return;
  g.cut = new CutLeft(socket);
}

/** As long as the rapid-reset close gives an abuser's connection to take its GOAWAY (closeCalm). */
const CUT_AFTER_DESTROY_MS = 1000;

class CutLeft extends DeadlineEntry {
  readonly #socket: TLSSocket | Socket;

  constructor(socket: TLSSocket | Socket) {
    super();
    this.#socket = socket;
    deadlines.add(this, performance.now(), CUT_AFTER_DESTROY_MS);
  }

  deadlineReached(): void {
    if (!this.#socket.destroyed) this.#socket.destroy();
  }
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
  // Floods: the client's load is refused, the gateway did not fail (INTERNAL_ERROR said so before).
  [-904]: constants.NGHTTP2_ENHANCE_YOUR_CALM, // NGHTTP2_ERR_FLOODED (PING, SETTINGS, RST_STREAM acknowledgements unread)
  [-905]: constants.NGHTTP2_ENHANCE_YOUR_CALM, // NGHTTP2_ERR_TOO_MANY_CONTINUATIONS (CVE-2024-27316's class)
};

/**
 * The head as the pipeline reads it: pseudo-headers out of `rawHeaders` (what is forwarded),
 * `:authority` as `Host` when the client sent no Host, cookies joined into one field
 * (RFC 9113 §8.2.3, for an HTTP/1.1 upstream). Returns the size of the header list as
 * received, by RFC 9113 §6.5.2's measure (name + value + 32 octets per field, pseudo-headers
 * and every cookie crumb included: what Node compares with SETTINGS_MAX_HEADER_LIST_SIZE).
 */
export function adaptRequest(req: Http2ServerRequest): number {
  const raw = req.rawHeaders;
  const out: string[] = [];
  let authority: string | undefined;
  let cookie: string | undefined;
  let size = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    size += name.length + raw[i + 1]!.length + 32;
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':authority') authority = raw[i + 1];
      continue;
    }
    if (name === 'cookie') {
      cookie = cookie === undefined ? raw[i + 1] : `${cookie}; ${raw[i + 1]}`;
      continue;
    }
    // RFC 9113 §8.3.1: with :authority, the Host an intermediary sends is :authority's; a Host
    // field of another value routed and went upstream before (adversarial review, session 30).
    // Pseudo-headers come before every field (nghttp2 refuses a block where they do not), so
    // :authority is known by now.
    if (name === 'host' && authority !== undefined) continue;
    out.push(name, raw[i + 1]!);
  }
  if (cookie !== undefined) out.push('cookie', cookie);
  // req.headers keeps its pseudo-headers: Node's compat request reads method, url and authority from them.
  const headers = req.headers as Record<string, string | string[] | undefined>;
  if (authority !== undefined) {
    out.unshift('host', authority);
    headers.host = authority;
  }
  Object.defineProperty(req, 'rawHeaders', { value: out, configurable: true });
  // CONNECT has no :path: its target is :authority (RFC 9113 §8.5), as HTTP/1.1's is in
  // authority-form, so its refusal is recorded with the same path over both.
  if (authority !== undefined && req.method === 'CONNECT' && req.url === undefined) Object.defineProperty(req, 'url', { value: authority, configurable: true });
  return size;
}

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { CLIENT_CLOSED_STATUS, Failure, connectionCut, expectationFailed, parserRefusal, type EndedBy } from '../failure/index.js';
import { DeadlineEntry, deadlines } from '../timing/deadlines.js';
import { handshakeLeft } from '../http/connection-gate.js';
import { headBegun } from '../http/read-hold.js';
import { NOT_STARTED_AFTER_CLOSE, closeAfter, closingAfterAnswer } from '../http/connection-order.js';
import { bodyCutShortAtEof } from '../http/client-body.js';
import { connectFramingProblem, versionFramingProblem } from '../http/framing.js';
import { refusalAccept, refusalHead, withholdKeepAliveHint, type ParserRefusalError } from '../http/headers.js';
import { newRequestId, type ForwardContext, clientAddressFor } from './context.js';
import { parseConnectHead } from './connect-head.js';
import { kHeadTimer, type HeadDue } from './head-deadline.js';
import { HttpConnectFront } from './http-connect-front.js';
import { sendFailure, writeRawFailure } from './http-failure.js';
import { HttpProxyFront } from './http-proxy-front.js';
import { OrderedRequest } from './ordered-request.js';
import type { ForwardPipeline } from './pipeline.js';
import { cutFields } from './record-fields.js';

/** The early bytes of a CONNECT that sent none (never written to). */
const NO_BYTES = Buffer.alloc(0);

const kBusy = Symbol('gatewise.busy');
/**
 * The head timer lives on the socket itself (one deadline per connection on the process
 * list, re-armed at each response's end), not in a WeakMap: a WeakMap entry keyed by a young socket makes V8 keep
 * everything reachable from it through every scavenge, which promoted whole requests
 * into the old generation and cost 10 ms scavenges under load.
 */
/** kBusy: requests of the connection whose responses have not finished. */
type TimedSocket = Socket & { [kHeadTimer]?: HeadTimer; [kBusy]?: number };

type ParserError = ParserRefusalError & { bytesParsed?: number };

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
      // Also turns node:http's headersTimeout off (its default is min(60 s, requestTimeout)), and
      // with it node:http's connection checks: HeadTimer below is the front's only head timer,
      // and it never runs while a request of the connection is unanswered, so a connection the
      // front stopped reading (http/read-hold.ts) is never timed out for the head it holds.
      requestTimeout: 0,
      insecureHTTPParser: false,
      joinDuplicateHeaders: false,
    });
    // Node drops header lines past maxHeadersCount without a word: let one more through, so
    // that a head over the limit is seen (and refused 431) rather than cut.
    this.#server.maxHeadersCount = s.maxHeaderCount + 1;
    const proxy = new HttpProxyFront(pipeline);
    const connect = new HttpConnectFront(pipeline);
    this.#connect = connect;
    const maxFields = s.maxHeaderCount;
    // A reload that changes clientKeepAlive makes a new front (forward-proxy.ts `frontKey`).
    const keepAliveMs = s.clientKeepAliveMs;
    const start = (req: IncomingMessage, res: ServerResponse): void => proxy.handle(req, res);
    const dropped = (req: IncomingMessage, clientAddress: string | undefined, afterClosingAnswer: boolean): void => this.#neverStarted(req, clientAddress, afterClosingAnswer);
    // One listener function per front (not per request): it reads whether the proxy drains.
    const onResFinish = function (this: ServerResponse): void {
      responseFinished(this.req.socket as TimedSocket, ctx);
    };
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
      stopHeadTimer(req.socket);
      // A request read while the proxy drains is served, and its connection closed after it.
      if (ctx.draining) res.shouldKeepAlive = false;
      withholdKeepAliveHint(res, keepAliveMs);
      res.once('finish', onResFinish);
      if (req.rawHeaders.length > 2 * maxFields) return this.#tooManyFields(req, res);
      // HTTP/1.0 with Transfer-Encoding: faulty framing, refused and closed (http/framing.ts); one compare for HTTP/1.1.
      if (req.httpVersionMinor === 0) {
        const framing = versionFramingProblem(req.httpVersion, req.headers['transfer-encoding'] !== undefined);
        if (framing !== undefined) return this.#refuseRequest(req, res, parserRefusal(framing), false, true);
      }
      // Pipelined requests start in an order that is safe (RFC 9112 §9.3.2).
      OrderedRequest.admit(req, res, start, dropped);
    };
    this.#server.on('request', onRequest);
    // `Expect: 100-continue`: never answered 100 by Node itself; the relay passes on the
    // destination's 100 (or its final answer), refusals answer at once (http-relay.ts).
    this.#server.on('checkContinue', onRequest);
    // Any other expectation: the proxy's own 417 with Proxy-Status and a record. Node's bare one
    // had neither, and left the head timer running, so a 408 followed it on a kept connection.
    this.#server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
      stopHeadTimer(req.socket);
      withholdKeepAliveHint(res, keepAliveMs);
      res.once('finish', onResFinish);
      this.#refuseRequest(req, res, expectationFailed(req.headers.expect), false);
    });
    this.#server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      stopHeadTimer(socket);
      if (req.rawHeaders.length > 2 * maxFields) return this.#refuseRaw(socket, tooManyFields(maxFields), 'client');
      // A CONNECT with content framing (the fast path hands every such head here): refused, closed (http/framing.ts).
      const framing = connectFramingProblem(req.headers['content-length'], req.headers['transfer-encoding']);
      if (framing !== undefined) {
        socket.resume(); // read (and drop) the would-be content, so the client's close is seen
        return this.#refuseRaw(socket, parserRefusal(framing), 'client', 'CONNECT');
      }
      connect.handle({ url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders }, socket, head);
    });
    this.#server.on('clientError', (err: ParserError, socket: Socket) => this.#clientError(err, socket));
  }

  /** Take over a connection whose first bytes are `first`. */
  accept(socket: Socket, first: Buffer): void {
    if (first[0] === 0x43) {
      // 'C': most likely a CONNECT whose whole head came in the first read.
      const head = parseConnectHead(first, this.#ctx.settings.maxHeaderSize);
      if (head !== undefined && head.fields <= this.#ctx.settings.maxHeaderCount) {
        // Most CONNECTs send nothing behind the head: no Buffer view for an empty rest.
        this.#connect.handle(head, socket, head.length === first.length ? NO_BYTES : first.subarray(head.length));
        return;
      }
    }
    // A node:http connection from here on: no request of it unanswered yet (close() reads it, `idleHttpConnection`).
    (socket as TimedSocket)[kBusy] = 0;
    const limit = this.#ctx.settings.handshakeTimeoutMs;
    // `handshake: "0s"`: no limit on the request head (Node's keepAliveTimeout still ends idle connections).
    if (limit > 0) {
      // The first head: what is left of the handshake time since the connection was accepted
      // (shorter under pressure); the keep-alive time is only for the waits between requests.
      const timer = new HeadTimer(this, socket as TimedSocket, limit + this.#ctx.settings.clientKeepAliveMs);
      (socket as TimedSocket)[kHeadTimer] = timer;
      timer.arm(performance.now(), handshakeLeft(socket, limit));
      socket.once('close', onSocketClose);
    }
    this.#server.emit('connection', socket);
    // Node's parser reads the socket handle directly from now on; feed it what we already read.
    socket.emit('data', first);
  }

  /** A connection refused at a listener limit: 503 with Retry-After, recorded, closed. */
  refuseConnection(socket: Socket, _first: Buffer, f: Failure): void {
    this.#refuseRaw(socket, f, 'gateway');
  }

  /** Answer `f` on the raw socket, record it, close. */
  #refuseRaw(socket: Socket, f: Failure, endedBy: EndedBy, method?: string): void {
    const requestId = newRequestId();
    const session = this.#ctx.meter.open({ protocol: 'http', requestId, user: null, clientAddress: clientAddressFor(this.#ctx, socket) });
    writeRawFailure(this.#ctx, socket, f, requestId, undefined);
    session.finish({ status: f.status, error: f.type, reason: f.reason, phase: f.phase, method, refused: true, endedBy, detail: f.detail });
  }

  /**
   * A pipelined request whose client left while it waited for its turn: never forwarded,
   * recorded as ended by the client (as the reverse gateway records its own), so every
   * request the client sent has its line. One behind an answer that ends the connection
   * (`afterClosingAnswer`: read to its close, or a refusal that closes) could never be
   * answered: never forwarded either, recorded as the proxy's decision, with no status.
   */
  #neverStarted(req: IncomingMessage, clientAddress: string | undefined, afterClosingAnswer: boolean): void {
    const ctx = this.#ctx;
    const session = ctx.meter.open({ protocol: 'http', requestId: newRequestId(), user: null, clientAddress: ctx.recordsObserved() ? clientAddress : undefined });
    if (afterClosingAnswer) return void session.finish({ phase: 'accept', method: req.method, endedBy: 'gateway', detail: NOT_STARTED_AFTER_CLOSE });
    // Its connection cut by close() at the drain timeout (its client had not left first): the proxy's doing.
    const cut = connectionCut(ctx.cut, req.socket, 'accept');
    if (cut !== undefined) return void session.finish(cutFields(cut, { status: cut.status, method: req.method }, 'this pipelined request had not had its turn, and was not forwarded'));
    session.finish({ status: CLIENT_CLOSED_STATUS, phase: 'accept', method: req.method, endedBy: 'client', detail: 'the client closed its connection before this pipelined request had its turn; not forwarded' });
  }

  /** A request with more header lines than the listener takes: 431, recorded, the connection closed. */
  #tooManyFields(req: IncomingMessage, res: ServerResponse): void {
    this.#refuseRequest(req, res, tooManyFields(this.#ctx.settings.maxHeaderCount), true);
  }

  /** A request the front refuses before the pipeline (its head judged alone): answered, recorded once. */
  #refuseRequest(req: IncomingMessage, res: ServerResponse, f: Failure, close: boolean, framing = false): void {
    const requestId = newRequestId();
    const session = this.#ctx.meter.open({ protocol: 'http', requestId, user: null, clientAddress: clientAddressFor(this.#ctx, req.socket) });
    // Its framing is faulty: its body is not read (it cannot be trusted to end where the next
    // request begins), nothing behind it is parsed, and the connection closes after the answer.
    if (framing) {
      req.socket.pause();
      closeAfter(req.socket);
      res.shouldKeepAlive = false;
    } else req.resume();
    sendFailure(this.#ctx, req, res, f, requestId, close || framing);
    session.finish({ status: f.status, error: f.type, reason: f.reason, phase: f.phase, method: req.method, refused: true, endedBy: f.source });
  }

  /**
   * A request head did not arrive in time. Part of one arrived (always for the first
   * head, whose first bytes were sniffed): 408 `request_timeout` with Proxy-Status and a
   * request id, logged; nothing since the last response (an idle keep-alive connection):
   * closed without a word.
   */
  headTimedOut(socket: Socket, partial: boolean): void {
    if (!partial || !socket.writable) {
      socket.destroy();
      return;
    }
    this.#refuseRaw(socket, parserRefusal('HPE_HEADERS_TIMEOUT'), 'client');
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
    // The client closed or half-closed (EOF) in the middle of a request's body: the parser
    // reports the body cut short, but that request is already on its way and its own record
    // says the client ended it (499). No second record, no answer: the connection is done.
    if (bodyCutShortAtEof(code, socket)) {
      socket.destroy();
      return;
    }
    // Bytes behind a request refused for its framing (its answer says close): not a request.
    if (closingAfterAnswer(socket)) return;
    const f = parserRefusal(code);
    const requestId = newRequestId();
    const session = this.#ctx.meter.open({ protocol: 'http', requestId, user: null, clientAddress: clientAddressFor(this.#ctx, socket) });
    writeRawFailure(this.#ctx, socket, f, requestId, refusalAccept(err), undefined, refusalHead(err));
    session.finish({ status: f.status, error: f.type, reason: f.reason, phase: f.phase, refused: true, endedBy: f.source });
  }

  close(): void {
    this.#server.close();
    this.#server.closeAllConnections?.();
  }
}

function tooManyFields(max: number): Failure {
  return new Failure({ type: 'http_request_error', phase: 'accept', reason: 'header_fields_too_large', detail: `more than ${max} request header lines` });
}

/**
 * Whether `socket` is a connection of an HTTP front between requests (keep-alive: every
 * request answered, no head begun): close() closes it at once rather than wait for the drain
 * timeout. False for any other socket (a tunnel, SOCKS, a CONNECT read by the fast path).
 */
export function idleHttpConnection(socket: Socket): boolean {
  return (socket as TimedSocket)[kBusy] === 0 && !headBegun(socket);
}

/**
 * A request head arrived: the connection is busy until its response has finished. A head that
 * came while another request was unanswered (pipelined) ran under no head time: its password
 * check has none to keep either (head-deadline.ts).
 */
function stopHeadTimer(socket: Socket): void {
  const s = socket as TimedSocket;
  const busy = (s[kBusy] ?? 0) + 1;
  s[kBusy] = busy;
  if (busy > 1) {
    const timer = s[kHeadTimer];
    if (timer !== undefined) timer.dueAt = Infinity;
  }
}

/**
 * A response finished: the next request head must arrive in time again once no request of the
 * connection is left; or, while the proxy drains (close(), forward-proxy.ts `drain`), the
 * connection has just gone idle and is closed, as the drain closed the idle ones at its start
 * (after what was written; a pipelined head begun keeps it, that request is served and its
 * answer says `Connection: close`). Heard here rather than found by looking at every
 * connection again every few milliseconds.
 */
function responseFinished(socket: TimedSocket, ctx: ForwardContext): void {
  if (socket.destroyed) return;
  const busy = (socket[kBusy] ?? 1) - 1;
  socket[kBusy] = busy;
  if (busy !== 0) return;
  if (ctx.draining && !headBegun(socket)) socket.destroySoon();
  else socket[kHeadTimer]?.rearm();
}

/**
 * The wait for a request head: the first within the connection's handshake time, each
 * later one within `clientKeepAlive + handshake` of the previous response's end.
 */
class HeadTimer extends DeadlineEntry implements HeadDue {
  readonly #front: HttpFront;
  /**
   * When the current wait for a head ends (kept after the entry fires or the head comes, unlike
   * `deadlineAt`): the proxy's password check of the head read in it must answer by then
   * (head-deadline.ts, pipeline.ts `CheckDeadline`).
   */
  dueAt = Infinity;
  readonly #socket: TimedSocket;
  readonly #laterMs: number;
  /** Bytes read from the client when the wait started (-1: the first head, already begun). */
  #readAtStart = -1;

  constructor(front: HttpFront, socket: TimedSocket, laterMs: number) {
    super();
    this.#front = front;
    this.#socket = socket;
    this.#laterMs = laterMs;
  }

  arm(now: number, ms: number): void {
    this.dueAt = now + ms;
    deadlines.add(this, now, ms);
  }

  rearm(): void {
    this.#readAtStart = this.#socket.bytesRead;
    this.arm(performance.now(), this.#laterMs);
  }

  deadlineReached(): void {
    const socket = this.#socket;
    if (socket[kBusy] || socket.destroyed) return;
    // Part of a head arrived: since the wait began, or before it (pipelined behind the last
    // request, or read before the connection was held), which the byte count alone missed and
    // closed such a connection without a word, as an idle one.
    this.#front.headTimedOut(socket, this.#readAtStart < 0 || socket.bytesRead > this.#readAtStart || headBegun(socket));
  }

  cancel(): void {
    deadlines.remove(this);
  }
}

function onSocketClose(this: TimedSocket): void {
  this[kHeadTimer]?.cancel();
}

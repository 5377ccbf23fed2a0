import { EventEmitter } from 'node:events';
import { STATUS_CODES } from 'node:http';
import { Server as NetServer, type Socket } from 'node:net';
import { CONTINUE_EXPECTATION, acceptInRawHead, keepAliveLines, type ParserRefusalError } from '../http/headers.js';
import { ChunkedDecoder, HEAD_DONE, NEED_MORE, RequestHeadParser, headersObject, type ParsedHead } from '../http/request-head.js';
import { MAX_PIPELINED_RUNNING, MAX_PIPELINED_WAITING } from '../http/pipelining.js';
import { BAD_VALUE_RE, TOKEN_RE, nameIs } from '../http/token.js';
import { CLOSE_LINGER_MS, DeadlineEntry, deadlines, destroyAfter } from '../timing/deadlines.js';

/**
 * The `net` front of a reverse listener (`listeners[].front: net`, issue 17): HTTP/1.1 on
 * node:net sockets instead of node:http. It emits the events the gateway already listens
 * for on an http.Server ('request', 'checkContinue', 'checkExpectation', 'upgrade',
 * 'connect', 'clientError'), so src/gateway/server.ts wires both fronts the same way, and
 * hands the exchange a request and a response that have the part of IncomingMessage /
 * ServerResponse the pipeline uses (`FrontRequest` / `FrontResponse` below) and no more.
 *
 * What it does instead of Node: one strict parser (src/http/request-head.ts) whose errors
 * carry llhttp's codes (so parser errors are answered by the one responder with the same
 * statuses); a response head built as one string and written corked with the first body
 * chunk; chunked coding when the length is unknown; pipelined requests parsed ahead and
 * answered in order (responses behind the first are buffered until their turn); the
 * listener's head and keep-alive timeouts on the process deadline list (no Node timer per
 * connection). Plain HTTP only: TLS, h2c and redirectToHttps listeners are refused at
 * config load (src/config/schema.ts).
 */

/**
 * What the pipeline reads of a request (IncomingMessage's part of it); both fronts have it.
 * The body is read as the body relay reads it (src/http/client-body.ts): 'data', 'end',
 * 'error' and 'close' events, pause() and resume(), readableEnded and complete (and
 * readableLength, read only for a body of unknown length: body-relay.ts wholeBodyWithin).
 */
export interface FrontRequest extends EventEmitter {
  readonly method: string;
  readonly url: string;
  readonly httpVersion: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly rawHeaders: string[];
  readonly socket: Socket;
  readonly complete: boolean;
  readonly readableEnded: boolean;
  readonly readableLength: number;
  pause(): this;
  resume(): this;
}

/** What the pipeline does with a response (ServerResponse's part of it); both fronts have it. */
export interface FrontResponse extends EventEmitter {
  statusCode: number;
  readonly headersSent: boolean;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
  readonly writableFinished: boolean;
  writeHead(status: number, headers?: readonly string[] | Record<string, string | number | readonly string[]>): this;
  write(chunk: Buffer | string): boolean;
  end(chunk?: Buffer | string): this;
  addTrailers(t: Record<string, string | readonly string[]>): void;
  writeContinue(): void;
  writeEarlyHints(hints: Record<string, string | string[]>): void;
  hasHeader(name: string): boolean;
  destroy(): void;
}

const CRLF = '\r\n';
/** Fields of a response head: a token name; a value of VCHAR, obs-text, SP, HTAB (what Node's checks allow). */
function checkName(name: string): void {
  if (typeof name !== 'string' || !TOKEN_RE.test(name)) throw invalid('ERR_INVALID_HTTP_TOKEN', `Header name must be a valid HTTP token ["${name}"]`);
}
function checkValue(name: string, value: string): void {
  if (BAD_VALUE_RE.test(value)) throw invalid('ERR_INVALID_CHAR', `Invalid character in header content ["${name}"]`);
}
/** Node's error for the first field of `pairs` whose name or value is not valid. */
function throwFaulty(pairs: readonly unknown[]): never {
  for (let i = 0; i < pairs.length; i += 2) {
    const name = pairs[i] as string;
    checkName(name);
    checkValue(name, String(pairs[i + 1]));
  }
  throw invalid('ERR_INVALID_CHAR', 'Invalid character in header content');
}
/** An object of fields as name/value pairs (a list value is one pair per member). */
function pairsOf(o: Record<string, string | number | readonly string[]>): string[] {
  const out: string[] = [];
  for (const k in o) {
    const v = o[k];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const one of v as readonly string[]) out.push(k, String(one));
    else out.push(k, String(v));
  }
  return out;
}

function invalid(code: string, message: string): Error {
  return Object.assign(new TypeError(message), { code });
}

/** The Date field, made once a second (Node caches its own the same way). */
let dateSecond = 0;
let dateField = '';
function dateLine(): string {
  const now = Date.now();
  const s = Math.floor(now / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateField = `Date: ${new Date(now).toUTCString()}\r\n`;
  }
  return dateField;
}

/** A Link value as Node's writeEarlyHints accepts it. */
const LINK = /^(?:<[^>]*>)(?:\s*;\s*[^;"\s]+(?:=(")?[^;"\s]*\1)?)*$/;


/**
 * A request on the net front: its head as parsed, and its body as the few stream events the
 * body relay listens to (not a Readable: most requests have no body, and a Readable's state
 * and its end-of-stream ticks were paid for each of them).
 */
export class NetRequest extends EventEmitter implements FrontRequest {
  readonly method: string;
  readonly url: string;
  readonly httpVersion: string;
  readonly httpVersionMajor = 1;
  readonly httpVersionMinor: number;
  readonly rawHeaders: string[];
  readonly socket: Socket;
  complete = false;
  readableEnded = false;
  destroyed = false;
  trailers: Record<string, string | string[]> = {};
  rawTrailers: string[] = [];
  #headers: Record<string, string | string[]> | undefined;
  readonly #keep: number;
  readonly #conn: NetConnection;
  /** Body bytes taken from the connection and not yet given to a reader. */
  #held: Buffer[] | undefined;
  #flowing = false;
  /** pause() was called: a 'data' listener does not start the flow (as in a Readable). */
  #paused = false;
  /** All of the body was taken from the connection. */
  #ended = false;

  constructor(head: ParsedHead, socket: Socket, conn: NetConnection) {
    super();
    this.method = head.method;
    this.url = head.url;
    this.httpVersion = head.httpVersion;
    this.httpVersionMinor = head.httpVersion === '1.0' ? 0 : 1;
    this.rawHeaders = head.rawHeaders;
    this.#keep = head.keep;
    this.socket = socket;
    this.#conn = conn;
  }

  /** Node's lower-case headers object, built when first read. */
  get headers(): Record<string, string | string[]> {
    return (this.#headers ??= headersObject(this.rawHeaders, this.#keep));
  }

  /** A piece of body from the connection; false when the reader does not take it now (the connection pauses). */
  push(chunk: Buffer): boolean {
    if (this.destroyed) return true;
    if (this.#flowing && this.#held === undefined) {
      this.emit('data', chunk);
      return this.#flowing;
    }
    (this.#held ??= []).push(chunk);
    return false;
  }

  /** Body bytes taken from the connection and not yet given to a reader (as a Readable's; body-relay.ts wholeBodyWithin). */
  get readableLength(): number {
    const held = this.#held;
    let n = 0;
    if (held !== undefined) for (const c of held) n += c.length;
    return n;
  }

  /** The body is complete. */
  finish(): void {
    this.complete = true;
    this.#ended = true;
    if (this.#flowing && this.#held === undefined) this.#end();
  }

  #end(): void {
    if (this.readableEnded) return;
    this.readableEnded = true;
    this.emit('end');
    this.emit('close');
  }

  pause(): this {
    this.#flowing = false;
    this.#paused = true;
    return this;
  }

  /** As a Readable: a 'data' listener starts the flow (on the next tick) unless paused. */
  override on(event: string | symbol, fn: (...args: any[]) => void): this {
    super.on(event, fn);
    if (event === 'data' && !this.#flowing && !this.#paused) process.nextTick(resumeLater, this);
    return this;
  }

  /** Flowing: held bytes go to the reader (or are dropped when nobody listens, as Node's resume() drops them). */
  resume(): this {
    if (this.destroyed) return this;
    this.#flowing = true;
    this.#paused = false;
    const held = this.#held;
    if (held !== undefined) {
      while (held.length > 0 && this.#flowing) this.emit('data', held.shift()!);
      if (held.length > 0) return this;
      this.#held = undefined;
    }
    if (this.#ended) this.#end();
    else this.#conn.bodyWanted();
    return this;
  }

  /** The connection closed before the body was complete. */
  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.#held = undefined;
    this.emit('close');
    return this;
  }
}

/** A response on the net front. Written straight to the socket when first in its connection's order, else held until its turn. */
export class NetResponse extends EventEmitter implements FrontResponse {
  statusCode = 200;
  headersSent = false;
  destroyed = false;
  writableEnded = false;
  writableFinished = false;
  readonly req: NetRequest;
  readonly socket: Socket;
  readonly #conn: NetConnection;
  /** The head's status line and fields (without the framing fields and the blank line), once writeHead ran. */
  #head: string | undefined;
  #hasLength = false;
  #te = false;
  #hasDate = false;
  #hasConnection = false;
  #chunked = false;
  /** The connection closes after this response. */
  close: boolean;

  /** node:http's name for `close` (http/connection-order.ts `answerEndsConnection` reads either front's). */
  get _last(): boolean {
    return this.close;
  }
  #bodyAllowed: boolean;
  #trailers = '';
  /** The head has gone out (to the socket, or to the held bytes). */
  #started = false;
  attached = false;
  /**
   * The request asked for `100-continue` and no 100 has gone out yet: a final answer closes
   * the connection (node:http does the same), since the client may send the body it held back,
   * or may not, and nothing tells which. Kept open before, the next request's first bytes were
   * read as that body and it was refused as malformed.
   */
  expectsContinue = false;
  /** Bytes written before its turn (in order); undefined once attached. */
  #held: Array<string | Buffer> | undefined;
  #heldBytes = 0;
  #heldFull = false;

  constructor(conn: NetConnection, req: NetRequest, close: boolean) {
    super();
    this.#conn = conn;
    this.req = req;
    this.socket = req.socket;
    this.close = close;
    this.#bodyAllowed = req.method !== 'HEAD';
  }

  hasHeader(name: string): boolean {
    return nameIs(name, 'content-length') ? this.#hasLength : false;
  }

  writeHead(status: number, headers?: readonly string[] | Record<string, string | number | readonly string[]>): this {
    if (this.headersSent) throw invalid('ERR_HTTP_HEADERS_SENT', 'Cannot write headers after they are sent to the client');
    this.#setHead(status, headers);
    return this;
  }

  /**
   * The status line and the given fields, checked as Node checks them: a bad name or value
   * throws, and nothing of the head is kept (the error page written next starts clean: a
   * refused head's Date or Content-Length once stayed and the 502 went out without a Date).
   */
  #setHead(status: number, headers: readonly string[] | Record<string, string | number | readonly string[]> | undefined): void {
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'unknown'}\r\n`;
    let hasLength = false;
    let te = false;
    let chunked = false;
    let hasConnection = false;
    let close = this.close || this.expectsContinue;
    let hasDate = false;
    if (headers !== undefined) {
      const h = Array.isArray(headers) ? (headers as readonly unknown[]) : pairsOf(headers as Record<string, string | number | readonly string[]>);
      // Every name and every value is judged at once, as one string each (as the native
      // client judges a request head): a byte is valid in the concatenation exactly when it is
      // in its own field (test/http/token.test.ts), and an empty name is caught on its own; the
      // faulty field is then found for Node's error. Measured with bench/icount.ts
      // (2026-12-05, front: net; this function and its callees per proxied response of nginx's
      // fields): ~12.7k instructions this way, ~14k with one test per name and per value,
      // ~17k with a charCodeAt loop over a table per field (each read unwraps a sliced string).
      let names = '';
      let values = '';
      for (let i = 0; i < h.length; i += 2) {
        const name = h[i] as string;
        const value = String(h[i + 1]);
        const n = name.length;
        if (n === 0 || typeof name !== 'string') throwFaulty(h);
        names += name;
        values += value;
        if (n === 14) {
          if (nameIs(name, 'content-length')) hasLength = true;
        } else if (n === 17) {
          if (nameIs(name, 'transfer-encoding')) {
            te = true;
            if (/chunked/i.test(value)) chunked = true;
          }
        } else if (n === 10) {
          if (nameIs(name, 'connection')) {
            hasConnection = true;
            if (/(?:^|,)\s*close\s*(?:,|$)/i.test(value)) close = true;
          }
        } else if (n === 4 && nameIs(name, 'date')) hasDate = true;
        head += name + ': ' + value + CRLF;
      }
      if ((names.length > 0 && !TOKEN_RE.test(names)) || BAD_VALUE_RE.test(values)) throwFaulty(h);
    }
    this.#hasLength = hasLength;
    this.#te = te;
    this.#chunked = chunked;
    this.#hasConnection = hasConnection;
    this.close = close;
    this.#hasDate = hasDate;
    this.statusCode = status;
    this.headersSent = true;
    this.#head = head;
    if (status === 204 || status === 304 || (status >= 100 && status < 200)) this.#bodyAllowed = false;
  }

  /** The head's last lines: Date, Connection, framing (as Node adds them), and the blank line. `endLength`: the whole body when end() comes first. */
  #finishHead(endLength: number): string {
    if (this.#head === undefined) this.#setHead(this.statusCode, undefined);
    let head = this.#head!;
    if (!this.#hasDate) head += dateLine();
    if (this.#bodyAllowed && !this.#hasLength && !this.#te) {
      if (endLength >= 0) head += `Content-Length: ${endLength}\r\n`;
      else if (this.req.httpVersionMinor === 1) {
        head += 'Transfer-Encoding: chunked\r\n';
        this.#chunked = true;
      } else this.close = true; // HTTP/1.0: the body ends with the connection
    }
    if (!this.#bodyAllowed) this.#chunked = false;
    if (!this.#hasConnection) head += this.close ? 'Connection: close\r\n' : this.#conn.keepAliveLines;
    return head + CRLF;
  }

  write(chunk: Buffer | string): boolean {
    if (this.writableEnded || this.destroyed) return false;
    let out = chunk;
    if (!this.#started) {
      this.#started = true;
      const head = this.#finishHead(-1);
      if (!this.#bodyAllowed || chunk.length === 0) return this.#out(head, undefined, undefined);
      return this.#out(this.#chunked ? `${head}${chunk.length.toString(16)}\r\n` : head, out, this.#chunked ? CRLF : undefined);
    }
    if (!this.#bodyAllowed || chunk.length === 0) return true;
    if (this.#chunked) return this.#out(`${chunk.length.toString(16)}\r\n`, out, CRLF);
    out = chunk;
    return this.#out(undefined, out, undefined);
  }

  addTrailers(t: Record<string, string | readonly string[]>): void {
    for (const k in t) {
      const v = t[k]!;
      if (Array.isArray(v)) for (const one of v as readonly string[]) this.#trailers += this.#trailerField(k, one);
      else this.#trailers += this.#trailerField(k, v as string);
    }
  }

  #trailerField(name: string, value: string): string {
    checkName(name);
    checkValue(name, value);
    return `${name}: ${value}\r\n`;
  }

  end(chunk?: Buffer | string): this {
    if (this.writableEnded) return this;
    let before: string | undefined;
    let body: Buffer | string | undefined = chunk !== undefined && chunk.length > 0 && this.#bodyAllowed ? chunk : undefined;
    if (!this.#started) {
      this.#started = true;
      const len = chunk === undefined ? 0 : typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
      before = this.#finishHead(len);
      if (this.#chunked && body !== undefined) before += `${body.length.toString(16)}\r\n`;
    } else if (this.#chunked && body !== undefined) before = `${body.length.toString(16)}\r\n`;
    this.writableEnded = true;
    let after: string | undefined;
    if (this.#chunked) after = `${body !== undefined ? CRLF : ''}0\r\n${this.#trailers}\r\n`;
    if (this.destroyed) return this;
    if (!this.attached) {
      // Held until its turn; attach() writes it and finishes it.
      if (before !== undefined || body !== undefined || after !== undefined) this.#out(before, body, after);
      return this;
    }
    this.#conn.writeLast(this, before, body, after);
    return this;
  }

  writeContinue(): void {
    this.expectsContinue = false;
    this.#interim('HTTP/1.1 100 Continue\r\n\r\n');
  }

  writeEarlyHints(hints: Record<string, string | string[]>): void {
    // Node's check of Link values (validateLinkHeaderValue): a value that is not a link throws, and the hint is dropped.
    const link = hints.link;
    for (const v of Array.isArray(link) ? link : [link]) {
      if (typeof v !== 'string' || !LINK.test(v)) throw invalid('ERR_INVALID_ARG_VALUE', 'The arguments link is invalid');
    }
    let head = 'HTTP/1.1 103 Early Hints\r\n';
    for (const k in hints) {
      const v = hints[k]!;
      if (Array.isArray(v)) for (const one of v) head += this.#trailerField(k, one);
      else head += this.#trailerField(k, v);
    }
    this.#interim(`${head}\r\n`);
  }

  #interim(bytes: string): void {
    if (this.#started || this.destroyed) return;
    this.#out(bytes, undefined, undefined);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.socket.destroy();
  }

  /** Bytes out: to the socket when attached (corked together), else held in order. */
  #out(a: string | undefined, b: Buffer | string | undefined, c: string | undefined): boolean {
    if (this.attached) {
      const s = this.socket;
      if (s.destroyed) return false;
      // Everything written in this tick goes out in one writev: the head with the first body
      // chunk, and for a small answer the end too.
      this.#conn.corkForTick();
      if (a !== undefined) s.write(a, 'latin1');
      if (b !== undefined) s.write(b);
      if (c !== undefined) s.write(c, 'latin1');
      return !s.writableNeedDrain;
    }
    const held = (this.#held ??= []);
    if (a !== undefined) held.push(a);
    if (b !== undefined) held.push(b);
    if (c !== undefined) held.push(c);
    this.#heldBytes += (a?.length ?? 0) + (b?.length ?? 0) + (c?.length ?? 0);
    if (this.#heldBytes >= 64 * 1024) this.#heldFull = true;
    return !this.#heldFull;
  }

  /** Its turn came: what it wrote before goes out now. */
  attach(): void {
    this.attached = true;
    const held = this.#held;
    this.#held = undefined;
    if (held !== undefined && held.length > 0) {
      const s = this.socket;
      s.cork();
      for (const x of held) typeof x === 'string' ? s.write(x, 'latin1') : s.write(x);
      s.uncork();
    }
    if (this.writableEnded) {
      this.#conn.writeLast(this, undefined, undefined, undefined);
      return;
    }
    if (this.#heldFull) {
      this.#heldFull = false;
      this.emit('drain');
    }
  }

  /** The connection closed before this response was finished. */
  gone(): void {
    if (this.destroyed || this.writableFinished) return;
    this.destroyed = true;
    this.emit('close');
  }

  /** All of it was written. */
  finished(): void {
    if (this.writableFinished) return;
    this.writableFinished = true;
    this.emit('finish');
    this.destroyed = true;
    this.emit('close');
  }
}

/** What the server gives each connection. */
interface FrontSettings {
  maxHeaderSize: number;
  maxHeadersCount: number;
  headersTimeout: number;
  keepAliveTimeout: number;
}

/**
 * The most requests of one connection read and not yet answered: the net front stops parsing
 * (and reading) there and goes on when half of them are answered, as the node front's
 * connection order holds its reading (http/pipelining.ts, http/read-hold.ts).
 */
const MAX_QUEUED = MAX_PIPELINED_RUNNING + MAX_PIPELINED_WAITING;

const T_NONE = 0;
const T_HEAD = 1;
const T_IDLE = 2;
/**
 * The answer is out and the rest of its request's body is being read and dropped: idle for
 * the keep-alive timeout (each read starts it again), then closed, as node:http's front
 * arms `socket.setTimeout(keepAliveTimeout)` when an answer finishes. Before, nothing was
 * armed in this state and a client that stopped mid-body held the connection for ever.
 */
const T_DUMP = 3;

/** One client connection of the net front. */
export class NetConnection extends DeadlineEntry {
  readonly socket: Socket;
  readonly #server: NetFrontServer;
  readonly #parser: RequestHeadParser;
  /** Bytes not parsed yet. */
  #buf: Buffer | undefined;
  /** Responses not finished, in request order; the first is written to the socket. */
  readonly #queue: NetResponse[] = [];
  /** The request whose body is arriving. */
  #body: NetRequest | undefined;
  #bodyLeft = 0;
  #chunks: ChunkedDecoder | undefined;
  /** Paused for a body the consumer does not take yet. */
  #paused = false;
  /** Not parsing (nor reading) on: MAX_QUEUED requests are not answered yet. */
  #full = false;
  /** No more requests are read (an error, an upgrade, a closed socket). */
  #stopped = false;
  /** The last request of the connection was read (Connection: close, HTTP/1.0): bytes after it are not parsed. */
  #last = false;
  /** A refusal owed once the responses before it are out. */
  #owed: ParserRefusalError | undefined;
  #upgrade: { req: NetRequest; rest: Buffer } | undefined;
  #timer = T_NONE;
  /** 'Connection: keep-alive' and its Keep-Alive hint (http/headers.ts `keepAliveLines`: none under a second). */
  readonly keepAliveLines: string;

  constructor(server: NetFrontServer, socket: Socket) {
    super();
    this.#server = server;
    this.socket = socket;
    const st = server.settings;
    this.#parser = new RequestHeadParser({ maxHeaderSize: st.maxHeaderSize, keep: st.maxHeadersCount });
    this.keepAliveLines = keepAliveLines(st.keepAliveTimeout);
    socket.setNoDelay(true);
    socket.on('data', onSocketData);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    socket.on('drain', onSocketDrain);
    (socket as ConnSocket)[kConn] = this;
    this.#arm(T_HEAD, st.headersTimeout);
  }

  /** Idle: no request in progress (closeIdleConnections closes these). */
  get idle(): boolean {
    return this.#queue.length === 0 && this.#body === undefined && !this.#parser.started && this.#buf === undefined && this.#upgrade === undefined;
  }

  #arm(kind: number, ms: number): void {
    if (ms <= 0) {
      if (this.#timer !== T_NONE) this.#disarm();
      return;
    }
    this.#timer = kind;
    deadlines.add(this, performance.now(), ms);
  }

  #disarm(): void {
    if (this.#timer === T_NONE) return;
    this.#timer = T_NONE;
    deadlines.remove(this);
  }

  deadlineReached(): void {
    const kind = this.#timer;
    this.#timer = T_NONE;
    if (this.socket.destroyed) return;
    if (kind === T_IDLE || kind === T_DUMP) this.socket.destroy();
    else if (kind === T_HEAD) this.#refuse('HPE_HEADERS_TIMEOUT');
  }

  onData(chunk: Buffer): void {
    if (this.#stopped) return;
    const b = this.#buf;
    this.#buf = b === undefined ? chunk : this.#append(b, chunk);
    const t = this.#timer;
    if (t === T_IDLE) this.#arm(T_HEAD, this.#server.settings.headersTimeout);
    else if (t === T_DUMP) this.#arm(T_DUMP, this.#server.settings.keepAliveTimeout);
    this.#run();
  }

  /** A buffer that unparsed bytes are appended to (`#storeEnd` bytes used); dropped once they are all taken. */
  #store: Buffer | undefined;
  #storeEnd = 0;

  /**
   * `b` (bytes not parsed yet) followed by `chunk`. Appended in place to `#store` when `b` ends
   * where it does, else both are copied into a new one of twice the size. Why: a
   * `Buffer.concat` per read copied the whole partial head again each time, so a head
   * trickled a few bytes per read cost time quadratic in its length, and each read allocated
   * a new buffer (adversarial review, session 26). Only bytes past the end of `b` are ever
   * written, and nothing before them is handed out again, so body pieces already given to a
   * reader (views of the store) never change.
   */
  #append(b: Buffer, chunk: Buffer): Buffer {
    const store = this.#store;
    const end = this.#storeEnd;
    if (store !== undefined && b.buffer === store.buffer && b.byteOffset + b.length === end && end + chunk.length <= store.length) {
      chunk.copy(store, end);
      this.#storeEnd = end + chunk.length;
      return store.subarray(b.byteOffset, this.#storeEnd);
    }
    const need = b.length + chunk.length;
    // Its own memory (not the shared pool): offsets in it are the store's own.
    const next = Buffer.allocUnsafeSlow(Math.max(2 * need, 4096));
    b.copy(next, 0);
    chunk.copy(next, b.length);
    this.#store = next;
    this.#storeEnd = need;
    return next.subarray(0, need);
  }

  #run(): void {
    this.#parse();
    // Nothing is waiting: an idle keep-alive connection holds no store.
    if (this.#buf === undefined) this.#store = undefined;
  }

  #parse(): void {
    while (!this.#stopped) {
      const buf = this.#buf;
      if (buf === undefined) return;
      if (this.#body !== undefined) {
        if (this.#paused) return;
        if (!this.#bodyBytes(buf)) return;
        continue;
      }
      if (this.#last) {
        // Bytes after a message that ends the connection are not a request (Node: HPE_CLOSED_CONNECTION, ignored).
        this.#buf = undefined;
        return;
      }
      if (this.#queue.length >= MAX_QUEUED) {
        if (!this.#full) {
          this.#full = true;
          this.socket.pause();
        }
        return;
      }
      const p = this.#parser;
      const r = p.feed(buf);
      if (r === NEED_MORE) {
        this.#buf = p.pos >= buf.length ? undefined : p.pos === 0 ? buf : buf.subarray(p.pos);
        p.pos = 0;
        if (this.#timer !== T_HEAD && (p.started || this.#buf !== undefined)) this.#arm(T_HEAD, this.#server.settings.headersTimeout);
        return;
      }
      if (r !== HEAD_DONE) {
        this.#refuse(r);
        return;
      }
      const head = p.head!;
      this.#buf = p.pos >= buf.length ? undefined : buf.subarray(p.pos);
      p.reset(0);
      this.#request(head);
    }
  }

  /** Body bytes from the buffer to the request; false when it must wait (more bytes, or the consumer). */
  #bodyBytes(buf: Buffer): boolean {
    const req = this.#body!;
    const chunks = this.#chunks;
    if (chunks === undefined) {
      const n = Math.min(this.#bodyLeft, buf.length);
      const piece = n === buf.length ? buf : buf.subarray(0, n);
      this.#buf = n === buf.length ? undefined : buf.subarray(n);
      this.#bodyLeft -= n;
      const more = req.push(piece);
      if (this.#bodyLeft === 0) this.#bodyDone(req);
      else if (!more) this.#pause();
      return this.#buf !== undefined;
    }
    let more = true;
    const r = chunks.decode(buf, 0, (b) => {
      if (!req.push(b)) more = false;
    });
    if (typeof r === 'string') {
      this.#bodyFailed(r);
      return false;
    }
    this.#buf = r >= buf.length ? undefined : buf.subarray(r);
    if (chunks.state === 4) {
      req.rawTrailers = chunks.trailers;
      req.trailers = headersObject(chunks.trailers);
      this.#bodyDone(req);
      return this.#buf !== undefined;
    }
    if (!more) this.#pause();
    return false;
  }

  #pause(): void {
    this.#paused = true;
    this.socket.pause();
  }

  /** The body's consumer wants more. */
  bodyWanted(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.socket.resume();
    this.#run();
  }

  #bodyDone(req: NetRequest): void {
    this.#body = undefined;
    this.#chunks = undefined;
    // The dropped body is complete: the connection waits for its next request (a head already
    // begun in the buffer re-arms the head timer as it is parsed).
    if (this.#timer === T_DUMP && this.#queue.length === 0) this.#arm(T_IDLE, this.#server.settings.keepAliveTimeout);
    req.finish();
    if (this.#paused) {
      this.#paused = false;
      this.socket.resume();
    }
  }

  /** A malformed body: refused through the exchange answering that request (the gateway's clientError handler finds it). */
  #bodyFailed(code: string): void {
    this.#stopped = true;
    this.#buf = undefined;
    const res = this.#queue.find((r) => r.req === this.#body);
    if (res !== undefined && res.writableEnded) {
      // Already answered (a refusal before the body was read): the connection closes after that answer.
      res.close = true;
      return;
    }
    const s = this.socket as ConnSocket;
    s._httpMessage = res;
    this.#server.emit('clientError', parserError(code), this.socket);
    s._httpMessage = undefined;
  }

  #request(head: ParsedHead): void {
    const socket = this.socket;
    const req = new NetRequest(head, socket, this);
    const hasBody = head.chunked || head.contentLength > 0;
    if (head.method === 'CONNECT') {
      this.#stopped = true;
      this.#disarm();
      this.#server.emit('connect', req, socket, this.#buf ?? EMPTY);
      return;
    }
    if (head.upgrade) {
      // Handed to the upgrade path once the answers before it are out.
      this.#stopped = true;
      this.#disarm();
      this.#upgrade = { req, rest: this.#buf ?? EMPTY };
      this.#buf = undefined;
      if (this.#queue.length === 0) this.#handOver();
      return;
    }
    if (head.close) this.#last = true;
    const res = new NetResponse(this, req, head.close);
    this.#queue.push(res);
    if (this.#queue.length === 1) res.attach();
    this.#disarm();
    if (hasBody) {
      this.#body = req;
      if (head.chunked) this.#chunks = new ChunkedDecoder(this.#server.settings.maxHeaderSize);
      else this.#bodyLeft = head.contentLength;
    } else req.finish();
    const server = this.#server;
    if (head.expect !== undefined && head.httpVersion === '1.1') {
      if (CONTINUE_EXPECTATION.test(head.expect)) {
        res.expectsContinue = true;
        server.emit('checkContinue', req, res);
      }
      else server.emit('checkExpectation', req, res);
    } else server.emit('request', req, res);
  }

  #handOver(): void {
    const u = this.#upgrade!;
    this.#upgrade = undefined;
    const socket = this.socket;
    this.#detach();
    // Half-open, as node:http's sockets are: a switched client's FIN ends only its direction
    // (else its end cut off the upstream's answer to it; test/gateway/upgrade-half-close.test.ts).
    socket.allowHalfOpen = true;
    this.#server.emit('upgrade', u.req, socket, u.rest);
  }

  /** The socket is no longer this front's (upgrade): its listeners go, and it waits paused for its new reader. */
  #detach(): void {
    const socket = this.socket;
    socket.off('data', onSocketData);
    socket.off('error', onSocketError);
    socket.off('close', onSocketClose);
    socket.off('drain', onSocketDrain);
    socket.pause();
    this.#disarm();
    this.#server.forget(this);
  }

  /** A parser refusal: answered once the responses before it are out, then the connection closes. */
  #refuse(code: string): void {
    this.#stopped = true;
    // The refusal's format follows the head's Accept: a field parsed already, else in the bytes not parsed.
    const err = parserError(code, this.#parser.fieldSoFar('accept') ?? acceptInRawHead(this.#buf), this.#parser.methodSoFar === 'HEAD');
    this.#buf = undefined;
    this.#disarm();
    if (this.#queue.length > 0) {
      this.#owed = err;
      return;
    }
    this.#server.emit('clientError', err, this.socket);
  }

  /** A response's last bytes, written with the rest of this tick's; it is finished once they are out. */
  writeLast(res: NetResponse, a: string | undefined, b: Buffer | string | undefined, c: string | undefined): void {
    const s = this.socket;
    if (s.destroyed) return;
    if (a === undefined && b === undefined && c === undefined) {
      // Nothing more to write: finished on the next tick, as Node's ServerResponse does (no empty write).
      process.nextTick(finishLater, this, res);
      return;
    }
    this.corkForTick();
    if (a !== undefined) s.write(a, 'latin1');
    if (b !== undefined) s.write(b);
    s.write(c ?? EMPTY, 'latin1', () => this.#finished(res));
  }

  #corked = false;

  /** Cork the socket until the end of this tick (once per tick). */
  corkForTick(): void {
    if (this.#corked) return;
    this.#corked = true;
    this.socket.cork();
    process.nextTick(uncorkLater, this);
  }

  uncork(): void {
    this.#corked = false;
    this.socket.uncork();
  }

  finishNow(res: NetResponse): void {
    this.#finished(res);
  }

  #finished(res: NetResponse): void {
    const q = this.#queue;
    if (q[0] !== res) return;
    q.shift();
    const req = res.req;
    // A body nobody read is read and dropped so the next request can be parsed (Node's dump).
    if (!req.complete && !res.close) req.resume();
    res.finished();
    const parseOn = this.#full && q.length <= MAX_QUEUED / 2 && !res.close;
    if (parseOn) {
      this.#full = false;
      if (!this.#paused) this.socket.resume();
    }
    if (res.close) {
      this.#stopped = true;
      this.socket.end();
      // A client that never closes its side is let go of after a linger (node:http's front
      // destroys the socket once the answer is written); held for ever before (stall hunt).
      destroyAfter(this.socket, CLOSE_LINGER_MS);
      return;
    }
    const next = q[0];
    if (next !== undefined) {
      next.attach();
      // The requests read while it was full: parsed now (a body being read goes on as its reader asks).
      if (parseOn && this.#body === undefined && q[0] === next) this.#run();
      return;
    }
    if (this.#owed !== undefined) {
      const err = this.#owed;
      this.#owed = undefined;
      this.#server.emit('clientError', err, this.socket);
      return;
    }
    if (this.#upgrade !== undefined) {
      this.#handOver();
      return;
    }
    if (this.#stopped) return;
    if (this.idle) this.#arm(T_IDLE, this.#server.settings.keepAliveTimeout);
    else if (this.#body === req && !req.complete) this.#arm(T_DUMP, this.#server.settings.keepAliveTimeout);
    else if (this.#buf !== undefined && this.#body === undefined) this.#run();
  }

  onClose(): void {
    this.#disarm();
    this.#stopped = true;
    const body = this.#body;
    if (body !== undefined && !body.complete) body.destroy();
    for (const r of this.#queue.splice(0)) r.gone();
    this.#server.forget(this);
  }

  onDrain(): void {
    this.#queue[0]?.emit('drain');
  }
}

const EMPTY = Buffer.alloc(0);

function resumeLater(req: NetRequest): void {
  req.resume();
}
function uncorkLater(c: NetConnection): void {
  c.uncork();
}
function finishLater(c: NetConnection, res: NetResponse): void {
  c.finishNow(res);
}

/** A parser refusal as node:http reports one ('clientError'), with the head's Accept when known (`ParserRefusalError`). */
function parserError(code: string, accept?: string, head = false): ParserRefusalError {
  return Object.assign(new Error(`Parse Error: ${code}`), { code, accept, head });
}

const kConn = Symbol('gatewise.netConnection');
type ConnSocket = Socket & { [kConn]?: NetConnection; _httpMessage?: NetResponse };

function onSocketData(this: Socket, chunk: Buffer): void {
  (this as ConnSocket)[kConn]!.onData(chunk);
}
function onSocketError(this: Socket): void {
  this.destroy();
}
function onSocketClose(this: Socket): void {
  (this as ConnSocket)[kConn]!.onClose();
}
function onSocketDrain(this: Socket): void {
  (this as ConnSocket)[kConn]!.onDrain();
}

/**
 * The net front's server: a net.Server with the part of http.Server the gateway uses
 * (the request events, the timeouts changed by a reload, closeIdleConnections,
 * closeAllConnections).
 */
export class NetFrontServer extends NetServer {
  readonly settings: FrontSettings;
  readonly #conns = new Set<NetConnection>();

  constructor(settings: FrontSettings) {
    super({ noDelay: true });
    this.settings = settings;
    this.on('connection', (socket: Socket) => {
      this.#conns.add(new NetConnection(this, socket));
    });
  }

  set headersTimeout(ms: number) {
    this.settings.headersTimeout = ms;
  }
  set keepAliveTimeout(ms: number) {
    this.settings.keepAliveTimeout = ms;
  }
  set maxHeadersCount(n: number) {
    this.settings.maxHeadersCount = n;
  }

  forget(c: NetConnection): void {
    this.#conns.delete(c);
  }

  closeIdleConnections(): void {
    for (const c of this.#conns) if (c.idle) c.socket.destroy();
  }

  closeAllConnections(): void {
    for (const c of this.#conns) c.socket.destroy();
  }
}

import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { buildConnector, Dispatcher } from 'undici';
import { errors } from '../http/undici.js';
import type { ConnectTimings, PoolConnector } from './timed-connector.js';
import type { CancelSignal } from '../timing/cancel.js';
import { BAD_VALUE_RE, TCHAR, TOKEN_RE, VALUE_BYTE, nameIs } from '../http/token.js';
import { latin1 } from '../http/headers.js';

/*
 * A hand-written HTTP/1.1 client for one upstream connection, beside undici's `Client`
 * (cluster `client: native`).
 *
 * Why by hand: measured (docs/benchmarks.md §13, bench/peers/raw-client.ts), node:http in front
 * of a raw keep-alive client on node:net costs 1.6–2.2× less CPU per request than the same
 * front with undici's dispatcher, at 1 KiB and at 1 MiB: undici's client (its Request object
 * and handler wrappers, the llhttp WASM calls that copy every header field into a new Buffer,
 * its timers, its idle-socket setImmediate per request, its kResume loop) is the largest single
 * cost of the reverse path. This client keeps undici's dispatch-handler contract (onConnect,
 * onResponseStarted, onHeaders → false pauses, onData → false pauses, onComplete, onError,
 * onUpgrade), so the gateway's Attempt, revalidation and upgrade code drive either client.
 *
 * Errors are undici's own error classes with their stable codes (UND_ERR_SOCKET,
 * UND_ERR_HEADERS_OVERFLOW, UND_ERR_RES_CONTENT_LENGTH_MISMATCH, HPE_* parser codes …), so the
 * classifier (failure/classify.ts) maps the same upstream fault to the same RFC 9209 type as
 * it does for undici, by code.
 *
 * The response parser is strict (RFC 9112): a status line `HTTP/1.x NNN reason`; header fields
 * as token names directly followed by `:` (no space before the colon, no obs-fold), values of
 * visible characters, SP and HTAB only (no bare CR, LF or NUL anywhere: every LF must follow a
 * CR); Content-Length as digits (repeated only with the same value, never with
 * Transfer-Encoding); Transfer-Encoding only with `chunked` as its last coding; chunk sizes in
 * hex, bounded, extensions allowed; trailers checked as header fields. The header section is
 * bounded as undici bounds it (the bytes of names and values, refused at
 * `maxHeaderSize`), and its raw bytes at four times that.
 *
 * No timers of its own for requests: the gateway times each wait (ResponseTimer: the response
 * head and the body; the connector: connect and TLS). The only timer is the socket's idle
 * timeout while it sits unused in the pool (keep-alive, shortened by a `Keep-Alive: timeout=`
 * hint), Node's own per-socket timer, armed once per connection.
 *
 * Never two requests on one connection at once: a request dispatched while another runs waits
 * in a queue (the pool does that only when every connection is busy). A used idle connection
 * is written to one event-loop turn after it is picked (as undici does, GHSA-35p6-xmwp-9g52),
 * so a FIN, a reset or stray bytes already queued on it are seen before a request goes out.
 */

const { SocketError, HeadersOverflowError, ResponseContentLengthMismatchError, RequestAbortedError, HTTPParserError, InformationalError, ClientDestroyedError, ClientClosedError, InvalidArgumentError, RequestContentLengthMismatchError } = errors;

export interface NativeClientOptions {
  /** The origin, `http://host:port` or `https://host:port`. */
  origin: string;
  /** Opens (and secures) the socket; the pool's timed connector (told the opening request's signal, `opener`). */
  connector: PoolConnector;
  /** Header section limit (bytes of names and values, as undici counts them). */
  maxHeaderSize: number;
  /** Longest idle time before the connection is closed (the cluster's keepAlive). */
  keepAliveMs: number;
  /** Subtracted from an upstream's `Keep-Alive: timeout=` hint (undici's keepAliveTimeoutThreshold). */
  keepAliveThresholdMs?: number;
  /** Where the connector writes its times (the pool's timed connector owns the same object). */
  timings?: ConnectTimings;
}

type Handler = Dispatcher.DispatchHandler;

interface SocketListeners {
  data(d: Buffer): void;
  end(): void;
  error(err: Error): void;
  close(): void;
  timeout(): void;
}

interface Pending {
  readonly opts: Dispatcher.DispatchOptions;
  readonly handler: Handler;
}

/** Parser states. */
const S_IDLE = 0;
const S_HEAD = 1;
const S_LENGTH = 2;
const S_CHUNK_SIZE = 3;
const S_CHUNK_DATA = 4;
const S_CHUNK_END = 5;
const S_TRAILERS = 6;
const S_UNTIL_CLOSE = 7;

const CR = 13;
const LF = 10;
const EMPTY = Buffer.alloc(0);
/** Longest chunk-size line (size, extensions), as Node's own parser bounds it. */
const MAX_CHUNK_LINE = 8 * 1024;

/** Hex digit values, -1 for anything else. */
const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[0x41 + c] = 10 + c;
  HEX[0x61 + c] = 10 + c;
}

/** A response's field lines, each a token, ':', value bytes (RFC 9110 §5.5: VCHAR, obs-text, SP, HTAB) and CRLF. */
const FIELD_LINES = /^(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*$/;
const KEEPALIVE_TIMEOUT = /timeout=(\d+)/;

/** The first field of a request head whose value or name is not valid (the head as #buildHead reads it). */
function faultyField(flat: readonly unknown[]): Error {
  for (let i = 0; i < flat.length; i += 2) {
    const name = String(flat[i]);
    const v = flat[i + 1];
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? (v as unknown[]) : [v]) {
      if (BAD_VALUE_RE.test(one === null ? '' : String(one))) return new InvalidArgumentError(`invalid ${name} header`);
      if (!TOKEN_RE.test(name)) return new InvalidArgumentError('invalid header key');
    }
  }
  return new InvalidArgumentError('invalid header');
}

/** The lower-case name when `name` is one of the fields that frame a message or its connection, else ''. */
function framingName(name: string): string {
  switch (name.length) {
    case 4:
      return nameIs(name, 'host') ? 'host' : '';
    case 7:
      return nameIs(name, 'upgrade') ? 'upgrade' : '';
    case 10:
      return nameIs(name, 'connection') ? 'connection' : nameIs(name, 'keep-alive') ? 'keep-alive' : '';
    case 14:
      return nameIs(name, 'content-length') ? 'content-length' : '';
    case 17:
      return nameIs(name, 'transfer-encoding') ? 'transfer-encoding' : '';
    default:
      return '';
  }
}

function parserError(message: string, code: string): Error {
  // undici's class (name HTTPParserError, code HPE_<code>), as its llhttp parser reports errors; its typings omit the code argument.
  const E = HTTPParserError as unknown as new (message: string, code: string) => Error;
  return new E(message, code);
}

/**
 * Judge one head line buf[s, e) (e: its CR, or the end of the bytes so far when not
 * `complete`): the status line, or a field line (token, ':', value bytes). Throws the parser
 * error llhttp would give; a partial line is judged as far as it goes.
 */
function checkHeadLine(buf: Buffer, s: number, e: number, status: boolean, complete: boolean): void {
  if (status) {
    const PREFIX = 'HTTP/1.';
    let i = s;
    for (let k = 0; k < PREFIX.length && i < e; k++, i++) if (buf[i] !== PREFIX.charCodeAt(k)) throw parserError('the response does not start with HTTP/1.x', 'INVALID_CONSTANT');
    if (i < e && buf[i] !== 0x30 && buf[i] !== 0x31) throw parserError('unsupported HTTP version in the response', 'INVALID_VERSION');
    i++;
    if (i < e && buf[i] !== 0x20) throw parserError('invalid status line in the response', 'INVALID_STATUS');
    i++;
    for (let k = 0; k < 3 && i < e; k++, i++) if (buf[i]! < 0x30 || buf[i]! > 0x39) throw parserError('invalid status code in the response', 'INVALID_STATUS');
    if (i < e && buf[i] !== 0x20) throw parserError('invalid status line in the response', 'INVALID_STATUS');
    for (i++; i < e; i++) if (VALUE_BYTE[buf[i]!] === 0) throw parserError('invalid character in the reason phrase', 'INVALID_STATUS');
    if (complete && e - s < 12) throw parserError('invalid status line in the response', 'INVALID_STATUS');
    return;
  }
  if (s < e && (buf[s] === 0x20 || buf[s] === 0x09)) throw parserError('obsolete line folding in the response head', 'INVALID_HEADER_TOKEN');
  let i = s;
  while (i < e && TCHAR[buf[i]!] === 1) i++;
  if (i === e) {
    if (complete) throw parserError('invalid header field name in the response', 'INVALID_HEADER_TOKEN');
    return;
  }
  if (i === s || buf[i] !== 0x3a) throw parserError('invalid header field name in the response', 'INVALID_HEADER_TOKEN');
  for (i++; i < e; i++) if (VALUE_BYTE[buf[i]!] === 0) throw parserError('invalid character in a response header value', 'INVALID_HEADER_TOKEN');
}

/**
 * A chunk-size line buf[s, e) (without its CRLF; when not `complete`, the bytes so far):
 * 1*HEXDIG *( ";" token [ "=" ( token / quoted-string ) ] ), no whitespace outside quotes
 * (llhttp refuses it; a proxy laxer than the parser behind it about chunk framing is a
 * smuggling gap). Returns the size.
 */
function chunkLine(buf: Buffer, s: number, e: number, complete: boolean): number {
  const bad = (what: string): Error => parserError(what, 'INVALID_CHUNK_SIZE');
  let i = s;
  let size = 0;
  while (i < e && HEX[buf[i]!]! >= 0) {
    size = size * 16 + HEX[buf[i]!]!;
    if (size > Number.MAX_SAFE_INTEGER) throw bad('chunk size too large in the response');
    i++;
  }
  if (i === s && (complete || i < e)) throw bad('invalid chunk size in the response');
  // Extensions: a small state machine (0 after ';' wants a name, 1 in a name, 2 after '=' wants a value, 3 in a token value, 4 in quotes, 5 after a backslash, 6 after the closing quote).
  let st = -1;
  for (; i < e; i++) {
    const c = buf[i]!;
    if (st === 4) {
      if (c === 0x22) st = 6;
      else if (c === 0x5c) st = 5;
      else if (VALUE_BYTE[c] === 0) throw bad('invalid character in a chunk extension');
      continue;
    }
    if (st === 5) {
      if (VALUE_BYTE[c] === 0) throw bad('invalid character in a chunk extension');
      st = 4;
      continue;
    }
    if (c === 0x3b) {
      if (st === 0 || st === 2) throw bad('empty chunk extension');
      st = 0;
    } else if (c === 0x3d) {
      if (st !== 1) throw bad('invalid chunk extension');
      st = 2;
    } else if (c === 0x22) {
      if (st !== 2) throw bad('invalid chunk extension');
      st = 4;
    } else if (TCHAR[c] === 1) {
      if (st === 0) st = 1;
      else if (st === 2) st = 3;
      else if (st !== 1 && st !== 3) throw bad(st === -1 ? 'invalid chunk size in the response' : 'invalid chunk extension');
    } else throw bad(st === -1 ? 'invalid character in a chunk size' : 'invalid character in a chunk extension');
  }
  if (complete && (st === 0 || st === 2 || st === 4 || st === 5)) throw bad('unfinished chunk extension');
  return size;
}

/** Methods whose request defines a body: an empty one is sent as `content-length: 0` (as undici does). */
function expectsPayload(method: string): boolean {
  return method === 'POST' || method === 'PUT' || method === 'PATCH' || method === 'QUERY' || method === 'PROPFIND' || method === 'PROPPATCH';
}

/**
 * One upstream HTTP/1.1 connection speaking to `origin`, with the surface the pool and the
 * gateway use of undici's `Client` (see connection-pool.ts's `PoolConnection`). Reconnects only
 * for requests still queued when its socket went away (as undici's Client does); the pool
 * retires it once its socket closes while idle.
 */
/**
 * Dispatch options with the caller's word about the head: `fieldsChecked` says every name
 * is already a token and every value holds only field-value bytes (RFC 9110 §5.5), so
 * #buildHead does not judge them again. The reverse gateway gives it for a head it built
 * only from a request its HTTP/1.1 front parsed (both parsers refuse any other byte),
 * config values the schema judged at load and its own values, with no hook, cache or
 * HTTP/2 in between (gateway/exchange.ts, #fieldsChecked). undici ignores the field.
 * Measured: bench/icount.ts (2026-12-05, 1 KiB through the default front), #buildHead with its
 * callees 9.6k instructions per request judging, 4.2k given the word.
 */
export interface CheckedDispatchOptions extends Dispatcher.DispatchOptions {
  readonly fieldsChecked?: boolean;
}

export class NativeClient extends EventEmitter {
  /** Requests dispatched and not yet finished (the pool's count). */
  active = 0;
  /** Completed requests (the pool's count). */
  uses = 0;
  /** When the last request finished (ms since epoch; the pool's). */
  lastUsed = 0;
  /** The socket is connected: kept by the pool from the 'connect' and 'disconnect' events, as for undici's Client. */
  connected = false;
  /** DNS, TCP and TLS times of this connection (written by the pool's timed connector). */
  readonly timings: ConnectTimings;
  /** Unused: the TLS name comes from the connector (kept for the pool's shared surface). */
  servername: string | undefined;
  /** The address the connection went to. */
  remoteAddress: string | undefined;
  /** HTTP/1.1: one request at a time. */
  pipelining = 1;
  /** The signal of the request this connection is being opened for, handed to the connector (the pool's; connection-pool.ts). */
  opener: CancelSignal | undefined = undefined;

  readonly #opts: NativeClientOptions;
  readonly #url: URL;
  readonly #hostHeader: string;
  #socket: Socket | undefined;
  #listeners: SocketListeners | undefined;
  #connecting = false;
  readonly #queue: Pending[] = [];
  #closeRequested = false;
  #destroyed = false;
  #closeWaiters: Array<() => void> = [];
  /** This socket takes no further request (Connection: close, an error, stray bytes…). */
  #doomed = false;
  /** The socket completed a response before (a next request waits a loop turn first). */
  #used = false;
  #idleCheck: NodeJS.Immediate | undefined;
  /** The socket's idle timeout now set (ms). */
  #idleMs = 0;

  // ---- the request in flight ----
  #req: Pending | undefined;
  #method = '';
  #upgrade = false;
  #aborted = false;
  /** Its request body is still being written. */
  #writing = false;
  #body: Readable | undefined;
  /** Body bytes due by the request's Content-Length (-1: chunked). */
  #bodyLength = -1;
  #bodySent = 0;
  #head = '';

  // ---- the response parser ----
  #state = S_IDLE;
  /** Bytes of an incomplete line (head, chunk size, trailers) carried to the next read. */
  #partial: Buffer | undefined;
  /** Where the search for the head's end resumes in #partial. */
  #scanFrom = 0;
  /** Head lines before this offset (in #partial) were judged already. */
  #checkedTo = 0;
  #status = 0;
  #keepAlive = true;
  /** Bytes still due: Content-Length body, or the current chunk. */
  #left = 0;
  #trailers: Buffer[] = [];
  #trailerSize = 0;
  #paused = false;
  /** Bytes read while paused, parsed on resume. */
  #rest: Buffer | undefined;
  #parsing = false;

  constructor(opts: NativeClientOptions) {
    super();
    this.#opts = opts;
    this.timings = opts.timings ?? {};
    this.#url = new URL(opts.origin);
    this.#hostHeader = `host: ${this.#url.host}\r\n`;
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** The current socket (the pool's shared surface: whether a request was written on it). */
  get socket(): Socket | undefined {
    return this.#socket;
  }

  /** No further request will go on this connection (close() was called, or its socket is ending). */
  get closed(): boolean {
    return this.#closeRequested || this.#doomed;
  }

  dispatch(opts: Dispatcher.DispatchOptions, handler: Handler): boolean {
    if (this.#destroyed || this.#closeRequested) {
      handler.onError?.(this.#destroyed ? new ClientDestroyedError() : new ClientClosedError());
      return false;
    }
    this.#queue.push({ opts, handler });
    this.#next();
    return true;
  }

  /** Take a request that has not started out of the queue (PoolConnection.drop): true when it was there. */
  drop(handler: Handler): boolean {
    const q = this.#queue;
    for (let i = 0; i < q.length; i++) {
      if (q[i]!.handler !== handler) continue;
      q.splice(i, 1);
      this.#closeIfDone();
      return true;
    }
    return false;
  }

  /** Finish the queued requests, then close the socket. */
  close(): Promise<void> {
    if (this.#destroyed) return Promise.resolve();
    this.#closeRequested = true;
    return new Promise((resolve) => {
      this.#closeWaiters.push(resolve);
      this.#closeIfDone();
    });
  }

  /** Close at once: the request in flight and the queued ones fail with `err`. */
  destroy(err?: Error | null): Promise<void> {
    if (!this.#destroyed) {
      this.#destroyed = true;
      const e = err ?? new ClientDestroyedError();
      const queued = this.#queue.splice(0);
      const s = this.#socket;
      if (this.#req !== undefined) this.#fail(e);
      for (const p of queued) p.handler.onError?.(e);
      s?.destroy();
    }
    const s = this.#socket;
    if (s === undefined || s.closed) {
      this.#resolveClose();
      return Promise.resolve();
    }
    return new Promise((resolve) => s.once('close', () => resolve()));
  }

  #closeIfDone(): void {
    if (!this.#closeRequested || this.#req !== undefined || this.#queue.length > 0) return;
    const s = this.#socket;
    if (s === undefined) {
      this.#destroyed = true;
      this.#resolveClose();
      return;
    }
    s.destroy();
  }

  #resolveClose(): void {
    const w = this.#closeWaiters;
    this.#closeWaiters = [];
    for (const f of w) f();
  }

  // ---- connection --------------------------------------------------------------------------

  /** Start the next queued request when the socket is free, connecting first if need be. */
  #next(): void {
    if (this.#req !== undefined || this.#queue.length === 0 || this.#destroyed) return;
    const s = this.#socket;
    if (s === undefined) {
      if (!this.#connecting) this.#connect();
      return;
    }
    if (this.#doomed || this.#idleCheck !== undefined) return; // the socket's close (or the loop turn) comes first
    if (this.#used) {
      // A used socket: let anything already queued on it (FIN, RST, stray bytes) be read first.
      this.#idleCheck = setImmediate(() => {
        this.#idleCheck = undefined;
        if (this.#socket === s && !this.#doomed) this.#start(this.#queue.shift()!);
        else this.#next();
      });
      return;
    }
    this.#start(this.#queue.shift()!);
  }

  #connect(): void {
    this.#connecting = true;
    const u = this.#url;
    const opts = {
      host: u.host,
      hostname: u.hostname,
      protocol: u.protocol,
      port: u.port || (u.protocol === 'https:' ? '443' : '80'),
      servername: undefined,
      localAddress: null,
      httpSocket: undefined,
    } as unknown as buildConnector.Options;
    const opener = this.opener;
    this.#opts.connector(opts, (err, socket) => {
      this.#connecting = false;
      this.opener = undefined;
      if (err !== null || socket === null) {
        this.emit('connectionError', this.#opts.origin, [this], err);
        // Every queued request fails with the connect error (as undici fails its pending ones).
        const queued = this.#queue.splice(0);
        for (const p of queued) p.handler.onError?.(err ?? new SocketError('connect failed'));
        this.#closeIfDone();
        return;
      }
      const s = socket as Socket;
      if (this.#destroyed) {
        s.destroy();
        return;
      }
      this.#attach(s);
    }, opener);
  }

  #attach(s: Socket): void {
    this.#socket = s;
    this.#doomed = false;
    this.#used = false;
    this.#state = S_IDLE;
    this.#partial = undefined;
    this.#rest = undefined;
    this.#paused = false;
    this.remoteAddress = s.remoteAddress;
    this.timings.h2 = false;
    const l: SocketListeners = {
      data: (d: Buffer) => this.#onData(d),
      end: () => this.#onEnd(s),
      error: (err: Error) => this.#onSocketError(s, err),
      close: () => this.#onClose(s),
      timeout: () => this.#onIdleTimeout(s),
    };
    this.#listeners = l;
    s.on('data', l.data);
    s.on('end', l.end);
    s.on('error', l.error);
    s.on('close', l.close);
    s.on('timeout', l.timeout);
    this.#setIdle(this.#opts.keepAliveMs);
    this.emit('connect', this.#opts.origin, [this]);
    this.#next();
  }

  /** The socket's idle limit (Node's per-socket timer, refreshed by every read and write). */
  #setIdle(ms: number): void {
    if (ms === this.#idleMs) return;
    this.#idleMs = ms;
    this.#socket?.setTimeout(ms);
  }

  #onIdleTimeout(s: Socket): void {
    if (this.#socket !== s || this.#req !== undefined || this.#queue.length > 0) return; // a request's waits are the gateway's
    this.#socketError = new InformationalError('socket idle timeout');
    s.destroy();
  }

  /** The error the socket's close reports (first one wins). */
  #socketError: Error | undefined;

  #onSocketError(s: Socket, err: Error): void {
    if (this.#socket !== s) return;
    this.#socketError ??= err;
    if (this.#req !== undefined) this.#fail(err);
  }

  #onEnd(s: Socket): void {
    if (this.#socket !== s) return;
    this.#doomed = true;
    if (this.#req !== undefined && !this.#aborted) {
      if (this.#paused) {
        // Bytes wait for the client to take what came before: judge the end once they are parsed.
        this.#endPending = true;
        return;
      }
      if (this.#state === S_UNTIL_CLOSE) this.#complete(EMPTY, 0);
      else this.#fail(new SocketError('other side closed'));
    } else {
      this.#socketError ??= new SocketError('other side closed');
    }
    s.destroy();
  }

  /** The upstream ended a close-delimited body while the client's side was paused. */
  #endPending = false;

  #onClose(s: Socket): void {
    if (this.#socket !== s) return;
    const err = this.#socketError ?? new SocketError('closed');
    this.#socketError = undefined;
    this.#socket = undefined;
    this.#listeners = undefined;
    this.#doomed = false;
    this.#idleMs = 0;
    if (this.#idleCheck !== undefined) {
      clearImmediate(this.#idleCheck);
      this.#idleCheck = undefined;
    }
    if (this.#req !== undefined && !this.#endPending) this.#fail(err);
    this.emit('disconnect', this.#opts.origin, [this], err);
    if (this.#destroyed || (this.#closeRequested && this.#queue.length === 0 && this.#req === undefined)) {
      this.#destroyed = true;
      this.#resolveClose();
      return;
    }
    this.#next();
  }

  // ---- request -----------------------------------------------------------------------------

  #start(p: Pending): void {
    const s = this.#socket!;
    const { opts, handler } = p;
    const method = opts.method;
    this.#req = p;
    this.#method = method;
    this.#upgrade = typeof opts.upgrade === 'string' && opts.upgrade !== '';
    this.#aborted = false;
    this.#status = 0;
    this.#keepAlive = true;
    this.#trailers = [];
    this.#trailerSize = 0;
    this.#endPending = false;
    // One abort per request: a stale abort kept by an earlier request's handler must not reach this one.
    const abort = (err?: Error): void => {
      if (this.#req === p) this.#abortCurrent(err);
    };

    // The head, built as one string (host first, as undici writes it).
    let head: string;
    try {
      head = this.#buildHead(opts, method);
    } catch (err) {
      this.#req = undefined;
      handler.onError?.(err as Error);
      this.#next();
      return;
    }
    try {
      handler.onConnect?.(abort);
    } catch (err) {
      this.#fail(err as Error);
      return;
    }
    if (this.#aborted || this.#req !== p) return;
    this.#state = S_HEAD;
    this.#scanFrom = 0;
    this.#checkedTo = 0;
    this.#partial = undefined;
    // HEAD (a body may follow it from a broken server), upgrades: the connection is not reused (as undici).
    if (method === 'HEAD' || this.#upgrade) this.#keepAlive = false;

    const body = opts.body as unknown;
    if (body === null || body === undefined || (typeof body === 'string' && body.length === 0) || (Buffer.isBuffer(body) && body.length === 0)) {
      s.write(this.#bodyLength === 0 || (this.#bodyLength < 0 && expectsPayload(method)) ? `${head}content-length: 0\r\n\r\n` : `${head}\r\n`, 'latin1');
      this.#writing = false;
    } else if (typeof body === 'string' || Buffer.isBuffer(body) || body instanceof Uint8Array) {
      const buf = typeof body === 'string' ? Buffer.from(body) : (body as Buffer);
      if (this.#bodyLength >= 0 && this.#bodyLength !== buf.length) {
        this.#fail(new RequestContentLengthMismatchError());
        return;
      }
      if (!expectsPayload(method)) this.#keepAlive = false;
      s.cork();
      s.write(`${head}content-length: ${buf.length}\r\n\r\n`, 'latin1');
      s.write(buf);
      s.uncork();
      this.#writing = false;
    } else if (typeof (body as Readable).on === 'function') {
      this.#head = head;
      this.#bodySent = 0;
      this.#writing = true;
      this.#body = body as Readable;
      this.#pipeBody(body as Readable, s);
    } else {
      this.#fail(new InvalidArgumentError('unsupported request body'));
    }
  }

  /** `METHOD path HTTP/1.1`, host, connection, then the caller's fields (Content-Length taken out: written last). */
  #buildHead(opts: Dispatcher.DispatchOptions, method: string): string {
    if (!TOKEN_RE.test(method)) throw new InvalidArgumentError('invalid method');
    const path = opts.path;
    if (typeof path !== 'string' || path.length === 0 || BAD_VALUE_RE.test(path) || path.includes(' ')) throw new InvalidArgumentError('invalid request path');
    let fields = '';
    // Every name and every value is judged at once, as one string each: a character is valid
    // in the concatenation exactly when it is in its own field, so one test of each stands for
    // one per field (measured, docs/benchmarks.md §30: the regular-expression calls of a proxied
    // request ~2k instructions fewer). The first faulty field is then found for the error.
    let names = '';
    let values = '';
    const checked = (opts as CheckedDispatchOptions).fieldsChecked === true;
    let host: string | undefined;
    let length = -1;
    const h = opts.headers;
    const flat: unknown[] = Array.isArray(h) ? h : h !== null && h !== undefined ? Object.entries(h).flat() : [];
    for (let i = 0; i < flat.length; i += 2) {
      const name = String(flat[i]);
      const v = flat[i + 1];
      if (v === undefined) continue;
      const list = Array.isArray(v) ? (v as unknown[]) : [v];
      for (const one of list) {
        const value = one === null ? '' : String(one);
        if (!checked) values += value;
        const lower = framingName(name);
        if (lower === 'host') {
          if (host !== undefined) throw new InvalidArgumentError('duplicate host header');
          host = value;
          continue;
        }
        if (lower === 'content-length') {
          if (length >= 0 || !/^\d+$/.test(value)) throw new InvalidArgumentError('invalid content-length header');
          length = Number(value);
          continue;
        }
        if (lower === 'connection') {
          // As undici: close or keep-alive only (the gateway sends neither; a hook might).
          const v = value.toLowerCase();
          if (v === 'close') this.#keepAlive = false;
          else if (v !== 'keep-alive') throw new InvalidArgumentError('invalid connection header');
          continue;
        }
        if (lower === 'transfer-encoding' || lower === 'keep-alive' || lower === 'upgrade') throw new InvalidArgumentError(`invalid ${lower} header`);
        if (name.length === 0) throw new InvalidArgumentError('invalid header key');
        if (!checked) names += name;
        fields += `${name}: ${value}\r\n`;
      }
    }
    if (BAD_VALUE_RE.test(values) || (names.length > 0 && !TOKEN_RE.test(names))) throw faultyField(flat);
    this.#bodyLength = length;
    const connection = this.#upgrade ? `connection: upgrade\r\nupgrade: ${opts.upgrade as string}\r\n` : method === 'HEAD' || !this.#keepAlive ? 'connection: close\r\n' : 'connection: keep-alive\r\n';
    return `${method} ${path} HTTP/1.1\r\n${host === undefined ? this.#hostHeader : `host: ${host}\r\n`}${connection}${fields}`;
  }

  /** A streamed request body: the head goes with its first chunk (corked), backpressure by 'drain'. */
  #pipeBody(body: Readable, s: Socket): void {
    const known = this.#bodyLength >= 0;
    let first = true;
    const cleanup = (): void => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      body.off('close', onBodyClose);
      s.off('drain', onDrain);
    };
    const onData = (chunk: Buffer): void => {
      if (this.#body !== body || s.destroyed) return;
      const len = chunk.length;
      if (len === 0) return;
      if (known && this.#bodySent + len > this.#bodyLength) {
        cleanup();
        this.#fail(new RequestContentLengthMismatchError());
        return;
      }
      s.cork();
      if (first) {
        first = false;
        if (!expectsPayload(this.#method)) this.#keepAlive = false;
        s.write(known ? `${this.#head}content-length: ${this.#bodyLength}\r\n\r\n` : `${this.#head}transfer-encoding: chunked\r\n\r\n`, 'latin1');
      }
      if (!known) s.write(`${len.toString(16)}\r\n`, 'latin1');
      this.#bodySent += len;
      let ok = s.write(chunk);
      if (!known) ok = s.write('\r\n', 'latin1') && ok;
      s.uncork();
      if (!ok) body.pause();
    };
    const onDrain = (): void => {
      if (this.#body === body) body.resume();
    };
    const onEnd = (): void => {
      cleanup();
      if (this.#body !== body) return;
      this.#body = undefined;
      this.#writing = false;
      if (s.destroyed) return;
      if (first) {
        s.write(this.#bodyLength === 0 || expectsPayload(this.#method) ? `${this.#head}content-length: 0\r\n\r\n` : `${this.#head}\r\n`, 'latin1');
      } else if (!known) {
        s.write('0\r\n\r\n', 'latin1');
      }
      this.#head = '';
      if (known && this.#bodySent !== this.#bodyLength) this.#fail(new RequestContentLengthMismatchError());
    };
    const onError = (err: Error): void => {
      cleanup();
      if (this.#body === body) this.#fail(err);
    };
    const onBodyClose = (): void => {
      // Closed without 'end' or 'error': the body was cut (undici's RequestAbortedError).
      queueMicrotask(() => {
        if (this.#body !== body) return;
        cleanup();
        this.#fail(new RequestAbortedError());
      });
    };
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
    body.on('close', onBodyClose);
    s.on('drain', onDrain);
    if (body.readableEnded) queueMicrotask(onEnd);
    else body.resume();
  }

  /** The handler's abort (handed to onConnect). */
  #abortCurrent(err?: Error): void {
    if (this.#req === undefined || this.#aborted) return;
    this.#fail(err ?? new RequestAbortedError());
  }

  /** The request in flight ends with an error: its handler told once, its body and socket destroyed. */
  #fail(err: Error, later = false): void {
    const p = this.#req;
    if (p === undefined) return;
    this.#aborted = true;
    this.#req = undefined;
    this.#state = S_IDLE;
    this.#partial = undefined;
    this.#rest = undefined;
    this.#doomed = true;
    const body = this.#body;
    this.#body = undefined;
    this.#writing = false;
    if (body !== undefined && !body.destroyed) body.destroy();
    this.#socketError ??= err;
    this.#socket?.destroy();
    if (later) {
      setImmediate(() => {
        try {
          p.handler.onError?.(err);
        } finally {
          this.#closeIfDone();
        }
      });
      return;
    }
    try {
      p.handler.onError?.(err);
    } finally {
      this.#closeIfDone();
    }
  }

  // ---- response ----------------------------------------------------------------------------

  #onData(d: Buffer): void {
    if (this.#paused) {
      this.#rest = this.#rest === undefined ? d : Buffer.concat([this.#rest, d]);
      return;
    }
    if (this.#req === undefined || this.#state === S_IDLE) {
      // Bytes nobody asked for: the connection cannot be trusted with another request.
      this.#socketError ??= new SocketError('bad response');
      this.#doomed = true;
      this.#socket?.destroy();
      return;
    }
    this.#parse(d, 0);
  }

  /**
   * Parse `d` from `at`; errors (a broken response, a throwing handler) fail the request. The
   * handler hears of a parse error a loop turn later, as with undici (whose parser errors come
   * back through the socket's 'error' event): what it passed on in this turn (a response head
   * and body bytes written to the client) is flushed before it learns the answer broke.
   */
  #parse(d: Buffer, at: number): void {
    this.#parsing = true;
    try {
      this.#run(d, at);
    } catch (err) {
      this.#fail(err as Error, true);
    } finally {
      this.#parsing = false;
    }
  }

  #run(d: Buffer, at: number): void {
    const end = d.length;
    while (at < end || this.#state === S_LENGTH) {
      if (this.#req === undefined || this.#aborted) return;
      if (this.#paused) {
        if (at < end) this.#rest = this.#rest === undefined ? d.subarray(at) : Buffer.concat([d.subarray(at), this.#rest]);
        return;
      }
      switch (this.#state) {
        case S_HEAD:
          at = this.#readHead(d, at);
          break;
        case S_LENGTH: {
          const left = this.#left;
          if (left === 0) {
            this.#complete(d, at);
            return;
          }
          if (at >= end) return;
          const n = end - at < left ? end - at : left;
          this.#left = left - n;
          const chunk = at === 0 && n === end ? d : d.subarray(at, at + n);
          at += n;
          if (this.#req.handler.onData?.(chunk) === false) this.#pause();
          if (this.#left === 0 && !this.#paused) {
            this.#complete(d, at);
            return;
          }
          break;
        }
        case S_CHUNK_DATA: {
          const left = this.#left;
          const n = end - at < left ? end - at : left;
          this.#left = left - n;
          const chunk = at === 0 && n === end ? d : d.subarray(at, at + n);
          at += n;
          if (this.#left === 0) this.#state = S_CHUNK_END;
          if (this.#req.handler.onData?.(chunk) === false) this.#pause();
          break;
        }
        case S_CHUNK_SIZE:
        case S_CHUNK_END:
        case S_TRAILERS:
          at = this.#readBodyLine(d, at);
          break;
        case S_UNTIL_CLOSE: {
          const chunk = at === 0 ? d : d.subarray(at);
          at = end;
          if (this.#req.handler.onData?.(chunk) === false) this.#pause();
          break;
        }
        default:
          // S_IDLE with bytes left: handled by #complete (stray bytes).
          return;
      }
    }
  }

  #pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.#socket?.pause();
  }

  /** The handler's resume (after onHeaders or onData returned false). */
  readonly #resumeFn = (): void => {
    if (!this.#paused || this.#req === undefined) return;
    if (this.#parsing) {
      // Called from inside a handler callback: carry on after it returns.
      queueMicrotask(this.#resumeFn);
      return;
    }
    this.#paused = false;
    const rest = this.#rest;
    this.#rest = undefined;
    if (rest !== undefined && rest.length > 0) this.#parse(rest, 0);
    else if (this.#state === S_LENGTH && this.#left === 0) this.#parse(EMPTY, 0);
    if (this.#paused || this.#req === undefined) return;
    if (this.#endPending) {
      // The upstream closed while we held its bytes: a close-delimited body ends here, anything else was cut.
      if (this.#state === S_UNTIL_CLOSE) this.#complete(EMPTY, 0);
      else this.#fail(new SocketError('other side closed'));
      return;
    }
    this.#socket?.resume();
  };

  /**
   * Collect the response head; at its end, parse it and hand it on. Returns where parsing
   * goes on in `d`.
   */
  #readHead(d: Buffer, at: number): number {
    let buf: Buffer;
    let from: number;
    let base: number; // where the head starts in buf
    const partial = this.#partial;
    if (partial === undefined) {
      buf = d;
      base = at;
      from = at;
    } else {
      buf = Buffer.concat([partial, d.subarray(at)]);
      base = 0;
      from = this.#scanFrom;
      at = -partial.length + at; // so that (index in buf) + at = index in d
    }
    if (this.#req!.handler.onResponseStarted !== undefined && this.#status === 0 && partial === undefined && from === base) {
      this.#status = -1; // response started (reset to the status once the head is read)
      this.#req!.handler.onResponseStarted();
      if (this.#req === undefined || this.#aborted) return d.length;
    }
    // Empty lines before the status line are skipped (as llhttp does: a stray CRLF after a body is a known server bug).
    while (from === base && buf[base] === CR && buf[base + 1] === LF) {
      base += 2;
      from = base;
    }
    const rawLimit = this.#opts.maxHeaderSize * 4 + 1024;
    // Find the empty line that ends the head; every LF must follow a CR.
    let lineStart = from;
    let headEnd = -1;
    for (;;) {
      const lf = buf.indexOf(LF, lineStart);
      if (lf < 0) break;
      if (lf === base || buf[lf - 1] !== CR) throw parserError('LF without CR in the response head', 'LF_EXPECTED');
      if (lf - 1 === lineStart && lineStart > base) {
        headEnd = lf + 1;
        break;
      }
      lineStart = lf + 1;
    }
    if (headEnd < 0) {
      if (buf.length - base > rawLimit) throw new HeadersOverflowError();
      // Judge the lines so far now, as llhttp does byte by byte: garbage is a protocol error at
      // once, not a wait for a head that never ends (a response timeout).
      let line = base + this.#checkedTo;
      while (line < lineStart) {
        const cr = buf.indexOf(LF, line) - 1;
        checkHeadLine(buf, line, cr, line === base, true);
        line = cr + 2;
      }
      this.#checkedTo = lineStart - base;
      // A CR at the end can only end the line: the line before it is then judged whole.
      const crEnd = buf[buf.length - 1] === CR;
      const upTo = crEnd ? buf.length - 1 : buf.length;
      if (lineStart < upTo) checkHeadLine(buf, lineStart, upTo, lineStart === base, crEnd);
      this.#partial = base === 0 ? buf : buf.subarray(base);
      this.#scanFrom = lineStart - base;
      return d.length;
    }
    if (headEnd - base > rawLimit) throw new HeadersOverflowError();
    this.#partial = undefined;
    this.#scanFrom = 0;
    this.#checkedTo = 0;
    this.#onHead(buf, base, headEnd);
    // Where the head ended, in d's terms.
    return partial === undefined ? headEnd : headEnd + at;
  }

  /** A complete response head in buf[start, end) (end is after its empty line). */
  #onHead(buf: Buffer, start: number, end: number): void {
    // Status line: HTTP/1.x SP 3DIGIT [SP reason] CRLF
    if (
      end - start < 14 ||
      buf[start] !== 0x48 ||
      buf[start + 1] !== 0x54 ||
      buf[start + 2] !== 0x54 ||
      buf[start + 3] !== 0x50 ||
      buf[start + 4] !== 0x2f ||
      buf[start + 5] !== 0x31 ||
      buf[start + 6] !== 0x2e
    ) {
      throw parserError('the response does not start with HTTP/1.x', 'INVALID_CONSTANT');
    }
    const minor = buf[start + 7]!;
    if (minor !== 0x30 && minor !== 0x31) throw parserError('unsupported HTTP version in the response', 'INVALID_VERSION');
    const d0 = buf[start + 9]! - 0x30;
    const d1 = buf[start + 10]! - 0x30;
    const d2 = buf[start + 11]! - 0x30;
    if (buf[start + 8] !== 0x20 || d0 < 0 || d0 > 9 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) throw parserError('invalid status code in the response', 'INVALID_STATUS');
    const status = d0 * 100 + d1 * 10 + d2;
    let p = start + 12;
    let statusText = '';
    const sep = buf[p];
    if (sep === 0x20) {
      const lineEnd = buf.indexOf(CR, p);
      for (let i = p + 1; i < lineEnd; i++) if (VALUE_BYTE[buf[i]!] === 0) throw parserError('invalid character in the reason phrase', 'INVALID_STATUS');
      statusText = latin1(buf, p + 1, lineEnd);
      p = lineEnd;
    } else if (sep !== CR) {
      throw parserError('invalid status line in the response', 'INVALID_STATUS');
    }
    // A CR ends a line only before an LF: a bare CR is never a line end (RFC 9112 §2.2).
    if (buf[p + 1] !== LF) throw parserError('CR without LF in the status line', 'LF_EXPECTED');
    p += 2; // CRLF

    // Header fields, as strings: the section is decoded once and each name and value is a
    // slice of it. Measured (docs/benchmarks.md §30): a Buffer view per field (undici's form)
    // and its decoding later cost ~10k instructions per response of nginx's 8 fields, ~5 % of
    // a proxied request; consumers read both forms (http/headers.ts fieldText).
    const headers: string[] = [];
    const last = end - 2; // the empty line
    const text = p < last ? latin1(buf, p, last) : '';
    const at = p;
    const max = this.#opts.maxHeaderSize;
    let size = 0;
    let contentLength = -1;
    let chunked = false;
    let te = false;
    let chunkedSeen = false;
    let connClose = minor === 0x30;
    let keepAliveHint: string | undefined;
    // One regular expression vouches for every field line at once (token, ':', value bytes,
    // CRLF); the lines are then cut at their colon and CR. Measured (docs/benchmarks.md §30,
    // bench/icount.ts): ~2k instructions less per proxied request of nginx's 8 fields than the
    // byte loops below. A head it refuses goes through those loops, which name the first fault
    // as llhttp does.
    const valid = FIELD_LINES.test(text);
    while (p < last) {
      let nameEnd: number;
      let vStart: number;
      let q: number;
      if (valid) {
        nameEnd = at + text.indexOf(':', p - at);
        q = at + text.indexOf('\r', nameEnd - at);
        vStart = nameEnd + 1;
        while (vStart < q && (buf[vStart] === 0x20 || buf[vStart] === 0x09)) vStart++;
      } else {
        const c0 = buf[p]!;
        if (c0 === 0x20 || c0 === 0x09) throw parserError('obsolete line folding in the response head', 'INVALID_HEADER_TOKEN');
        q = p;
        while (TCHAR[buf[q]!] === 1) q++;
        if (q === p || buf[q] !== 0x3a) throw parserError('invalid header field name in the response', 'INVALID_HEADER_TOKEN');
        nameEnd = q;
        q++;
        while (buf[q] === 0x20 || buf[q] === 0x09) q++;
        vStart = q;
        while (buf[q] !== CR) {
          if (VALUE_BYTE[buf[q]!] === 0) throw parserError('invalid character in a response header value', 'INVALID_HEADER_TOKEN');
          q++;
        }
      }
      let vEnd = q;
      while (vEnd > vStart && (buf[vEnd - 1] === 0x20 || buf[vEnd - 1] === 0x09)) vEnd--;
      size += nameEnd - p + (vEnd - vStart);
      if (size >= max) throw new HeadersOverflowError();
      const nameLen = nameEnd - p;
      // Framing fields (Content-Length 14, Transfer-Encoding 17, Connection / Keep-Alive 10).
      const name = text.slice(p - at, nameEnd - at);
      const value = text.slice(vStart - at, vEnd - at);
      if (nameLen === 14 || nameLen === 17 || nameLen === 10) {
        const lower = framingName(name);
        if (lower === 'content-length') {
          if (vEnd === vStart || vEnd - vStart > 15) throw parserError('invalid Content-Length in the response', 'INVALID_CONTENT_LENGTH');
          let n = 0;
          for (let i = vStart; i < vEnd; i++) {
            const c = buf[i]! - 0x30;
            if (c < 0 || c > 9) throw parserError('invalid Content-Length in the response', 'INVALID_CONTENT_LENGTH');
            n = n * 10 + c;
          }
          if (contentLength >= 0 && contentLength !== n) throw parserError('conflicting Content-Length values in the response', 'UNEXPECTED_CONTENT_LENGTH');
          if (contentLength >= 0) {
            // The same length again: one field is passed on (RFC 9110 §8.6).
            if (buf[q + 1] !== LF) throw parserError('CR without LF in the response head', 'LF_EXPECTED');
            p = q + 2;
            continue;
          }
          contentLength = n;
        } else if (lower === 'transfer-encoding') {
          // Codings are a list over every Transfer-Encoding field: chunked counts when it is the
          // last one (else the body runs until the close, RFC 9112 §6.3), and only once.
          const codings = value.toLowerCase().split(',');
          for (const raw of codings) {
            const c = raw.trim();
            if (c === '') continue;
            if (c === 'chunked') {
              if (chunkedSeen) throw parserError('chunked applied twice in the response', 'INVALID_TRANSFER_ENCODING');
              chunkedSeen = true;
              chunked = true;
            } else chunked = false;
          }
          te = true;
        } else if (lower === 'connection') {
          const v = value.toLowerCase();
          if (/(^|,)\s*close\s*(,|$)/.test(v)) connClose = true;
          else if (minor === 0x30 && /(^|,)\s*keep-alive\s*(,|$)/.test(v)) connClose = false;
        } else if (lower === 'keep-alive') {
          keepAliveHint = value;
        }
      }
      headers.push(name, value);
      p = q + 2;
      if (buf[q + 1] !== LF) throw parserError('CR without LF in the response head', 'LF_EXPECTED');
    }
    if (te && contentLength >= 0) throw parserError('Content-Length with Transfer-Encoding in the response', 'UNEXPECTED_CONTENT_LENGTH');

    const p0 = this.#req!;
    const handler = p0.handler;
    // undici's handler typing says Buffer[]; these are strings, which every Gatewise handler reads (RawField).
    const fields = headers as unknown as Buffer[];
    if (status < 200 && status >= 100) {
      if (status === 101) {
        if (!this.#upgrade) throw new SocketError('bad upgrade');
        this.#switch(status, headers, buf.subarray(end), statusText);
        return;
      }
      // 100, 102, 103 …: handed on, then the final head is awaited (no body, no framing). A 100
      // here was never asked for (Expect requests go on their own client), but RFC 9110 §15.2
      // has a client parse 1xx answers it does not expect: the handler skips it. (undici's
      // client ends the connection on any 100, which made the gateway's 502 of a good answer.)
      this.#status = 0;
      handler.onHeaders?.(status, fields, this.#resumeFn, statusText);
      this.#state = S_HEAD;
      return;
    }
    this.#status = status;
    if (connClose) this.#keepAlive = false;
    else if (keepAliveHint !== undefined) {
      const m = KEEPALIVE_TIMEOUT.exec(keepAliveHint);
      if (m !== null) {
        const ms = Math.min(Number(m[1]) * 1000 - (this.#opts.keepAliveThresholdMs ?? 1000), this.#opts.keepAliveMs);
        if (ms <= 0) this.#keepAlive = false;
        else this.#setIdle(ms);
      } else this.#setIdle(this.#opts.keepAliveMs);
    } else this.#setIdle(this.#opts.keepAliveMs);
    if (this.#method === 'HEAD' || status === 204 || status === 304 || status < 100) this.#state = S_LENGTH, (this.#left = 0);
    else if (chunked) this.#state = S_CHUNK_SIZE;
    else if (contentLength >= 0) {
      this.#state = S_LENGTH;
      this.#left = contentLength;
    } else {
      this.#state = S_UNTIL_CLOSE;
      this.#keepAlive = false;
    }
    if (handler.onHeaders?.(status, fields, this.#resumeFn, statusText) === false) this.#pause();
    // A 204 has no body, so a non-zero Content-Length on it is false (RFC 9110 §8.6): the answer
    // fails after its head, as undici's length check fails it. (A 304 may carry the length of
    // the representation it stands for.)
    if (status === 204 && contentLength > 0 && this.#req === p0) throw new ResponseContentLengthMismatchError();
  }

  /** Chunk-size lines, the CRLF after chunk data, and trailer lines. Returns where parsing goes on. */
  #readBodyLine(d: Buffer, at: number): number {
    let buf = d;
    let start = at;
    const partial = this.#partial;
    if (partial !== undefined) {
      buf = Buffer.concat([partial, d.subarray(at)]);
      start = 0;
    }
    const lf = buf.indexOf(LF, start);
    if (lf < 0) {
      // Judge what is there now (llhttp refuses a bad byte as it comes, not at the line's end).
      // A CR at the end can only end the line: the line before it is then judged whole.
      const crEnd = buf[buf.length - 1] === CR;
      const upTo = crEnd ? buf.length - 1 : buf.length;
      if (this.#state === S_CHUNK_SIZE) chunkLine(buf, start, upTo, crEnd);
      else if (this.#state === S_TRAILERS && upTo > start) checkHeadLine(buf, start, upTo, false, crEnd);
      const bound = this.#state === S_TRAILERS ? this.#opts.maxHeaderSize * 4 + 1024 : MAX_CHUNK_LINE;
      if (buf.length - start > bound) {
        if (this.#state === S_TRAILERS) throw new HeadersOverflowError();
        throw parserError('chunk size line too long in the response', 'INVALID_CHUNK_SIZE');
      }
      if (this.#state === S_CHUNK_END && buf.length - start >= 1 && buf[start] !== CR) throw parserError('no CRLF after chunk data in the response', 'STRICT');
      this.#partial = start === 0 ? buf : buf.subarray(start);
      return d.length;
    }
    this.#partial = undefined;
    const next = partial === undefined ? lf + 1 : lf + 1 - partial.length + at;
    if (lf === start || buf[lf - 1] !== CR) throw parserError('LF without CR in the chunked response body', 'LF_EXPECTED');
    const lineEnd = lf - 1;
    const state = this.#state;
    if (state === S_CHUNK_END) {
      if (lineEnd !== start) throw parserError('no CRLF after chunk data in the response', 'STRICT');
      this.#state = S_CHUNK_SIZE;
      return next;
    }
    if (state === S_CHUNK_SIZE) {
      const size = chunkLine(buf, start, lineEnd, true);
      if (size === 0) this.#state = S_TRAILERS;
      else {
        this.#state = S_CHUNK_DATA;
        this.#left = size;
      }
      return next;
    }
    // Trailers: field lines until an empty one.
    if (lineEnd === start) {
      const trailers = this.#trailers;
      this.#trailers = [];
      this.#completeWith(trailers, partial === undefined ? d : d, next);
      return d.length;
    }
    const c0 = buf[start]!;
    if (c0 === 0x20 || c0 === 0x09) throw parserError('obsolete line folding in the response trailers', 'INVALID_HEADER_TOKEN');
    let q = start;
    while (TCHAR[buf[q]!] === 1) q++;
    if (q === start || buf[q] !== 0x3a) throw parserError('invalid trailer field name in the response', 'INVALID_HEADER_TOKEN');
    const nameEnd = q;
    q++;
    while (q < lineEnd && (buf[q] === 0x20 || buf[q] === 0x09)) q++;
    const vStart = q;
    for (; q < lineEnd; q++) if (VALUE_BYTE[buf[q]!] === 0) throw parserError('invalid character in a response trailer value', 'INVALID_HEADER_TOKEN');
    let vEnd = lineEnd;
    while (vEnd > vStart && (buf[vEnd - 1] === 0x20 || buf[vEnd - 1] === 0x09)) vEnd--;
    const nameLen = nameEnd - start;
    if (nameLen === 14 || nameLen === 17 || nameLen === 4) {
      const lower = latin1(buf, start, nameEnd).toLowerCase();
      // Framing and routing fields may not be trailers (RFC 9110 §6.5.1; llhttp refuses them too).
      if (lower === 'content-length' || lower === 'transfer-encoding' || lower === 'host') throw parserError(`${lower} in the response trailers`, 'INVALID_TRAILER');
    }
    this.#trailerSize += nameEnd - start + (vEnd - vStart);
    if (this.#trailerSize >= this.#opts.maxHeaderSize) throw new HeadersOverflowError();
    this.#trailers.push(buf.subarray(start, nameEnd), buf.subarray(vStart, vEnd));
    return next;
  }

  /** A Content-Length (or bodiless) response is complete; `d[at…]` are bytes after it. */
  #complete(d: Buffer, at: number): void {
    this.#completeWith([], d, at);
  }

  #completeWith(trailers: Buffer[], d: Buffer, at: number): void {
    const p = this.#req!;
    // Decide the connection's fate before the handler runs (it may dispatch the next request here).
    const stray = at < d.length || (this.#rest !== undefined && this.#rest.length > 0);
    const reusable = this.#keepAlive && !stray && !this.#writing && this.#socket !== undefined && !this.#socket.readableEnded && !this.#doomed;
    if (this.#writing) {
      // The answer came before the whole request body was sent: stop sending it (undici's 'reset').
      const body = this.#body;
      this.#body = undefined;
      this.#writing = false;
      if (body !== undefined && !body.destroyed) body.destroy();
    }
    this.#req = undefined;
    this.#state = S_IDLE;
    this.#partial = undefined;
    this.#rest = undefined;
    this.#paused = false;
    this.#used = true;
    if (!reusable) {
      this.#doomed = true;
      this.#socketError ??= new InformationalError('reset');
    }
    try {
      p.handler.onComplete?.(trailers as unknown as string[]);
    } finally {
      if (!reusable) {
        const s = this.#socket;
        if (s !== undefined) s.destroy();
        else {
          // Its socket closed already (a close-delimited body the client took after the FIN).
          this.#closeIfDone();
          this.#next();
        }
      } else {
        const s = this.#socket;
        if (s !== undefined && s.isPaused()) s.resume();
        if (this.#closeRequested) this.#closeIfDone();
        else this.#next();
      }
    }
  }

  /** 101 Switching Protocols: the socket leaves this client for the handler's onUpgrade. */
  #switch(status: number, headers: string[], rest: Buffer, statusText: string): void {
    const s = this.#socket!;
    const p = this.#req!;
    this.#req = undefined;
    this.#state = S_IDLE;
    this.#socket = undefined;
    s.pause();
    const l = this.#listeners!;
    this.#listeners = undefined;
    s.off('data', l.data);
    s.off('end', l.end);
    s.off('error', l.error);
    s.off('close', l.close);
    s.off('timeout', l.timeout);
    s.setTimeout(0);
    this.#idleMs = 0;
    if (rest.length > 0) s.unshift(rest);
    this.emit('disconnect', this.#opts.origin, [this], new InformationalError('upgrade'));
    try {
      p.handler.onUpgrade?.(status, headers as unknown as Buffer[], s);
    } catch (err) {
      s.destroy();
      p.handler.onError?.(err as Error);
    }
    this.#closeIfDone();
    void statusText;
    this.#next();
  }
}

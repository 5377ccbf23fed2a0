import { EventEmitter } from 'node:events';
import { connect as h2connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { buildConnector, Dispatcher } from 'undici';
import { errors } from '../http/undici.js';
import { BAD_VALUE_RE, TOKEN_RE } from '../http/token.js';
import type { CancelSignal } from '../timing/cancel.js';
import { H2NotProcessedError, H2StreamWatch, h2NotProcessed, noteGoaway } from './h2-streams.js';
import { NativeClient, type CheckedDispatchOptions } from './native-client.js';
import type { ConnectTimings, PoolConnector } from './timed-connector.js';

/*
 * One upstream HTTP/2 connection on node:http2 (clusters with `protocol: h2` or `h2c`), seen by
 * the pool and the gateway through the same surface as undici's `Client` and `NativeClient`
 * (connection-pool.ts `PoolConnection`, undici's dispatch-handler callbacks).
 *
 * Why not undici's HTTP/2 client: on ANY GOAWAY it destroys the session and fails every stream
 * on it. A graceful GOAWAY (NO_ERROR: Envoy's and gRPC's `max_connection_age`, a rolling
 * restart) lets the streams up to its last-stream-id finish (RFC 9113 §6.8): a POST the
 * upstream was still answering became a 502, and it could not be retried (it may have been
 * processed). Here a GOAWAY only ends the connection's part in the pool (`closed`: no new
 * stream goes on it, the pool opens another connection); Node's session lets the covered
 * streams end as the upstream ends them, and the streams above last-stream-id, or reset with
 * REFUSED_STREAM, fail with `H2NotProcessedError` (h2-streams.ts): not processed, sent again
 * whatever the method. undici's client also sends a request with a body alone, behind the
 * streams before it; here every request is a stream at once, up to `maxStreams`.
 *
 * The socket comes from the pool's connector (DNS, connect timeout, TLS verification, server
 * name, ALPN and the socket shaping stay in one place: plain-connector.ts); `http2.connect` is
 * handed it (`createConnection`). An h2 cluster whose upstream agreed only to http/1.1 by ALPN
 * gets the hand-written HTTP/1.1 client on that socket (`NativeClient`), to which everything
 * is then handed on.
 *
 * No timers of its own unless a request asks (`headersTimeout`, `bodyTimeout`; the gateway's
 * dispatchers pass 0 and time themselves): Node's per-stream timeout then.
 */

const { SocketError, InformationalError, RequestAbortedError, HeadersTimeoutError, BodyTimeoutError, InvalidArgumentError, ClientDestroyedError, ClientClosedError, RequestContentLengthMismatchError } = errors;

type Handler = Dispatcher.DispatchHandler;

export interface H2ClientOptions {
  /** The origin, `http://host:port` (h2c) or `https://host:port` (h2 by ALPN). */
  origin: string;
  /** Opens (and secures) the socket: the pool's timed connector, told the opening request's signal. */
  connector: PoolConnector;
  /** Streams at once on the session (the cluster's `h2MaxStreams`); more wait in this client's queue. */
  maxStreams: number;
  /** Default waits when a request names none (0: none). */
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  /** The response header limit (HTTP/2: SETTINGS_MAX_HEADER_LIST_SIZE; the HTTP/1.1 fallback's too), and the fallback's keep-alive. */
  maxHeaderSize: number;
  keepAliveMs: number;
  keepAliveThresholdMs: number;
  /** Where the connector writes its times (the pool's timed connector owns the same object). */
  timings: ConnectTimings;
}

interface Pending {
  readonly opts: Dispatcher.DispatchOptions;
  readonly handler: Handler;
}

/** One request on its stream. */
interface Running {
  readonly handler: Handler;
  stream: ClientHttp2Stream | undefined;
  body: Readable | undefined;
  /** Its final response head came. */
  responded: boolean;
  /** Settled (completed, failed or aborted): later events only clean up. */
  done: boolean;
  /** Its response's readable side ended: whether it came whole is known at the stream's close (`#decide`). */
  ended: boolean;
  bodyTimeoutMs: number;
  trailers: IncomingHttpHeaders | undefined;
}

/** Receive windows (as undici's HTTP/2 client sets them). */
const STREAM_WINDOW = 256 * 1024;
const CONNECTION_WINDOW = 512 * 1024;

/** Fields that are about one HTTP/1.1 connection and may not be sent in HTTP/2 (RFC 9113 §8.2.2). */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

export class H2Client extends EventEmitter {
  /** Requests dispatched and not yet finished (the pool's count). */
  active = 0;
  /** Completed requests (the pool's count). */
  uses = 0;
  /** When the last request finished (ms since epoch; the pool's). */
  lastUsed = 0;
  /** Kept by the pool from the 'connect' and 'disconnect' events. */
  connected = false;
  readonly timings: ConnectTimings;
  /** Unused: the TLS name comes from the connector (the pool's shared surface). */
  servername: string | undefined;
  remoteAddress: string | undefined;
  /** The signal of the request this connection is being opened for (the pool's; connection-pool.ts). */
  opener: CancelSignal | undefined = undefined;

  readonly #opts: H2ClientOptions;
  readonly #url: URL;
  readonly #scheme: string;
  #socket: Socket | undefined;
  #session: ClientHttp2Session | undefined;
  /** What the upstream's GOAWAY said (h2-streams.ts). */
  readonly #watch = new H2StreamWatch();
  #connecting = false;
  /** A GOAWAY came: no new stream on this session. */
  #goaway = false;
  /** The session is over (closed or destroyed). */
  #ended = false;
  #sessionError: Error | undefined;
  #closeRequested = false;
  #destroyed = false;
  #closeWaiters: Array<() => void> = [];
  readonly #queue: Pending[] = [];
  readonly #running = new Set<Running>();
  /** The upstream agreed only to http/1.1 (ALPN): everything goes to this client. */
  #h1: NativeClient | undefined;

  constructor(opts: H2ClientOptions) {
    super();
    this.#opts = opts;
    this.timings = opts.timings;
    this.#url = new URL(opts.origin);
    this.#scheme = this.#url.protocol === 'https:' ? 'https' : 'http';
  }

  /** Streams at once: `maxStreams` on an HTTP/2 session, 1 before it (as undici's) and on the HTTP/1.1 fallback. */
  get pipelining(): number {
    return this.#session !== undefined ? this.#opts.maxStreams : 1;
  }

  set pipelining(_n: number | undefined) {
    // The pool's shared surface: this client knows its own limit.
  }

  get destroyed(): boolean {
    return this.#h1 !== undefined ? this.#h1.destroyed : this.#destroyed;
  }

  /** No new request goes on this connection: close() was called, a GOAWAY came, or the session ended. */
  get closed(): boolean {
    if (this.#h1 !== undefined) return this.#h1.closed;
    return this.#closeRequested || this.#goaway || this.#ended;
  }

  get socket(): Socket | undefined {
    return this.#h1 !== undefined ? this.#h1.socket : this.#socket;
  }

  /** The upstream's GOAWAY on the current session, in words for a try's record (undefined: none came). */
  get goaway(): string | undefined {
    const w = this.#watch;
    return w.goawayLastStreamId < 0 ? undefined : `the upstream's GOAWAY (code ${w.goawayCode}, last-stream-id ${w.goawayLastStreamId})`;
  }

  dispatch(opts: Dispatcher.DispatchOptions, handler: Handler): boolean {
    const h1 = this.#h1;
    if (h1 !== undefined) return h1.dispatch(opts, handler);
    if (this.#destroyed || this.#closeRequested) {
      handler.onError?.(this.#destroyed ? new ClientDestroyedError() : new ClientClosedError());
      return false;
    }
    if (this.#goaway || this.#ended) {
      handler.onError?.(this.#unopened());
      return false;
    }
    this.#queue.push({ opts, handler });
    this.#pump();
    return true;
  }

  /** Take a request that has not started out of the queue (PoolConnection.drop): true when it was there. */
  drop(handler: Handler): boolean {
    if (this.#h1 !== undefined) return this.#h1.drop(handler);
    const q = this.#queue;
    for (let i = 0; i < q.length; i++) {
      if (q[i]!.handler !== handler) continue;
      q.splice(i, 1);
      this.#closeIfDone();
      return true;
    }
    return false;
  }

  /** Finish the requests under way, then close the session. */
  close(): Promise<void> {
    if (this.#h1 !== undefined) return this.#h1.close();
    if (this.#destroyed) return Promise.resolve();
    this.#closeRequested = true;
    return new Promise((resolve) => {
      this.#closeWaiters.push(resolve);
      this.#closeIfDone();
    });
  }

  /** Close at once: every request fails with `err`. */
  destroy(err?: Error | null): Promise<void> {
    if (this.#h1 !== undefined) return this.#h1.destroy(err);
    if (!this.#destroyed) {
      this.#destroyed = true;
      const e = err ?? new ClientDestroyedError();
      for (const p of this.#queue.splice(0)) p.handler.onError?.(e);
      for (const r of [...this.#running]) this.#fail(r, e);
      this.#session?.destroy();
      this.#socket?.destroy();
    }
    const s = this.#session;
    if (s === undefined || s.closed || s.destroyed) {
      if (!this.#connecting) this.#resolveClose();
      return Promise.resolve();
    }
    return new Promise((resolve) => s.once('close', () => resolve()));
  }

  /**
   * Once nothing of this client's is left on a session that takes no new stream (close() was
   * called, or a GOAWAY came), the session and its socket end. Not through Node's graceful
   * close alone: that ends the socket and waits for the peer's FIN, which a peer that keeps
   * its half open never sends (Node's own HTTP/2 server is one): the connection would never
   * leave the pool.
   */
  #closeIfDone(): void {
    if (this.#running.size > 0 || this.#queue.length > 0) return;
    if (!this.#closeRequested && !this.#goaway) return;
    const s = this.#session;
    if (s === undefined) {
      if (!this.#closeRequested || this.#connecting) return; // the connect's answer closes it
      this.#ended = true;
      this.#resolveClose();
      return;
    }
    s.destroy();
    this.#socket?.destroy();
  }

  #resolveClose(): void {
    const w = this.#closeWaiters;
    this.#closeWaiters = [];
    for (const f of w) f();
  }

  /** The error of a request that never got a stream on a session going away: not processed. */
  #unopened(): Error {
    const last = this.#watch.goawayLastStreamId;
    return new H2NotProcessedError(last >= 0 ? `the upstream's GOAWAY (last-stream-id ${last}) came before the request's HTTP/2 stream was opened` : 'the HTTP/2 connection closed before the request\'s stream was opened', false);
  }

  /** Fail every request still queued (never sent) with `err`. */
  #failQueued(err: Error): void {
    for (const p of this.#queue.splice(0)) p.handler.onError?.(err);
  }

  // ---- connection --------------------------------------------------------------------------

  /** Start queued requests while the session takes streams, connecting first if need be. */
  #pump(): void {
    const q = this.#queue;
    if (q.length === 0) return;
    const session = this.#session;
    if (session === undefined) {
      if (!this.#connecting && !this.#ended && !this.#destroyed) this.#connect();
      return;
    }
    while (q.length > 0 && this.#running.size < this.#opts.maxStreams && !this.#goaway && !this.#ended) this.#start(session, q.shift()!);
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
    this.#opts.connector(
      opts,
      (err, socket) => {
        this.#connecting = false;
        this.opener = undefined;
        if (err !== null || socket === null) {
          this.emit('connectionError', this.#opts.origin, [this], err);
          this.#failQueued(err ?? new SocketError('connect failed'));
          this.#closeIfDone();
          if (this.#destroyed) this.#resolveClose();
          return;
        }
        const s = socket as Socket;
        if (this.#destroyed) {
          s.destroy();
          this.#resolveClose();
          return;
        }
        this.remoteAddress = s.remoteAddress;
        if ((s as Socket & { alpnProtocol?: string | false }).alpnProtocol !== 'h2') {
          this.#fallBack(s);
          return;
        }
        this.#attach(s);
      },
      opener,
    );
  }

  #attach(s: Socket): void {
    this.#socket = s;
    // The windows undici's HTTP/2 client opened (256 KiB a stream, 512 KiB the connection; Node's
    // default is 64 KiB each, a stream's pace then one 64 KiB window per round trip), and the
    // response header limit of the HTTP/1.1 client (maxResponseHeaderSize; Node's default 64 KiB).
    const session = h2connect(this.#opts.origin, {
      createConnection: () => s,
      settings: { enablePush: false, initialWindowSize: STREAM_WINDOW, maxHeaderListSize: this.#opts.maxHeaderSize },
      peerMaxConcurrentStreams: this.#opts.maxStreams,
    });
    session.once('connect', () => {
      if (!session.destroyed) session.setLocalWindowSize(CONNECTION_WINDOW);
    });
    this.#session = session;
    const watch = this.#watch;
    session.on('goaway', (code: number, lastStreamId: number) => {
      noteGoaway(watch, code, lastStreamId);
      this.#goaway = true;
      // Node closes a session on a GOAWAY(NO_ERROR) once its streams end, and destroys it on
      // any other code. Requests still waiting for a stream were never sent.
      this.#failQueued(this.#unopened());
      this.#closeIfDone();
    });
    session.on('error', (err: Error) => {
      this.#sessionError ??= err;
    });
    session.once('close', () => {
      this.#ended = true;
      this.#session = undefined;
      const err = this.#sessionError ?? new SocketError('closed');
      this.#failQueued(this.#unopened());
      // Node ends each stream with the session; one it did not report settles here, judged as its own error would be.
      for (const r of [...this.#running]) {
        if (r.ended) this.#decide(r, err);
        else this.#streamFailed(r, err);
      }
      this.emit('disconnect', this.#opts.origin, [this], err);
      this.#resolveClose();
    });
    this.emit('connect', this.#opts.origin, [this]);
    this.#pump();
    this.#closeIfDone();
  }

  /** The upstream agreed only to http/1.1: the hand-written HTTP/1.1 client takes this socket, and every request from now on. */
  #fallBack(s: Socket): void {
    let first: Socket | undefined = s;
    const o = this.#opts;
    const h1 = new NativeClient({
      origin: o.origin,
      connector: (opts, cb, opener) => {
        if (first !== undefined) {
          const socket = first;
          first = undefined;
          cb(null, socket);
          return;
        }
        o.connector(opts, cb, opener);
      },
      maxHeaderSize: o.maxHeaderSize,
      keepAliveMs: o.keepAliveMs,
      keepAliveThresholdMs: o.keepAliveThresholdMs,
      timings: this.timings,
    });
    this.#h1 = h1;
    h1.on('connect', () => this.emit('connect', o.origin, [this]));
    h1.on('disconnect', (_origin: unknown, _targets: unknown, err: unknown) => this.emit('disconnect', o.origin, [this], err));
    h1.on('connectionError', (_origin: unknown, _targets: unknown, err: unknown) => this.emit('connectionError', o.origin, [this], err));
    for (const p of this.#queue.splice(0)) h1.dispatch(p.opts, p.handler);
    // close() came while the socket was opening: the HTTP/1.1 client finishes what it has, then closes.
    if (this.#closeRequested) void h1.close().then(() => this.#resolveClose());
  }

  // ---- request -----------------------------------------------------------------------------

  #start(session: ClientHttp2Session, p: Pending): void {
    const { opts, handler } = p;
    const r: Running = { handler, stream: undefined, body: undefined, responded: false, done: false, ended: false, bodyTimeoutMs: 0, trailers: undefined };
    let headers: OutgoingHttpHeaders;
    try {
      headers = this.#headers(opts);
    } catch (err) {
      handler.onError?.(err as Error);
      return;
    }
    this.#running.add(r);
    const abort = (err?: Error): void => this.#abort(r, err);
    try {
      handler.onConnect?.(abort);
    } catch (err) {
      this.#fail(r, err as Error);
      return;
    }
    if (r.done) return;
    const body = opts.body as unknown;
    const empty = body === null || body === undefined || (typeof body === 'string' && body.length === 0) || ((Buffer.isBuffer(body) || body instanceof Uint8Array) && body.length === 0);
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(headers, { endStream: empty });
    } catch (err) {
      // The session is going away under us (ERR_HTTP2_GOAWAY_SESSION, ERR_HTTP2_INVALID_SESSION): the stream was never opened.
      this.#fail(r, this.#goaway || this.#ended || session.closed || session.destroyed ? new H2NotProcessedError('the HTTP/2 stream was never opened', false, err) : (err as Error));
      return;
    }
    r.stream = stream;
    r.bodyTimeoutMs = opts.bodyTimeout ?? this.#opts.bodyTimeoutMs;
    const headersTimeoutMs = opts.headersTimeout ?? this.#opts.headersTimeoutMs;
    if (headersTimeoutMs > 0) stream.setTimeout(headersTimeoutMs);
    stream.on('headers', (h: IncomingHttpHeaders) => this.#interim(r, h));
    stream.once('response', (h: IncomingHttpHeaders) => this.#response(r, h));
    stream.on('data', (chunk: Buffer) => {
      if (r.done) return;
      if (handler.onData?.(chunk) === false) stream.pause();
    });
    stream.once('trailers', (t: IncomingHttpHeaders) => {
      r.trailers = t;
    });
    stream.once('end', () => this.#end(r));
    stream.once('error', (err: Error) => this.#streamFailed(r, err));
    stream.once('close', () => this.#streamClosed(r));
    stream.on('timeout', () => this.#abort(r, r.responded ? new BodyTimeoutError() : new HeadersTimeoutError()));
    if (empty) return;
    if (typeof body === 'string' || Buffer.isBuffer(body) || body instanceof Uint8Array) {
      stream.end(typeof body === 'string' ? Buffer.from(body) : body);
      return;
    }
    if (typeof (body as Readable).on === 'function') {
      this.#pipeBody(r, body as Readable, stream, headers['content-length'] === undefined ? -1 : Number(headers['content-length']));
      return;
    }
    this.#abort(r, new InvalidArgumentError('unsupported request body'));
  }

  /** The request's fields as HTTP/2 headers: pseudo-headers first, Host as :authority, no connection-specific fields. */
  #headers(opts: Dispatcher.DispatchOptions): OutgoingHttpHeaders {
    const method = opts.method;
    if (typeof opts.upgrade === 'string' && opts.upgrade !== '') throw new InvalidArgumentError(`upgrade "${opts.upgrade}" is not supported over HTTP/2`);
    if (method === 'CONNECT') throw new InvalidArgumentError('CONNECT is not supported over HTTP/2');
    if (!TOKEN_RE.test(method)) throw new InvalidArgumentError('invalid method');
    const path = opts.path;
    if (typeof path !== 'string' || path.length === 0 || BAD_VALUE_RE.test(path) || path.includes(' ')) throw new InvalidArgumentError('invalid request path');
    // No prototype: a field named `constructor`, `toString` or `__proto__` is a field like any other (review: they read Object's).
    const out: OutgoingHttpHeaders = Object.assign(Object.create(null) as OutgoingHttpHeaders, { ':method': method, ':scheme': this.#scheme, ':authority': this.#url.host, ':path': path });
    const checked = (opts as CheckedDispatchOptions).fieldsChecked === true;
    const h = opts.headers;
    const flat: unknown[] = Array.isArray(h) ? h : h !== null && h !== undefined ? Object.entries(h).flat() : [];
    for (let i = 0; i < flat.length; i += 2) {
      const v = flat[i + 1];
      if (v === undefined) continue;
      const name = String(flat[i]).toLowerCase();
      if (!checked && !TOKEN_RE.test(name)) throw new InvalidArgumentError('invalid header key');
      for (const one of Array.isArray(v) ? (v as unknown[]) : [v]) {
        const value = one === null ? '' : String(one);
        if (!checked && BAD_VALUE_RE.test(value)) throw new InvalidArgumentError(`invalid ${name} header`);
        if (name === 'host') {
          out[':authority'] = value;
          continue;
        }
        if (CONNECTION_SPECIFIC.has(name)) continue;
        // TE only as "trailers" (RFC 9113 §8.2.2; gRPC sends it).
        if (name === 'te' && value.trim().toLowerCase() !== 'trailers') continue;
        const had = out[name];
        if (had === undefined) out[name] = value;
        else if (name === 'cookie') out[name] = `${had as string}; ${value}`;
        else out[name] = `${had as string}, ${value}`;
      }
    }
    const body = opts.body as unknown;
    if (out['content-length'] === undefined && (Buffer.isBuffer(body) || body instanceof Uint8Array || typeof body === 'string')) {
      out['content-length'] = String(typeof body === 'string' ? Buffer.byteLength(body) : body.length);
    }
    return out;
  }

  /** A streamed request body, with backpressure from the stream's flow control. */
  #pipeBody(r: Running, body: Readable, stream: ClientHttp2Stream, length: number): void {
    r.body = body;
    let sent = 0;
    let ended = false;
    const cleanup = (): void => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      body.off('close', onBodyClose);
      stream.off('drain', onDrain);
    };
    const onData = (chunk: Buffer): void => {
      if (r.done || stream.destroyed || stream.writableEnded) return;
      sent += chunk.length;
      if (length >= 0 && sent > length) {
        cleanup();
        this.#abort(r, new RequestContentLengthMismatchError());
        return;
      }
      if (!stream.write(chunk)) body.pause();
    };
    const onDrain = (): void => {
      if (!r.done) body.resume();
    };
    const onEnd = (): void => {
      ended = true;
      cleanup();
      if (r.done || stream.destroyed) return;
      if (length >= 0 && sent !== length) {
        this.#abort(r, new RequestContentLengthMismatchError());
        return;
      }
      stream.end();
    };
    const onError = (err: Error): void => {
      cleanup();
      this.#abort(r, err);
    };
    const onBodyClose = (): void => {
      // Closed without 'end' or 'error': the body was cut (undici's RequestAbortedError).
      queueMicrotask(() => {
        if (ended) return;
        cleanup();
        this.#abort(r, new RequestAbortedError());
      });
    };
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
    body.on('close', onBodyClose);
    stream.on('drain', onDrain);
    if (body.readableEnded) queueMicrotask(onEnd);
    else body.resume();
  }

  /** A 1xx head (Node's 'headers' event on a client stream): handed on; the final head is awaited. */
  #interim(r: Running, h: IncomingHttpHeaders): void {
    if (r.done || r.responded) return;
    const status = Number(h[':status']);
    if (!(status >= 100 && status < 200)) return;
    r.handler.onHeaders?.(status, rawFields(h) as unknown as Buffer[], noop, '');
  }

  #response(r: Running, h: IncomingHttpHeaders): void {
    if (r.done) return;
    r.responded = true;
    const stream = r.stream!;
    stream.setTimeout(r.bodyTimeoutMs);
    const handler = r.handler;
    handler.onResponseStarted?.();
    if (r.done) return;
    const resume = (): void => {
      if (!r.done) stream.resume();
    };
    if (handler.onHeaders?.(Number(h[':status']), rawFields(h) as unknown as Buffer[], resume, '') === false && !r.done) stream.pause();
  }

  #end(r: Running): void {
    if (r.done) return;
    if (!r.responded) {
      this.#fail(r, new InformationalError('HTTP/2: stream half-closed (remote)'));
      return;
    }
    // Node ends a stream's readable side on END_STREAM, but also when the stream is reset or its
    // session dies mid-body, and at 'end' its rstCode does not yet tell them apart (a RST_STREAM
    // INTERNAL_ERROR after part of a body reads 0 there): the stream's close decides (review of
    // session 41: a body cut by the upstream's FIN or GOAWAY-then-close was passed on as complete).
    r.ended = true;
    const stream = r.stream!;
    const body = r.body;
    if (body !== undefined && !body.readableEnded && !body.destroyed) {
      // Answered before the whole request body was sent: stop sending it, and end the stream (RST_STREAM NO_ERROR, RFC 9113 §8.1).
      body.destroy();
      if (!stream.closed && !stream.destroyed) stream.close(constants.NGHTTP2_NO_ERROR);
    }
    if (stream.closed) this.#decide(r, undefined);
  }

  /**
   * A response whose readable side ended (`#end`), at its stream's close or its session's: whole
   * when the stream closed with NO_ERROR, else cut (`err`: the session's error, when it ended
   * first).
   */
  #decide(r: Running, err: Error | undefined): void {
    if (r.done) return;
    const stream = r.stream!;
    if (!stream.closed || stream.rstCode !== constants.NGHTTP2_NO_ERROR) {
      this.#fail(r, err ?? new SocketError(`HTTP/2 stream closed with code ${String(stream.rstCode)} before its response was complete`));
      return;
    }
    this.#settle(r);
    try {
      r.handler.onComplete?.((r.trailers ?? null) as unknown as string[]);
    } finally {
      this.#next();
    }
  }

  /** A stream error: not processed (REFUSED_STREAM, above the GOAWAY's last-stream-id) when no response came, else as Node reports it. */
  #streamFailed(r: Running, err: Error): void {
    if (r.done) return;
    if (!r.responded) {
      const np = r.stream === undefined ? { why: 'the HTTP/2 stream was never opened', streamOnly: false } : h2NotProcessed(r.stream, this.#watch);
      if (np !== undefined) {
        this.#fail(r, new H2NotProcessedError(np.why, np.streamOnly, err));
        return;
      }
    }
    this.#fail(r, err);
  }

  /** The stream closed with no 'end' and no 'error' (a RST_STREAM NO_ERROR or CANCEL, the session's end). */
  #streamClosed(r: Running): void {
    if (r.done) return;
    if (r.ended) {
      this.#decide(r, undefined);
      return;
    }
    if (!r.responded) {
      const np = h2NotProcessed(r.stream!, this.#watch);
      if (np !== undefined) {
        this.#fail(r, new H2NotProcessedError(np.why, np.streamOnly));
        return;
      }
    }
    this.#fail(r, new InformationalError('HTTP/2: stream closed before the response was complete'));
  }

  /** The handler's abort (handed to onConnect), and a timeout: RST_STREAM CANCEL, the session stays. */
  #abort(r: Running, err?: Error): void {
    if (r.done) return;
    const stream = r.stream;
    this.#fail(r, err ?? new RequestAbortedError());
    if (stream !== undefined && !stream.closed && !stream.destroyed) stream.close(constants.NGHTTP2_CANCEL);
  }

  #fail(r: Running, err: Error): void {
    if (r.done) return;
    this.#settle(r);
    const body = r.body;
    if (body !== undefined && !body.destroyed) body.destroy();
    try {
      r.handler.onError?.(err);
    } finally {
      this.#next();
    }
  }

  #settle(r: Running): void {
    r.done = true;
    this.#running.delete(r);
    const stream = r.stream;
    if (stream !== undefined) {
      stream.setTimeout(0);
      if (stream.isPaused()) stream.resume(); // what is left is read and dropped, so the session's window is given back
    }
  }

  #next(): void {
    this.#pump();
    this.#closeIfDone();
  }
}

function noop(): void {}

/** A response head's fields as name/value pairs (latin1 strings, as RawField), pseudo-headers left out. */
function rawFields(h: IncomingHttpHeaders): string[] {
  const out: string[] = [];
  for (const k in h) {
    if (k.charCodeAt(0) === 58 /* : */) continue;
    const v = h[k];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const one of v) out.push(k, one);
    else out.push(k, v);
  }
  return out;
}

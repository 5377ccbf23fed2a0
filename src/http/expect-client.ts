import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { buildConnector, Dispatcher } from 'undici';
import { errors } from './undici.js';

/** What `ExpectClient.dispatch` sends. */
export interface ExpectRequest {
  path: string;
  method: string;
  /** Flat [name, value, ...]; `expect: 100-continue` among them. */
  headers: string[];
  body: Readable | null;
}

/**
 * Where an ExpectClient's connection comes from: a connector it calls on `dispatch` (the
 * reverse gateway's endpoint connector, with the endpoint's origin), or a socket already
 * connected (the forward proxy's dial, direct or through an exit).
 */
export type ExpectConnection = Socket | { origin: string; connector: buildConnector.connector };

/**
 * A one-off upstream connection for a request that carries `Expect: 100-continue`, which
 * undici's HTTP/1.1 client refuses to send ("expect header not supported") and could not
 * honour anyway: it writes the request head only with the first body byte. This sends
 * the head at once with Node's HTTP client, over a socket from the endpoint's own connector
 * (same DNS, TLS and connect timeout) or over one already connected, and drives an undici
 * dispatch handler (the reverse gateway's `Attempt`, the forward proxy's `ForwardRelay`)
 * with what comes back: 1xx (100 included) through `onHeaders`, then the final head, body
 * and trailers. Never pooled: the connection is closed when the request ends.
 */
export class ExpectClient {
  /** The socket is connected (for the attempt record: always a new connection). */
  connected = false;
  readonly #origin: URL | undefined;
  readonly #connector: buildConnector.connector | undefined;
  #socket: Socket | undefined;
  #req: ClientRequest | undefined;
  /** The request body (a BodyRelay): destroyed with a failed try, as undici does, so a retry's relay alone reads the client. */
  #body: Readable | null = null;
  #closed = false;
  #done = false;

  constructor(from: ExpectConnection) {
    if ('connector' in from) {
      this.#origin = new URL(from.origin);
      this.#connector = from.connector;
    } else {
      this.#socket = from;
      this.connected = true;
    }
  }

  dispatch(opts: ExpectRequest, handler: Dispatcher.DispatchHandler): void {
    this.#body = opts.body;
    const u = this.#origin;
    if (u === undefined) {
      this.#send(opts, handler, this.#socket!);
      return;
    }
    const connect = this.#connector as unknown as (o: buildConnector.Options, cb: (err: Error | null, s: Socket) => void) => void;
    connect(
      { hostname: u.hostname, host: u.host, protocol: u.protocol, port: u.port || (u.protocol === 'https:' ? '443' : '80'), servername: undefined, localAddress: null, httpSocket: undefined },
      (err, socket) => {
        if (err !== null) {
          this.#finish(handler, err);
          return;
        }
        if (this.#closed) {
          socket.destroy();
          return;
        }
        this.connected = true;
        this.#socket = socket;
        this.#send(opts, handler, socket);
      },
    );
  }

  #send(opts: ExpectRequest, handler: Dispatcher.DispatchHandler, socket: Socket): void {
    const req = httpRequest({ method: opts.method, path: opts.path, headers: [...opts.headers, 'connection', 'close'] as unknown as Record<string, string>, setHost: false, createConnection: () => socket });
    this.#req = req;
    let started = false;
    const start = (): void => {
      if (!started) {
        started = true;
        handler.onResponseStarted?.();
      }
    };
    req.on('error', (e) => this.#finish(handler, e));
    req.on('information', (info: { statusCode: number; statusMessage: string; rawHeaders: string[] }) => {
      if (this.#done) return;
      start();
      handler.onHeaders!(info.statusCode, fields(info.rawHeaders), noop, info.statusMessage);
    });
    req.on('response', (res: IncomingMessage) => {
      if (this.#done) return;
      start();
      res.on('error', (e) => this.#finish(handler, e));
      // undici's own error for what undici would report here (this client stands in for it).
      res.on('aborted', () => this.#finish(handler, new errors.SocketError('the upstream closed the connection mid-response')));
      const resume = (): void => {
        res.resume();
      };
      if (handler.onHeaders!(res.statusCode!, fields(res.rawHeaders), resume, res.statusMessage ?? '') === false) res.pause();
      if (this.#done) return;
      res.on('data', (c: Buffer) => {
        if (!this.#done && handler.onData!(c) === false) res.pause();
      });
      res.on('end', () => {
        if (this.#done) return;
        this.#done = true;
        handler.onComplete!(res.rawTrailers.length > 0 ? res.rawTrailers : null);
        this.close();
      });
    });
    handler.onConnect!((e?: Error) => {
      req.destroy(e ?? new errors.RequestAbortedError());
    });
    if (this.#done) return;
    if (opts.body === null) req.end();
    else {
      opts.body.on('error', (e) => req.destroy(e));
      opts.body.pipe(req);
    }
  }

  #finish(handler: Dispatcher.DispatchHandler, err: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.close();
    this.#body?.destroy();
    handler.onError!(err);
  }

  /** Close the connection (the request is over, or it was given up). */
  close(): void {
    this.#closed = true;
    this.#req?.destroy();
    this.#socket?.destroy();
  }
}

/**
 * Node's raw header strings (latin1, as its parser decodes them) handed on as they are: every
 * Gatewise handler reads strings and undici's Buffers alike (http/headers.ts RawField), where
 * undici's typing says Buffer[].
 */
function fields(raw: string[]): Buffer[] {
  return raw as unknown as Buffer[];
}

function noop(): void {}

import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { Failure, classify } from '../failure/index.js';
import { plainAddress } from '../http/trust.js';
import type { GatewayContext } from './context.js';
import { requestEnd, requestRecord, type AttemptRecord, type EndedBy } from './events.js';
import { newRequestId, originForm } from './exchange.js';
import { buildUpstreamHead } from './request-headers.js';
import { respondWithFailure } from './responder.js';
import { buildResponseHead } from './response-headers.js';
import { normalizeHost, rewritePath, type Route } from './router.js';

function headBytes(status: number, headers: readonly string[]): string {
  let s = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
  for (let i = 0; i < headers.length; i += 2) s += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return s + '\r\n';
}

/**
 * A WebSocket (or other `Upgrade`) request: forwarded with undici's upgrade support;
 * on 101 the two sockets are spliced; any other answer is passed back and the
 * connection closed. Failures before the switch answer like any other request.
 */
export class UpgradeExchange implements Dispatcher.DispatchHandler {
  readonly #ctx: GatewayContext;
  readonly #req: IncomingMessage;
  readonly #socket: Duplex;
  readonly #head: Buffer;
  readonly #via: string;
  readonly #listener: string;
  readonly #requestId: string;
  readonly #t0 = performance.now();
  readonly #attempts: AttemptRecord[] = [];
  #route: Route | undefined;
  #attempt: AttemptRecord | undefined;
  #connected = false;
  #responseStarted = false;
  #headersSent = false;
  #status = 0;
  #error: Failure | undefined;
  #endedBy: EndedBy = 'complete';
  #upstream: Duplex | undefined;
  #published = false;
  #bytesIn = 0;
  #bytesOut = 0;
  #release: (() => void) | undefined;

  constructor(ctx: GatewayContext, req: IncomingMessage, socket: Duplex, head: Buffer, listener: string, via: string) {
    this.#ctx = ctx;
    this.#req = req;
    this.#socket = socket;
    this.#head = head;
    this.#via = via;
    this.#listener = listener;
    const incoming = ctx.trustIncomingRequestId ? req.headers[ctx.requestIdHeader] : undefined;
    this.#requestId = typeof incoming === 'string' && incoming.length > 0 && incoming.length <= 200 ? incoming : newRequestId(ctx);
    socket.on('error', () => socket.destroy());
    socket.once('close', () => {
      if (!this.#upstream && !this.#error && this.#status === 0) this.#endedBy = 'client';
      this.#upstream?.destroy();
      this.#publish();
    });
  }

  start(): void {
    const req = this.#req;
    try {
      const path = originForm(req.url ?? '');
      if (path === undefined || path === '*') throw new Failure({ type: 'http_request_error', phase: 'accept', reason: 'bad_request', detail: 'invalid request-target' });
      // A body on an upgrade request would turn into tunnel data after a 101: refuse it.
      const cl = req.headers['content-length'];
      if ((cl !== undefined && cl !== '0') || req.headers['transfer-encoding'] !== undefined) {
        throw new Failure({ type: 'http_request_error', phase: 'accept', reason: 'bad_request', detail: 'an upgrade request must not carry a body' });
      }
      // Node enforces requireHostHeader only on plain requests: the same rule here.
      if (req.httpVersion === '1.1' && req.headers.host === undefined) {
        throw new Failure({ type: 'http_request_error', phase: 'accept', reason: 'bad_request', detail: 'an HTTP/1.1 request needs a Host header' });
      }
      const route = this.#ctx.router.match(normalizeHost(req.headers.host), req.method!, path, req.headers);
      if (!route) throw new Failure({ type: 'destination_not_found', phase: 'route', detail: `no route for ${req.method} ${req.headers.host ?? ''}${path}` });
      this.#route = route;
      const hostValue = route.host === 'preserve' ? undefined : route.host === 'endpoint' ? undefined : route.host;
      const head = buildUpstreamHead(this.#ctx, req, this.#requestId, hostValue, this.#via, 'http');
      const now = Date.now();
      const ep = route.cluster.pick(now, undefined, req, req.socket.remoteAddress);
      if (ep === undefined) {
        throw new Failure({ type: 'destination_unavailable', phase: 'pick', retryAfter: route.cluster.retryAfterSeconds(now), detail: `no endpoint of cluster ${route.cluster.name} is available (${route.cluster.describeAvailability(now)})` });
      }
      if (route.host === 'endpoint') {
        const i = head.headers.indexOf('host');
        head.headers[i + 1] = ep.hostHeader;
      }
      this.#attempt = { endpoint: ep.nextHop, phase: 'connect', startMs: 0 };
      this.#attempts.push(this.#attempt);
      if (this.#head.length > 0) this.#socket.unshift(this.#head);
      // The socket leaves the pool once upgraded: always a connection of its own.
      const client = ep.pool.acquire(now, false, true);
      this.#release = () => ep.pool.release(client, Date.now(), false);
      client.dispatch(
        {
          path: rewritePath(route, path),
          method: req.method as Dispatcher.HttpMethod,
          headers: head.headers,
          upgrade: head.upgrade ?? 'websocket',
          body: null,
        },
        this,
      );
    } catch (err) {
      this.#fail(err instanceof Failure ? err : classify(err, { connected: false, responseStarted: false, headersReceived: false }));
    }
  }

  onConnect(abort: (err?: Error) => void): void {
    this.#connected = true;
    this.#attempt!.phase = 'send';
    if (this.#socket.destroyed) abort();
  }

  onResponseStarted(): void {
    this.#responseStarted = true;
    this.#attempt!.phase = 'headers';
  }

  onUpgrade(statusCode: number, rawHeaders: Buffer[] | string[] | null, upstream: Duplex): void {
    this.#settle();
    this.#status = statusCode;
    this.#attempt!.status = statusCode;
    this.#attempt!.phase = 'body';
    this.#upstream = upstream;
    const head = buildResponseHead((rawHeaders ?? []) as Buffer[], this.#via, this.#ctx.requestIdHeader, this.#requestId, undefined, true);
    const client = this.#socket;
    if (client.destroyed) {
      upstream.destroy();
      return;
    }
    client.write(headBytes(statusCode, head));
    this.#headersSent = true;
    upstream.on('data', (c: Buffer) => {
      this.#bytesOut += c.length;
    });
    client.on('data', (c: Buffer) => {
      this.#bytesIn += c.length;
    });
    upstream.on('error', () => {
      this.#endedBy = 'upstream';
      client.destroy();
    });
    upstream.on('close', () => client.destroy());
    upstream.pipe(client);
    client.pipe(upstream);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], _resume: () => void): boolean {
    if (statusCode < 200) return true;
    // No switch: pass the answer back, then close (the client expected a new protocol).
    this.#status = statusCode;
    this.#attempt!.status = statusCode;
    this.#attempt!.phase = 'body';
    const head = buildResponseHead(rawHeaders, this.#via, this.#ctx.requestIdHeader, this.#requestId, undefined);
    head.push('connection', 'close');
    this.#socket.write(headBytes(statusCode, head));
    this.#headersSent = true;
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.#bytesOut += chunk.length;
    return this.#socket.write(chunk);
  }

  onComplete(): void {
    this.#settle();
    this.#endClient();
  }

  onError(err: Error): void {
    this.#settle();
    if (this.#socket.destroyed) return;
    const f = classify(err, { connected: this.#connected, responseStarted: this.#responseStarted, headersReceived: this.#headersSent, nextHop: this.#attempt?.endpoint });
    if (this.#attempt) {
      this.#attempt.error = f.type;
      this.#attempt.phase = f.phase;
    }
    this.#fail(f);
  }

  /**
   * End the client connection after a non-switching answer. Bytes the client sent after
   * its head are read and dropped, or the paused socket would never finish closing.
   */
  #endClient(): void {
    const s = this.#socket;
    if (!s.writableEnded) s.end();
    s.resume();
    setTimeout(() => s.destroy(), 5000).unref();
  }

  #settle(): void {
    const r = this.#release;
    this.#release = undefined;
    r?.();
  }

  #fail(f: Failure): void {
    this.#error = f;
    this.#endedBy = f.source === 'client' ? 'client' : f.source === 'gateway' ? 'gateway' : 'upstream';
    if (this.#headersSent) {
      this.#socket.destroy();
      return;
    }
    this.#error = respondWithFailure(this.#socket, f, {
      ctx: this.#ctx,
      requestId: this.#requestId,
      accept: this.#req.headers.accept,
      clientAddress: this.#req.socket.remoteAddress,
      close: true,
      rawForm: 'upgrade',
    });
    this.#status = this.#error.status;
    this.#endClient();
  }

  #publish(): void {
    if (this.#published || !requestEnd.hasSubscribers) return;
    this.#published = true;
    const req = this.#req;
    const record = requestRecord(this.#requestId, this.#listener, plainAddress(req.socket.remoteAddress), req, {
      route: this.#route?.name,
      cluster: this.#route?.cluster.name,
      status: this.#status,
      error: this.#error?.type,
      phase: this.#error?.phase,
      endedBy: this.#endedBy,
      detail: this.#error?.detail,
      attempts: this.#attempts,
      bytesIn: this.#bytesIn,
      bytesOut: this.#bytesOut,
      durationMs: Math.round((performance.now() - this.#t0) * 1000) / 1000,
      upgrade: true,
    });
    requestEnd.publish(record);
  }
}

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { Failure, classify, receivedMember, renderFailure, type AttemptSummary } from '../failure/index.js';
import { plainAddress } from '../http/trust.js';
import type { Endpoint } from '../upstream/endpoint.js';
import { proxyStatusOptions, type GatewayContext } from './context.js';
import { requestEnd, type AttemptRecord, type EndedBy, type RequestRecord } from './events.js';
import { buildUpstreamHead } from './request-headers.js';
import { buildResponseHead, trailersObject } from './response-headers.js';
import { normalizeHost, rewritePath, type Route } from './router.js';

let sequence = 0;

export function newRequestId(ctx: GatewayContext): string {
  sequence = (sequence + 1) >>> 0;
  return `${ctx.requestIdPrefix}-${Date.now().toString(36)}-${sequence.toString(36)}`;
}

/** Origin-form path of a request-target (absolute-form reduced to its path). */
export function originForm(url: string): string | undefined {
  if (url.charCodeAt(0) === 47 /* / */) return url;
  if (url === '*') return url;
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
    return u.pathname + u.search;
  } catch {
    return undefined;
  }
}

/**
 * One client request through the gateway: route → pick → forward → respond.
 * It is also the undici dispatch handler, so a request costs one object, not a
 * chain of closures. Only `fail()` writes gateway-made error responses.
 */
export class Exchange implements Dispatcher.DispatchHandler {
  readonly ctx: GatewayContext;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly listener: string;
  readonly via: string;
  readonly requestId: string;
  readonly t0 = performance.now();
  readonly attempts: AttemptRecord[] = [];
  route: Route | undefined;
  endpoint: Endpoint | undefined;
  #attempt: AttemptRecord | undefined;
  #abort: ((err?: Error) => void) | undefined;
  #resume: (() => void) | undefined;
  #connected = false;
  #responseStarted = false;
  #headersSent = false;
  #complete = false;
  #published = false;
  #error: Failure | undefined;
  #endedBy: EndedBy = 'complete';
  #bytesIn0: number;
  #bytesOut0: number;
  #path = '';
  /** Kept: Node detaches req.socket once the response closes. */
  readonly #socket: import('node:net').Socket;

  constructor(ctx: GatewayContext, req: IncomingMessage, res: ServerResponse, listener: string, via: string) {
    this.ctx = ctx;
    this.req = req;
    this.res = res;
    this.listener = listener;
    this.via = via;
    const incoming = ctx.trustIncomingRequestId ? req.headers[ctx.requestIdHeader] : undefined;
    this.requestId = typeof incoming === 'string' && incoming.length > 0 && incoming.length <= 200 ? incoming : newRequestId(ctx);
    this.#socket = req.socket;
    this.#bytesIn0 = req.socket.bytesRead;
    this.#bytesOut0 = req.socket.bytesWritten;
    res.once('close', this.#onResClose);
  }

  /** Route and forward. Errors become gateway responses; nothing throws out of here. */
  start(): void {
    const req = this.req;
    try {
      const path = originForm(req.url ?? '');
      if (path === undefined) {
        throw new Failure({ type: 'http_request_error', phase: 'accept', status: 400, detail: 'invalid request-target', params: { 'status-code': 400 } });
      }
      this.#path = path;
      const host = normalizeHost(req.headers.host);
      const route = this.ctx.router.match(host, req.method!, path, req.headers);
      if (!route) {
        throw new Failure({ type: 'destination_not_found', phase: 'route', detail: `no route for ${req.method} ${host || '(no host)'}${path.split('?')[0]}` });
      }
      this.route = route;
      const hostValue = route.host === 'preserve' ? undefined : route.host === 'endpoint' ? '' : route.host;
      const head = buildUpstreamHead(this.ctx, req, this.requestId, hostValue, this.via, 'http');
      this.#dispatch(route, head.headers, head.hasBody, path);
    } catch (err) {
      this.fail(err instanceof Failure ? err : classify(err, { connected: false, responseStarted: false, headersReceived: false }));
    }
  }

  #dispatch(route: Route, headers: string[], hasBody: boolean, path: string): void {
    const ep = route.cluster.pick();
    this.endpoint = ep;
    if (route.host === 'endpoint') {
      // Host slot is the second-to-last-but-four entry written by buildUpstreamHead: find and set it.
      for (let i = 0; i < headers.length; i += 2) {
        if (headers[i] === 'host') {
          headers[i + 1] = ep.hostHeader;
          break;
        }
      }
    }
    this.#attempt = { endpoint: ep.nextHop, phase: 'connect', startMs: Math.round(performance.now() - this.t0) };
    this.attempts.push(this.#attempt);
    ep.inflight++;
    ep.pool.dispatch(
      {
        path: rewritePath(route, path),
        method: this.req.method as Dispatcher.HttpMethod,
        headers,
        body: hasBody ? this.req : null,
      },
      this,
    );
  }

  // ---- undici dispatch handler -----------------------------------------------------------

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    this.#connected = true;
    const a = this.#attempt!;
    a.phase = 'send';
    a.connectedMs = Math.round(performance.now() - this.t0);
    if (this.res.destroyed) abort();
  }

  onResponseStarted(): void {
    this.#responseStarted = true;
    const a = this.#attempt!;
    a.phase = 'headers';
    a.firstByteMs = Math.round(performance.now() - this.t0);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, _statusText: string): boolean {
    const res = this.res;
    if (statusCode < 200) {
      if (statusCode === 103) this.#earlyHints(rawHeaders);
      return true;
    }
    const a = this.#attempt!;
    a.phase = 'body';
    a.status = statusCode;
    a.headersMs = Math.round(performance.now() - this.t0);
    this.#resume = resume;
    const member = statusCode >= 500 ? receivedMember(statusCode, this.endpoint!.nextHop, proxyStatusOptions(this.ctx, this.#socket.remoteAddress)) : undefined;
    const head = buildResponseHead(rawHeaders, this.via, this.ctx.requestIdHeader, this.requestId, member);
    if (this.ctx.draining) head.push('connection', 'close');
    try {
      res.writeHead(statusCode, head);
    } catch (err) {
      // Node refused a header (invalid name or value bytes): never forward it.
      const f = new Failure({ type: 'http_protocol_error', phase: 'headers', nextHop: this.endpoint!.nextHop, detail: 'the response has an invalid header', cause: err });
      this.#abort?.(f);
      return false;
    }
    this.#headersSent = true;
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.res.write(chunk)) return true;
    this.res.once('drain', this.#onDrain);
    return false;
  }

  onComplete(rawTrailers: Array<Buffer | string> | null): void {
    this.#complete = true;
    this.#settleEndpoint();
    this.#attempt!.endMs = Math.round(performance.now() - this.t0);
    if (rawTrailers && rawTrailers.length > 0) this.res.addTrailers(trailersObject(rawTrailers));
    this.res.end();
  }

  onError(err: Error): void {
    this.#settleEndpoint();
    const a = this.#attempt;
    if (this.res.destroyed && !this.#complete) {
      // The client went away; the abort we sent upstream comes back here.
      if (a) a.endMs = Math.round(performance.now() - this.t0);
      return;
    }
    const failure = classify(err, {
      connected: this.#connected,
      responseStarted: this.#responseStarted,
      headersReceived: this.#headersSent,
      bodyChunked: this.#headersSent && !this.res.hasHeader('content-length'),
      nextHop: this.endpoint?.nextHop,
    });
    if (a) {
      a.phase = failure.phase;
      a.error = failure.type;
      a.detail = failure.detail;
      a.endMs = Math.round(performance.now() - this.t0);
    }
    this.fail(failure);
  }

  // ---- responses ------------------------------------------------------------------------

  /** The final word on a failure: a gateway-made response, or an aborted client connection. */
  fail(f: Failure): void {
    this.#error = f;
    const res = this.res;
    if (this.#headersSent || res.headersSent) {
      // A truncated body must never look complete: cut the connection.
      this.#endedBy = 'upstream';
      res.destroy();
      return;
    }
    this.#endedBy = f.source === 'client' ? 'client' : f.source === 'gateway' ? 'gateway' : 'upstream';
    const out = renderFailure({
      failure: f,
      requestId: this.requestId,
      accept: this.req.headers.accept,
      attempts: this.attempts.length ? this.attempts.map(toSummary) : undefined,
      proxyStatus: proxyStatusOptions(this.ctx, this.#socket.remoteAddress),
      head: this.req.method === 'HEAD',
    });
    if (f.source === 'client' || this.ctx.draining) out.headers.connection = 'close';
    res.writeHead(out.status, out.headers);
    res.end(out.body);
  }

  #earlyHints(raw: Buffer[]): void {
    const hints: Record<string, string | string[]> = {};
    for (let i = 0; i < raw.length; i += 2) {
      const k = raw[i]!.toString('latin1').toLowerCase();
      const v = raw[i + 1]!.toString('latin1');
      const prev = hints[k];
      hints[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    if (hints.link !== undefined) this.res.writeEarlyHints(hints as { link: string | string[] });
  }

  #onDrain = (): void => {
    this.#resume?.();
  };

  #settleEndpoint(): void {
    if (this.endpoint && this.#attempt && this.#attempt.endMs === undefined) this.endpoint.inflight--;
  }

  #onResClose = (): void => {
    if (!this.#complete && !this.#error) {
      // The client left before the response was complete: stop the upstream work.
      this.#endedBy = 'client';
      this.#abort?.();
    }
    this.#publish();
  };

  #publish(): void {
    if (this.#published) return;
    this.#published = true;
    if (!requestEnd.hasSubscribers) return;
    const req = this.req;
    const f = this.#error;
    const record: RequestRecord = {
      time: Date.now(),
      requestId: this.requestId,
      listener: this.listener,
      clientAddress: plainAddress(this.#socket.remoteAddress),
      method: req.method ?? '',
      host: req.headers.host ?? '',
      path: this.#path || (req.url ?? ''),
      httpVersion: req.httpVersion,
      route: this.route?.name,
      cluster: this.route?.cluster.name,
      status: this.res.statusCode,
      error: f?.type,
      phase: f?.phase ?? (this.#endedBy === 'client' ? (this.#attempt?.phase ?? 'accept') : undefined),
      endedBy: this.#endedBy,
      detail: f?.detail,
      attempts: this.attempts,
      bytesIn: this.#socket.bytesRead - this.#bytesIn0,
      bytesOut: this.#socket.bytesWritten - this.#bytesOut0,
      durationMs: Math.round((performance.now() - this.t0) * 1000) / 1000,
      upgrade: false,
    };
    requestEnd.publish(record);
  }
}

function toSummary(a: AttemptRecord): AttemptSummary {
  return { endpoint: a.endpoint, phase: a.phase, error: a.error, status: a.status, durationMs: (a.endMs ?? a.startMs) - a.startMs };
}

import { STATUS_CODES, type ServerResponse } from 'node:http';
import { TLSSocket } from 'node:tls';
import { ByteSource } from './byte-source.js';
import { flagParam, intParam, LabParamError } from './query.js';
import { countBody, sendJson, sendText, type Route, type RouteCall } from './route.js';
import type { WorkJob } from './work-queue.js';

/** Upper bound for every `ms` parameter: 10 minutes. */
export const MAX_DELAY_MS = 600_000;
/** Upper bound for `/bytes?n=`: 1 TiB. */
export const MAX_BYTES = 2 ** 40;

/** `/ok`: 200, a small text body. */
export const ok: Route = ({ res }) => {
  sendText(res, 200, 'ok\n');
};

/** `/echo`: the request as received (after reading its whole body), as JSON. */
export const echo: Route = ({ req, res }) => {
  countBody(req, (bodyBytes) => {
    sendJson(res, 200, {
      method: req.method,
      url: req.url,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      bodyBytes,
      httpVersion: req.httpVersion,
      remoteAddress: req.socket.remoteAddress,
      remotePort: req.socket.remotePort,
      tls: req.socket instanceof TLSSocket,
    });
  });
};

/** `/upload`: counts the streamed request body, answers `{ bytes }`. */
export const upload: Route = ({ req, res }) => {
  countBody(req, (bytes) => sendJson(res, 200, { bytes }));
};

/** `/bytes?n=N[&chunked=1]`: N bytes of 'a'..'z', streamed with backpressure. */
export const bytes: Route = ({ res, query }) => {
  const n = intParam(query, 'n', 1024, 0, MAX_BYTES);
  const chunked = flagParam(query, 'chunked');
  res.setHeader('content-type', 'application/octet-stream');
  if (!chunked) res.setHeader('content-length', String(n));
  res.writeHead(200);
  const source = new ByteSource(n);
  source.pipe(res);
  res.once('close', () => source.destroy());
};

/** `/status/NNN`: that status with a small body (none for 204/304). */
export function statusRoute(code: number): Route {
  return ({ res }) => {
    if (code === 204 || code === 304) {
      res.writeHead(code);
      res.end();
      return;
    }
    sendText(res, code, `${code} ${STATUS_CODES[code] ?? 'Status'} (from the lab)\n`);
  };
}

/** Parse the NNN of `/status/NNN`: 200..599. */
export function parseStatusPath(path: string): number {
  const code = Number(path.slice('/status/'.length));
  if (!Number.isInteger(code) || code < 200 || code > 599) {
    throw new LabParamError('status', 'the status in /status/NNN must be an integer from 200 to 599');
  }
  return code;
}

/** `/slow?ms=N` (default 1000): waits, then 200. */
export const slow: Route = ({ res, query, lab }) => {
  const ms = intParam(query, 'ms', 1000, 0, MAX_DELAY_MS);
  const timer = lab.timers.after(ms, () => sendText(res, 200, `slow: waited ${ms} ms\n`));
  res.once('close', () => lab.timers.clear(timer));
};

/** One `/work` request: takes a slot, holds it for `ms`, frees it. */
class WorkRequest implements WorkJob {
  readonly #call: RouteCall;
  readonly #ms: number;
  readonly #arrived = Date.now();
  #timer: NodeJS.Timeout | undefined;

  constructor(call: RouteCall, ms: number) {
    this.#call = call;
    this.#ms = ms;
  }

  start(): void {
    const queuedMs = Date.now() - this.#arrived;
    this.#timer = this.#call.lab.timers.after(this.#ms, () => this.#finish(queuedMs));
  }

  /** The client went away (or the lab closes): give the slot or the place back. */
  abandon(): void {
    this.#call.lab.timers.clear(this.#timer);
    this.#call.lab.work.leave(this);
  }

  #finish(queuedMs: number): void {
    this.#call.lab.work.leave(this);
    sendJson(this.#call.res, 200, { queuedMs, workedMs: this.#ms }, { 'x-lab-queued-ms': String(queuedMs) });
  }
}

/**
 * `/work?ms=N` (default 100): the overload simulation. A job occupies one of `capacity`
 * slots for N ms; up to `queue` jobs wait; beyond that 503 with Retry-After: 1.
 */
export const work: Route = (call) => {
  const ms = intParam(call.query, 'ms', 100, 0, MAX_DELAY_MS);
  const job = new WorkRequest(call, ms);
  call.res.once('close', () => job.abandon());
  if (!call.lab.work.enter(job)) {
    sendText(call.res, 503, 'lab: over capacity, try again later\n', { 'retry-after': '1' });
  }
};

/** `/early-hints`: 103 with a preload Link, then 200. */
export const earlyHints: Route = ({ res }) => {
  res.writeEarlyHints({ link: '</style.css>; rel=preload' });
  res.setHeader('link', '</style.css>; rel=preload');
  sendText(res, 200, 'early hints sent before this response\n');
};

/** `/trailers`: chunked body, `Trailer: x-checksum`, trailer `x-checksum: abc`. */
export const trailers: Route = ({ res }) => {
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', trailer: 'x-checksum' });
  res.write('body with ');
  res.write('a trailer\n');
  res.addTrailers({ 'x-checksum': 'abc' });
  res.end();
};

function writePieces(res: ServerResponse, call: RouteCall, left: number, delay: number, index: number): void {
  if (res.destroyed) return;
  if (left === 0) {
    res.end();
    return;
  }
  res.write(`piece ${index}\n`);
  const timer = call.lab.timers.after(delay, () => writePieces(res, call, left - 1, delay, index + 1));
  res.once('close', () => call.lab.timers.clear(timer));
}

/** `/chunked?pieces=N&delay=MS` (defaults 4 and 10): a chunked body written in pieces, `delay` apart. */
export const chunked: Route = (call) => {
  const pieces = intParam(call.query, 'pieces', 4, 1, 1000);
  const delay = intParam(call.query, 'delay', 10, 0, 10_000);
  call.res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
  writePieces(call.res, call, pieces, delay, 1);
};

const UPSTREAM_5XX_PAGE =
  '<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n' +
  '<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>lab-upstream/1.0</center>\r\n' +
  '</body>\r\n</html>\r\n';

/** `/5xx[?status=NNN]`: a 503 (or another 5xx) with the upstream software's own HTML page. */
export const upstream5xx: Route = ({ res, query }) => {
  const status = intParam(query, 'status', 503, 500, 599);
  const page = status === 503 ? UPSTREAM_5XX_PAGE : UPSTREAM_5XX_PAGE.replaceAll('503 Service Temporarily Unavailable', `${status} ${STATUS_CODES[status] ?? 'Server Error'}`);
  const body = Buffer.from(page, 'utf8');
  res.writeHead(status, { server: 'lab-upstream/1.0', 'content-type': 'text/html', 'content-length': String(body.length) });
  res.end(body);
};

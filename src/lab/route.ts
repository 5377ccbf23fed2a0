import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SocketTracker } from './socket-tracker.js';
import type { TimerSet } from './timer-set.js';
import type { WorkQueue } from './work-queue.js';

/** What a route may use of the running lab. */
export interface LabRuntime {
  readonly timers: TimerSet;
  readonly work: WorkQueue;
  readonly sockets: SocketTracker;
}

/** One request to a lab path. */
export interface RouteCall {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly query: URLSearchParams;
  readonly lab: LabRuntime;
}

export type Route = (call: RouteCall) => void;

/** Answer a short text body with Content-Length. */
export function sendText(res: ServerResponse, status: number, text: string, headers?: Record<string, string>): void {
  const body = Buffer.from(text, 'utf8');
  res.writeHead(status, { ...headers, 'content-type': 'text/plain; charset=utf-8', 'content-length': String(body.length) });
  res.end(body);
}

/** Answer JSON with Content-Length. */
export function sendJson(res: ServerResponse, status: number, value: unknown, headers?: Record<string, string>): void {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': String(body.length) });
  res.end(body);
}

/** Count the request body's bytes as they stream by (never buffered), then call `done`. */
export function countBody(req: IncomingMessage, done: (bytes: number) => void): void {
  let bytes = 0;
  req.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
  });
  req.once('end', () => done(bytes));
}

import type { Socket } from 'node:net';

/**
 * The order of pipelined requests on one client connection. Node's HTTP server writes the
 * responses in order but hands pipelined requests to the gateway as fast as it parses them,
 * so two POSTs would run at the upstream at the same time. RFC 9112 §9.3.2 allows parallel
 * processing of pipelined requests only when all of them are safe: an unsafe request
 * (POST, PUT, DELETE, PATCH...) starts only when no earlier request of the connection is in
 * flight, and nothing starts while an unsafe one is (as nginx and Squid serialise).
 *
 * One small object per connection that ever pipelines, kept on the socket under a symbol
 * (not in a WeakMap); a request that can start at once allocates nothing.
 */

/** RFC 9110 §9.2.1. */
const SAFE = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/** What the connection order needs from a request. */
export interface Ordered {
  readonly unsafe: boolean;
  /** Start it (called at most once, possibly later than it was offered). */
  begin(): void;
  /**
   * The connection closed while it waited: it will never start. (Node emits no 'close'
   * for the response of a pipelined request it has not begun to answer.)
   */
  abandon(): void;
}

interface Line {
  running: number;
  unsafe: number;
  waiting: Ordered[];
  /** onLineClose is registered on the socket. */
  watched: boolean;
}

const kLine = Symbol('gatewise.connection-order');
type OrderedSocket = Socket & { [kLine]?: Line };

export function isUnsafe(method: string): boolean {
  return !SAFE.has(method);
}

/** Start `r` now if the connection allows it, else queue it; true when it started. */
export function offer(socket: Socket, r: Ordered): boolean {
  const s = socket as OrderedSocket;
  let line = s[kLine];
  if (line === undefined) line = s[kLine] = { running: 0, unsafe: 0, waiting: [], watched: false };
  if (line.waiting.length > 0 || (line.running > 0 && (r.unsafe || line.unsafe > 0))) {
    line.waiting.push(r);
    if (!line.watched) {
      line.watched = true;
      socket.once('close', onLineClose);
    }
    return false;
  }
  line.running++;
  if (r.unsafe) line.unsafe++;
  r.begin();
  return true;
}

/** A started request is over: start what may start now, in order. */
export function finished(socket: Socket, r: Ordered): void {
  const line = (socket as OrderedSocket)[kLine];
  if (line === undefined) return;
  line.running--;
  if (r.unsafe) line.unsafe--;
  const w = line.waiting;
  while (w.length > 0) {
    const next = w[0]!;
    if (line.running > 0 && (next.unsafe || line.unsafe > 0)) break;
    w.shift();
    line.running++;
    if (next.unsafe) line.unsafe++;
    next.begin();
  }
}

/** A queued request that will never start (its response closed first): forget it. */
export function withdrawn(socket: Socket, r: Ordered): void {
  const line = (socket as OrderedSocket)[kLine];
  if (line === undefined) return;
  const i = line.waiting.indexOf(r);
  if (i >= 0) line.waiting.splice(i, 1);
}

/** The connection closed: what still waits will never start. A module function: no closure per connection. */
function onLineClose(this: Socket): void {
  const line = (this as OrderedSocket)[kLine];
  if (line === undefined) return;
  for (const r of line.waiting.splice(0)) r.abandon();
}

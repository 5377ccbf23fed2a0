import type { Socket } from 'node:net';
import { MAX_PIPELINED_RUNNING, MAX_PIPELINED_WAITING } from './pipelining.js';
import { SAFE_METHODS } from './methods.js';
import { holdReading, releaseReading } from './read-hold.js';
// A slot of every reverse socket (net/socket-slots.ts `shapeHttpSocket`).
import { kOrderLine as kLine } from '../net/socket-slots.js';

/**
 * The order of pipelined requests on one client connection, for both faces (the reverse
 * gateway's `Exchange`, the HTTP proxy's `forward/ordered-request.ts`). Node's HTTP server writes the
 * responses in order but hands pipelined requests to the proxy as fast as it parses them,
 * so two POSTs would run at the upstream at the same time. RFC 9112 §9.3.2 allows parallel
 * processing of pipelined requests only when all of them are safe: an unsafe request
 * (POST, PUT, DELETE, PATCH...) starts only when no earlier request of the connection is in
 * flight, and nothing starts while an unsafe one is (as nginx and Squid serialise); safe ones
 * run at most MAX_PIPELINED_RUNNING at once (http/pipelining.ts). When MAX_PIPELINED_WAITING
 * requests wait, the connection is not read until half of them have started (http/read-hold.ts).
 *
 * One small object per connection, kept on the socket under a symbol (not in a WeakMap).
 */

/** What the connection order needs from a request. */
export interface Ordered {
  readonly unsafe: boolean;
  /** Start it (called at most once, possibly later than it was offered). */
  begin(): void;
  /**
   * The connection closed before its answer was done. Node emits no 'close' for the
   * response of a pipelined request it has not begun to write, so without this a waiting
   * request would wait forever and a running one would stay in flight, its upstream work
   * never cancelled. May come after the response's own 'close': it must be idempotent.
   */
  abandon(): void;
}

interface Line {
  /** Started and not finished, in order. */
  active: Ordered[];
  /** How many of them are unsafe. */
  unsafe: number;
  waiting: Ordered[];
  /** The connection closes after an answer already given: nothing later starts. */
  closing: boolean;
  /** Waiting requests are being started (`startWaiting` is on the stack): a nested call leaves it to that loop. */
  starting: boolean;
  /** The connection is not read: too many requests wait (http/read-hold.ts). */
  held: boolean;
  readonly socket: Socket;
}

function newLine(socket: Socket): Line {
  return { active: [], unsafe: 0, waiting: [], closing: false, starting: false, held: false, socket };
}

type OrderedSocket = Socket & { [kLine]?: Line };

export function isUnsafe(method: string): boolean {
  return !SAFE_METHODS.has(method);
}

/**
 * Whether a request runs alone on its connection (the `unsafe` of `Ordered`): an unsafe method,
 * or any HTTP/1.0 request. An HTTP/1.0 client cannot take chunked coding, so an answer of
 * unknown length is read to its close and ends the connection, and that is known only at its
 * head: a request behind it, started meanwhile, went to the upstream and could never be
 * answered (adversarial review, framing). One at a time, the next starts only once the answer
 * before it is done, and does not start at all when that answer ended the connection
 * (`answerEndsConnection`, `closeAfter`).
 */
export function runsAlone(method: string, httpVersion: string): boolean {
  return httpVersion === '1.0' || !SAFE_METHODS.has(method);
}

/** The record detail of a request that never started, pipelined behind an answer that ends its connection (both faces). */
export const NOT_STARTED_AFTER_CLOSE = 'an answer before this pipelined request on its connection ends the connection (read to its close, or a refusal); never answerable, not forwarded';

/**
 * Whether a finished answer ends its connection: its head said `Connection: close` (node:http's
 * `_last`, which the net front's response mirrors): an HTTP/1.0 answer of unknown length, read
 * to its close, a refusal, a request that asked to close. Nothing behind it on the connection
 * can be answered; its caller calls `closeAfter` before `finished`, so nothing more starts.
 */
export function answerEndsConnection(res: { readonly writableFinished: boolean }): boolean {
  return res.writableFinished && (res as { _last?: boolean })._last === true;
}

function mayStart(line: Line, r: Ordered): boolean {
  return line.active.length === 0 || (!r.unsafe && line.unsafe === 0 && line.active.length < MAX_PIPELINED_RUNNING);
}

/** Start `r` now if the connection allows it, else queue it; true when it started. */
export function offer(socket: Socket, r: Ordered): boolean {
  const s = socket as OrderedSocket;
  let line = s[kLine];
  if (line === undefined) {
    line = s[kLine] = newLine(socket);
    socket.once('close', onLineClose);
  }
  if (line.closing) {
    r.abandon();
    return false;
  }
  if (line.waiting.length > 0 || !mayStart(line, r)) {
    // Asked again at each request over the bound: node:http may have read on after a hold
    // (its own resume on 'drain' restarts the reads), and a second hold stops it again.
    if (line.waiting.push(r) >= MAX_PIPELINED_WAITING) line.held = holdReading(socket) || line.held;
    return false;
  }
  line.active.push(r);
  if (r.unsafe) line.unsafe++;
  r.begin();
  return true;
}

/** A started request is over: start what may start now, in order. */
export function finished(socket: Socket, r: Ordered): void {
  const line = (socket as OrderedSocket)[kLine];
  if (line === undefined) return;
  const i = line.active.indexOf(r);
  if (i < 0) return;
  line.active.splice(i, 1);
  if (r.unsafe) line.unsafe--;
  startWaiting(line);
}

/**
 * Start the waiting requests that may start now, in order. A request may finish inside its
 * own `begin` (the forward proxy's, when its client already left), and that calls `finished`
 * again: the nested call only does its bookkeeping and this loop goes on. Finding (adversarial
 * review, session 29): each nested call started the next request itself, one stack frame
 * deeper per waiting request, and a client that reset a connection with ~8,000 pipelined
 * requests queued overflowed the stack and took the forward proxy down.
 */
function startWaiting(line: Line): void {
  if (line.starting) return;
  line.starting = true;
  try {
    const w = line.waiting;
    while (w.length > 0 && mayStart(line, w[0]!)) {
      const next = w.shift()!;
      line.active.push(next);
      if (next.unsafe) line.unsafe++;
      next.begin();
    }
  } finally {
    line.starting = false;
  }
  mayRead(line);
}

/** Read the connection again once half of the waiting requests have started or gone. */
function mayRead(line: Line): void {
  if (line.held && line.waiting.length <= MAX_PIPELINED_WAITING / 2) {
    line.held = false;
    releaseReading(line.socket);
  }
}

/** A queued request that will never start (its response closed first): forget it. */
export function withdrawn(socket: Socket, r: Ordered): void {
  const line = (socket as OrderedSocket)[kLine];
  if (line === undefined) return;
  const i = line.waiting.indexOf(r);
  if (i >= 0) line.waiting.splice(i, 1);
  mayRead(line);
}

/** The connection closed: what waits will never start, what runs has no one to answer. A module function: no closure per connection. */
function onLineClose(this: Socket): void {
  const line = (this as OrderedSocket)[kLine];
  if (line === undefined) return;
  for (const r of line.waiting.splice(0)) r.abandon();
  for (const r of line.active.slice()) r.abandon();
}

/**
 * The connection closes after an answer that was just given (a refused request: its body or
 * what follows cannot be trusted to frame the next one). Requests pipelined behind it are
 * abandoned, never forwarded (fuzz finding F3: a DELETE behind a request without Host reached
 * the upstream).
 */
export function closeAfter(socket: Socket): void {
  const s = socket as OrderedSocket;
  const line = (s[kLine] ??= newLine(socket));
  if (line.closing) return;
  line.closing = true;
  const waiting = line.waiting;
  line.waiting = [];
  for (const w of waiting) w.abandon();
}

/**
 * Whether the connection closes after an answer already given (`closeAfter`): bytes its parser
 * finds after that request are not a request (its faulty framing left them), so a parser error
 * on them is neither answered nor recorded; the answer in flight goes out and its connection closes.
 */
export function closingAfterAnswer(socket: Socket): boolean {
  return (socket as OrderedSocket)[kLine]?.closing === true;
}

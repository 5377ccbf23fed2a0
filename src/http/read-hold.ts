import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
// Slots of every reverse socket (net/socket-slots.ts `shapeHttpSocket`).
import { kReadHeld as kHeld, kReadReleased as kReleased } from '../net/socket-slots.js';

/**
 * Stop and restart reading a node:http server connection (the reverse gateway's node front,
 * plain or TLS, and the HTTP proxy's front): how the connection order bounds the pipelined
 * requests read ahead (http/connection-order.ts, http/pipelining.ts). The net front bounds its
 * own parsing (gateway/net-front.ts).
 *
 * Why Node's internals, and which. node:http's parser consumes the socket's handle in C++
 * (`parser.consume`): a read goes to the parser, not to the socket's Readable. Node stops and
 * starts that handle on the socket's 'pause' and 'resume' events, so `socket.pause()` stops
 * the reads, but three things of Node's start them again, each met making this (session 30):
 * - a request body's `resume()` resumes the socket, and the 'resume' listener node:http added
 *   starts the handle: so while held, a 'resume' listener added after Node's stops it again;
 * - a socket that was read from JavaScript before its handle was consumed (the forward proxy
 *   reads a connection's first bytes to tell HTTP from SOCKS) still has a read-ahead
 *   (`maybeReadMore`) on its next tick, which calls `_read`, which starts the handle: so while
 *   held, the socket's own `_read` does nothing;
 * - node:http's own flood check (`socket._paused`, set when its outgoing data is over the
 *   high-water mark) also pauses its parser, and a paused parser refuses what reaches it next
 *   (HPE_PAUSED, a 400). A TLS socket's handle hands over what OpenSSL has already decrypted
 *   even when stopped, so a held TLS connection broke mid-request that way in a first try: so
 *   `_paused` is not used here, and the parser parses what reaches it (at most that last read).
 * No public API stops a consumed connection's reads.
 *
 * A held connection's parser usually holds the start of a head (the last read ended inside
 * it), and node:http times that head from its first byte (headersTimeout): a hold longer than
 * the timeout answered a client that had sent everything at once with a 408 and closed it
 * (found in session 32 as a flaky pipelining test on a loaded machine: one 64 KiB read is
 * ~700 small requests to answer before reading goes on). The gateway's own wait is not the
 * client's: `heldHead` tells the refusal path to let that timeout pass while the connection
 * is held and for one timeout after it is released (node:http checks a head once: after the
 * timeout it passes, nothing times that head again), and a release arms one timeout of its
 * own for the head held (the one begun before the release and still not complete then gets
 * the same 408 through the server's 'clientError', as node:http would give it).
 */

interface HeldSocket {
  _read: (n: number) => void;
  parser?: { headersCompleted?(): boolean; duration?(): number } | null;
  server?: { headersTimeout?: number; emit(event: 'clientError', err: Error, socket: Socket): boolean };
  _handle?: { reading?: boolean; readStop(): number; readStart(): number } | null;
  [kHeld]?: boolean;
  /** When reading was last released (performance.now()). */
  [kReleased]?: number;
}


/** node:http's code for a request head not received in time (what its connection check gives). */
export class HeldHeadTimeoutError extends Error {
  readonly code = 'ERR_HTTP_REQUEST_TIMEOUT';
  constructor() {
    super('the request head did not arrive in time after the connection was read again');
    this.name = 'HeldHeadTimeoutError';
  }
}

/**
 * Whether a head timeout node:http reports for `socket` is the gateway's own wait: the
 * connection is held, or was released less than its server's headersTimeout ago (the head
 * then in progress is timed from the release, see releaseReading).
 */
export function heldHead(socket: Duplex): boolean {
  const s = socket as unknown as HeldSocket;
  if (s[kHeld] === true) return true;
  const at = s[kReleased];
  return at !== undefined && performance.now() - at < (s.server?.headersTimeout ?? 0);
}

/**
 * Whether the node:http parser of `socket` holds the start of a request head (its message
 * begun, its head not complete): bytes of a next head may have been read long before a wait
 * for it starts (pipelined behind the previous request, or held with its connection), so a
 * count of bytes read since then cannot tell a partial head from an idle connection. Asked of
 * a connection that has had a request: a parser that has parsed nothing yet says the same
 * (its clock runs from its start), and after a complete message it says no until the next begins.
 */
export function headBegun(socket: Socket): boolean {
  const parser = (socket as unknown as HeldSocket).parser;
  if (parser === undefined || parser === null) return false;
  return parser.headersCompleted?.() === false && (parser.duration?.() ?? 0) > 0;
}

/** Stop reading `socket` if it is a node:http server connection; true when it is held (else nothing was done). */
export function holdReading(socket: Socket): boolean {
  const s = socket as unknown as HeldSocket;
  if (s.parser === undefined || s.parser === null || socket.destroyed) return false;
  if (s[kHeld] !== true) {
    s[kHeld] = true;
    s._read = readNothing;
    socket.on('resume', stopHandle);
  }
  socket.pause();
  stopHandle.call(socket);
  return true;
}

/** Read `socket` again after holdReading. */
export function releaseReading(socket: Socket): void {
  const s = socket as unknown as HeldSocket;
  if (s[kHeld] !== true) return;
  s[kHeld] = false;
  socket.off('resume', stopHandle);
  if (s._read === readNothing) delete (s as Partial<HeldSocket>)._read;
  if (socket.destroyed) return;
  const timeoutMs = s.server?.headersTimeout ?? 0;
  if (timeoutMs > 0) {
    s[kReleased] = performance.now();
    setTimeout(headDue, timeoutMs, socket, timeoutMs).unref();
  }
  const handle = s._handle;
  if (handle !== undefined && handle !== null && handle.reading === false) {
    handle.reading = true;
    handle.readStart();
  }
  socket.resume();
}

/** Stop the handle's reads (with the `reading` flag net.Socket keeps in step). */
function stopHandle(this: Socket): void {
  const handle = (this as unknown as HeldSocket)._handle;
  if (handle !== undefined && handle !== null && handle.reading !== false) {
    handle.reading = false;
    handle.readStop();
  }
}

/**
 * One head timeout after a release: the head begun before it and still not complete is
 * refused as node:http refuses a late head. A head begun after the release is node:http's to
 * time. This is a Node timer, run on the event loop's cached time, which lags behind
 * `performance.now()` (and the parser's clock) by however long the loop turn of the release
 * had run (a turn answering hundreds of pipelined requests: tens of ms): it can come back that
 * much early. Then the head is still younger than the timeout, and it comes back for the rest
 * (it gave up before, and nothing timed the head again: found in session 33, a held head never
 * completed left to the keep-alive timeout, closed without its 408). And its refusal is the
 * client's: the release is forgotten first, so `heldHead` does not take it for the hold's.
 */
function headDue(socket: Socket, timeoutMs: number): void {
  const s = socket as unknown as HeldSocket;
  const parser = s.parser;
  if (socket.destroyed || s[kHeld] === true || parser === undefined || parser === null) return;
  if (parser.headersCompleted?.() !== false) return;
  const age = parser.duration?.() ?? 0;
  if (age < performance.now() - (s[kReleased] ?? 0)) return; // begun after the release
  if (age < timeoutMs) {
    setTimeout(headDue, Math.ceil(timeoutMs - age), socket, timeoutMs).unref();
    return;
  }
  s[kReleased] = undefined;
  s.server?.emit('clientError', new HeldHeadTimeoutError(), socket);
}

/** A held socket's `_read`: no read starts while it is held. */
function readNothing(): void {}

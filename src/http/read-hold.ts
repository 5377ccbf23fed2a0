import type { Socket } from 'node:net';

/**
 * Stop and restart reading a node:http server connection (the reverse gateway's node front,
 * the HTTP proxy's front): how the connection order bounds the pipelined requests read ahead
 * (http/connection-order.ts, http/pipelining.ts).
 *
 * Why Node's internals, and which: node:http reads a server connection through its parser,
 * which consumes the socket's handle in C++ (`parser.consume`), so `socket.pause()` stops no
 * read (it stops a Readable's 'data' events, and a consumed handle has none), and the parser
 * would be handed the next read while paused and refuse it (HPE_PAUSED, a 400: what a first
 * try of this bound met in session 29). So the handle's reads are stopped
 * (`_handle.readStop()`, with the `reading` flag net.Socket keeps in step), and
 * `socket._paused` is set as node:http's own flood check sets it, so that Node pauses its
 * parser after the read it is in and nothing of Node's (a request body's `resume()`) starts
 * reading again; and while held, the socket's own `_read` does nothing: a Readable that was
 * read from JavaScript before its handle was consumed (the forward proxy reads a connection's
 * first bytes to tell HTTP from SOCKS) still has a read-ahead (`maybeReadMore`) on its next
 * tick, which called `_read`, which started the handle again, and the paused parser refused the
 * next read as HPE_PAUSED (found making this, session 30). Node's own check of that kind
 * (`parserOnIncoming`, on outgoing data over the high-water mark) pauses with
 * `socket.pause()` alone. No public API does this.
 */

interface HeldSocket {
  _paused?: boolean;
  _read: (n: number) => void;
  parser?: { pause(): void; resume(): void } | null;
  _handle?: { reading?: boolean; readStop(): number; readStart(): number } | null;
}

/** Stop reading `socket` if it is a node:http server connection; true when it was stopped (else nothing was done: the net front bounds its own reading). */
export function holdReading(socket: Socket): boolean {
  const s = socket as unknown as HeldSocket;
  const handle = s._handle;
  if (s.parser === undefined || s.parser === null || handle === undefined || handle === null || socket.destroyed) return false;
  s._paused = true;
  socket.pause();
  if (Object.hasOwn(s, '_read') === false) s._read = readNothing;
  if (handle.reading !== false) {
    handle.reading = false;
    handle.readStop();
  }
  return true;
}

/** Read `socket` again after holdReading. */
export function releaseReading(socket: Socket): void {
  const s = socket as unknown as HeldSocket;
  if (socket.destroyed) return;
  s._paused = false;
  if (s._read === readNothing) delete (s as Partial<HeldSocket>)._read;
  s.parser?.resume();
  const handle = s._handle;
  if (handle !== undefined && handle !== null && handle.reading === false) {
    handle.reading = true;
    handle.readStart();
  }
  socket.resume();
}

/** A held socket's `_read`: no read starts while it is held. */
function readNothing(): void {}

import type { Socket } from 'node:net';

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
 */

interface HeldSocket {
  _read: (n: number) => void;
  parser?: unknown;
  _handle?: { reading?: boolean; readStop(): number; readStart(): number } | null;
  [kHeld]?: boolean;
}

const kHeld = Symbol('gatewise.readHold');

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

/** A held socket's `_read`: no read starts while it is held. */
function readNothing(): void {}

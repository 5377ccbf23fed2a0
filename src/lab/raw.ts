import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';

/**
 * Faults that are not valid HTTP bypass the ServerResponse and write to the socket.
 * The request body (if any) is drained so closing does not turn into an accidental RST.
 */
export function takeSocket(req: IncomingMessage): Socket {
  req.resume();
  return req.socket;
}

/** Exact bytes: latin1 keeps every code unit < 256 as one byte (NUL and CR included). */
export function rawBytes(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

/** Write the bytes, then half-close (FIN) once they are flushed. */
export function writeThenEnd(socket: Socket, bytes: Buffer): void {
  if (socket.destroyed) return;
  socket.end(bytes);
}

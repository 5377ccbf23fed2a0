import type { Socket } from 'node:net';

/** What Node keeps on a socket of what it has not written yet (not public API: read with care). */
interface WriteState {
  /** Bytes handed to the handle (libuv, or OpenSSL on a TLS socket), written or queued there. */
  _bytesDispatched?: unknown;
  /** The handle; its `writeQueueSize`: bytes libuv still holds, not yet taken by the kernel. */
  _handle?: WriteHandle | null;
  /** A TLS socket says so. */
  encrypted?: unknown;
}

/** A socket's handle as `unsentBytes` reads it (keep it to read after the socket's destroy: `writeHandle`). */
export interface WriteHandle {
  writeQueueSize?: unknown;
}

/** The socket's handle now (undefined once destroyed): `unsentBytes` can still read it after an error destroyed the socket. */
export function writeHandle(socket: Socket): WriteHandle | undefined {
  return (socket as Socket & WriteState)._handle ?? undefined;
}

/**
 * Bytes written to `socket` that have not reached the kernel yet: those still in the stream's
 * buffer (counted by `bytesWritten`, not handed on) and those libuv still queues. Read before
 * the socket is destroyed (the handle, and libuv's count with it, go then), or in its 'error'
 * event with the handle kept from before (`handle`: libuv's count stays until the socket's
 * 'close'); what the kernel holds is the peer's to read even after a close.
 *
 * A TLS socket: only the plaintext still in the stream's buffer, not yet handed to OpenSSL.
 * Its handle (TLSWrap) has a `writeQueueSize`, but in ciphertext and for every write not yet
 * completed, what the kernel already took and the TLS records' overhead included (8 MiB to a
 * client that reads nothing: 8,399,872 counted, 4,456,448 truly unsent). What OpenSSL and the
 * kernel's queue below it hold is not told in plaintext bytes, so it counts as sent: never more
 * than the truth, possibly less (drain-tail.test.ts).
 */
export function unsentBytes(socket: Socket, handle: WriteHandle | null | undefined = (socket as Socket & WriteState)._handle): number {
  const s = socket as Socket & WriteState;
  const dispatched = s._bytesDispatched;
  if (s.encrypted === true) return typeof dispatched === 'number' ? Math.max(0, socket.bytesWritten - dispatched) : 0;
  const queued = handle?.writeQueueSize;
  if (typeof dispatched !== 'number' || typeof queued !== 'number') return socket.writableLength;
  return Math.max(0, socket.bytesWritten - dispatched + queued);
}

import type { Socket } from 'node:net';

/** What Node keeps on a socket of what it has not written yet (not public API: read with care). */
interface WriteState {
  /** Bytes handed to the handle (libuv), written or queued there. */
  _bytesDispatched?: unknown;
  /** The handle; its `writeQueueSize`: bytes libuv still holds, not yet taken by the kernel. */
  _handle?: { writeQueueSize?: unknown } | null;
}

/**
 * Bytes written to `socket` that have not reached the kernel yet: those still in the stream's
 * buffer (counted by `bytesWritten`, not handed on) and those libuv still queues. Read before
 * the socket is destroyed (the handle, and libuv's count with it, go then); what the kernel holds
 * is the peer's to read even after a close. Where Node does not say it (a TLS socket's handle
 * keeps no such count), the stream's `writableLength`, which also counts a write the kernel has
 * partly taken: at most that write more than the truth.
 */
export function unsentBytes(socket: Socket): number {
  const s = socket as Socket & WriteState;
  const dispatched = s._bytesDispatched;
  const queued = s._handle?.writeQueueSize;
  if (typeof dispatched !== 'number' || typeof queued !== 'number') return socket.writableLength;
  return Math.max(0, socket.bytesWritten - dispatched + queued);
}

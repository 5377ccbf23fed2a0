import type { Socket } from 'node:net';
import { Timeout } from '../timing/deadlines.js';

/** The HTTP/2 client connection preface (RFC 9113 §3.4). */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Where a plain connection goes once its first bytes are known. */
export interface PrefaceRoutes {
  /** It began with the HTTP/2 preface (the bytes are put back for the HTTP/2 session). */
  h2(): void;
  /** Anything else: Node's HTTP/1.1 connection listener, then the bytes already read. */
  http1(): void;
  /** Nothing arrived within the first-head time. */
  silent(): void;
}

/**
 * h2c with prior knowledge on a plain listener: read until the first bytes either are the
 * 24-byte HTTP/2 preface or cannot be (one differing byte is enough: an HTTP/1.1 request
 * line never starts "PRI * HTTP/2.0"), then hand the socket over. Written here because
 * node:http2's `allowHTTP1` exists only for TLS (ALPN); Node's HTTP/1.1 server cannot be
 * given a connection whose first bytes were read. An HTTP/1.1 connection gets Node's own
 * listener synchronously in the data callback and the bytes re-emitted (the parser reads
 * the handle from then on), as the forward proxy's first-byte detection does.
 * Only listeners with `http2.h2c` pay for this (one closure and one deadline per connection).
 */
export function sniffPreface(socket: Socket, headMs: number, routes: PrefaceRoutes): void {
  let buf: Buffer | undefined;
  const deadline = headMs > 0 ? new Timeout(() => {
    socket.removeListener('data', onData);
    socket.removeListener('error', onError);
    routes.silent();
  }, headMs) : undefined;
  // Until it is handed over, the connection is ours: a client that resets it (ECONNRESET)
  // must not become an uncaught error (h2c.test finding). Node's HTTP/1.1 listener and the
  // HTTP/2 session each add their own once they have it.
  const onError = (): void => {
    deadline?.cancel();
    socket.destroy();
  };
  const onData = (chunk: Buffer): void => {
    buf = buf === undefined ? chunk : Buffer.concat([buf, chunk]);
    const n = Math.min(buf.length, H2_PREFACE.length);
    const same = buf.compare(H2_PREFACE, 0, n, 0, n) === 0;
    if (same && n < H2_PREFACE.length) return; // a prefix of the preface: wait for more
    socket.removeListener('data', onData);
    socket.removeListener('error', onError);
    deadline?.cancel();
    if (same) {
      // Paused and put back: the HTTP/2 session reads what the socket has buffered first.
      // HTTP/2 has no half-closed connection: the client's FIN ends it (as on node:http2's own
      // server). The HTTP/1.1 server's sockets allow half-open, and the session then never
      // saw its client leave: its streams ran on to their end (h2c-faults.test finding).
      socket.allowHalfOpen = false;
      socket.pause();
      socket.unshift(buf);
      routes.h2();
      return;
    }
    routes.http1();
    socket.emit('data', buf);
  };
  socket.on('data', onData);
  socket.on('error', onError);
  socket.once('close', () => deadline?.cancel());
}

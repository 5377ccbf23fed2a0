import type { Socket } from 'node:net';

type PeerHandle = { getpeername?(out: { address: string; family: string; port: number }): number };

/** One reused result object, already of the shape Node's C++ fills (address, family, port). */
const out = { address: '', family: '', port: 0 };

/**
 * The client's address of an accepted TCP socket, for its record: what `socket.remoteAddress`
 * returns, read through the socket's handle into one reused object.
 *
 * Why not `remoteAddress`: Node answers it by making a new object per socket and setting its
 * three fields from C++ (each a runtime property store that moves the object to a new map),
 * then caching it on the socket as `_peername`, a property the socket did not have, so every
 * socket changes map once more after Node's own code has seen it. Measured with callgrind on
 * the forward proxy's CONNECT tunnel (bench/tunnel-icount.ts, default configuration), this
 * saved ~5–10k of ~275k instructions per tunnel (the figures at `clientAddressFor`,
 * src/forward/context.ts). `_handle` is Node's own field (not
 * public API, stable since Node 0.x); without it (a socket not on a TCP handle: TLS, a test
 * double) this falls back to `remoteAddress`.
 */
export function peerAddress(socket: Socket): string | undefined {
  const h = (socket as Socket & { _handle?: PeerHandle | null })._handle;
  if (h == null || typeof h.getpeername !== 'function') return socket.remoteAddress;
  out.address = '';
  if (h.getpeername(out) !== 0) return undefined;
  return out.address;
}

import type { Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { canonicalAddress } from './ip-canonical.js';
import { isLoopbackAddress } from './ip-address.js';

/**
 * Listeners of this process, as its forward proxy must see them whatever the destination
 * rules say.
 *
 * - `admin`: never dialled. On loopback without `admin.token` it takes a local caller for
 *   the operator, and a forward user whose rules allow loopback (`allowPrivate`, an allow rule
 *   for 127.0.0.0/8) would otherwise reach it through the proxy as one (adversarial probe,
 *   session adminsec: a forward user read `/config` and drained an endpoint).
 * - `gateway`: the reverse gateway's listeners, which a forward user may reach (a local
 *   gateway is a service like any other), but the connection then carries a forward user, not
 *   a client of this host: the proxy marks its local end (`markOwnForwardPeer`) and the gateway
 *   trusts a connection from a marked end with nothing it keys on the client's address
 *   (`proxyStatus.trustedClients`, `trustedProxies`; brief ownlisten: through the proxy, a
 *   user saw next-hop and details and had its X-Forwarded-For kept as a loopback client's).
 *
 * By port first: a dial to any other port costs one Map lookup per kind asked.
 */
export type OwnListenerKind = 'admin' | 'gateway';

const byKind: Record<OwnListenerKind, Map<number, Map<string, number>>> = { admin: new Map(), gateway: new Map() };

/** The address as the rules compare it (`::ffff:127.0.0.1` is `127.0.0.1`); the unspecified address as `*`. */
function key(address: string): string {
  const c = canonicalAddress(address)?.address ?? address;
  return c === '0.0.0.0' || c === '0:0:0:0:0:0:0:0' ? '*' : c;
}

/** Reserve a listening address and port (as `server.address()` gives them); the function returned releases it. */
export function reserveOwnListener(address: string, port: number, kind: OwnListenerKind = 'admin'): () => void {
  const byPort = byKind[kind];
  const k = key(address);
  let at = byPort.get(port);
  if (at === undefined) byPort.set(port, (at = new Map()));
  at.set(k, (at.get(k) ?? 0) + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const n = (at.get(k) ?? 1) - 1;
    if (n > 0) at.set(k, n);
    else at.delete(k);
    if (at.size === 0 && byPort.get(port) === at) byPort.delete(port);
  };
}

/**
 * Whether a connection to `address` (any spelling: its canonical form is taken on a port hit)
 * and `port` would reach a reserved listener of `kind`: the same address, or, for a listener
 * on the unspecified address, any loopback address or any address of this host's interfaces.
 */
export function ownListenerAt(address: string, port: number, kind: OwnListenerKind = 'admin'): boolean {
  const at = byKind[kind].get(port);
  if (at === undefined) return false;
  const k = key(address);
  if (at.has(k)) return true;
  if (!at.has('*')) return false;
  if (isLoopbackAddress(k)) return true;
  for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) if (key(i.address) === k) return true;
  return false;
}

/**
 * Local ends (`port address`, the address canonical) of this process's forward-proxy
 * connections open to its own gateway listeners, with how many sockets hold each (Linux lends
 * one ephemeral port to connections to different destinations). Empty but for such
 * connections: the gateway's check is then one size read.
 */
const forwardPeers = new Map<string, number>();

/** The client end of an accepted connection, as a socket (TCP, TLS, or the HTTP/2 stream's proxy of one) tells it. */
export interface PeerEnd {
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
}

/**
 * Mark `socket`, a forward-proxy connection to this process's gateway listener, just
 * connected: until it closes, the gateway takes a connection from its local end for a
 * forward user's (`viaOwnForward`). Called before any byte is written on it.
 */
export function markOwnForwardPeer(socket: Socket): void {
  const port = socket.localPort;
  const address = socket.localAddress;
  if (port === undefined || address === undefined) return;
  const k = `${port} ${key(address)}`;
  forwardPeers.set(k, (forwardPeers.get(k) ?? 0) + 1);
  socket.once('close', () => {
    const n = (forwardPeers.get(k) ?? 1) - 1;
    if (n > 0) forwardPeers.set(k, n);
    else forwardPeers.delete(k);
  });
}

/** Whether a connection the gateway accepted (its client end) is one of this process's forward proxy's: a forward user's, trusted with nothing a local client is. */
export function viaOwnForward(socket: PeerEnd | undefined): boolean {
  if (forwardPeers.size === 0 || socket === undefined) return false;
  const port = socket.remotePort;
  const address = socket.remoteAddress;
  return port !== undefined && address !== undefined && forwardPeers.has(`${port} ${key(address)}`);
}

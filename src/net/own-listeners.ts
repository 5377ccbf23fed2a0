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
 * - `forward`: never dialled by the proxy it belongs to (reserved in that proxy's scope). Its own listener takes a connection from this
 *   host's address for a client of this host: a user with an address allowlist there
 *   (`allowFrom: [127.0.0.1]`) is picked without a password, so a password user allowed
 *   loopback became that user through a loop (adversarial review, session 39). A proxy that
 *   connects to itself serves no one. Per proxy, not per process: two proxies of one process
 *   chained as each other's exits reach each other, and so can their users (docs/security.md
 *   says not to give loopback allowFrom users where another proxy's users reach loopback).
 * - `gateway`: the reverse gateway's listeners, which a forward user may reach (a local
 *   gateway is a service like any other), but the connection then carries a forward user, not
 *   a client of this host: the proxy marks its local end (`markOwnForwardPeer`) and the gateway
 *   trusts a connection from a marked end with nothing it keys on the client's address
 *   (`proxyStatus.trustedClients`, `trustedProxies`; brief ownlisten: through the proxy, a
 *   user saw next-hop and details and had its X-Forwarded-For kept as a loopback client's).
 *
 * By port first: a dial to any other port costs one Map lookup per kind asked.
 */
export type OwnListenerKind = 'admin' | 'forward' | 'gateway';

const byKind: Record<OwnListenerKind, Map<number, Map<string, number>>> = { admin: new Map(), forward: new Map(), gateway: new Map() };

/** The address as the rules compare it (`::ffff:127.0.0.1` is `127.0.0.1`); the unspecified address as `*`. */
function key(address: string): string {
  const c = canonicalAddress(address)?.address ?? address;
  return c === '0.0.0.0' || c === '0:0:0:0:0:0:0:0' ? '*' : c;
}

/**
 * Reserve a listening address and port (as `server.address()` gives them); the function returned
 * releases it. `scope`: whose listener it is, when it is not the process's (a forward proxy's:
 * two proxies of one process, chained as each other's exits, reach each other); asked with the same.
 */
export function reserveOwnListener(address: string, port: number, kind: OwnListenerKind = 'admin', scope = ''): () => void {
  const byPort = byKind[kind];
  const k = scope + key(address);
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
export function ownListenerAt(address: string, port: number, kind: OwnListenerKind = 'admin', scope = ''): boolean {
  const at = byKind[kind].get(port);
  if (at === undefined) return false;
  const k = key(address);
  if (at.has(scope + k)) return true;
  if (!at.has(scope + '*')) return false;
  if (isLoopbackAddress(k)) return true;
  for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) if (key(i.address) === k) return true;
  return false;
}

/**
 * This process's forward-proxy connections open to its own gateway listeners
 * (`connectionKey`), with how many sockets hold each. Empty but for such connections: the
 * gateway's check is then one size read.
 */
const forwardPeers = new Map<string, number>();

/** The ends of an accepted connection, as a socket (TCP, TLS, or the HTTP/2 stream's proxy of one) tells them. */
export interface PeerEnd {
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
  readonly localAddress?: string | undefined;
  readonly localPort?: number | undefined;
}

/**
 * A connection's key in the marks: both ends, client first (the addresses canonical). Both,
 * not the client's alone: Linux lends one local port to connections to different
 * destinations, and in a group the end of one such connection must not remove another's mark
 * (review of session 39: a mark whose announcement was lost, then its end announced, took the
 * mark of another connection from the same local port to another gateway port).
 */
export function connectionKey(clientAddress: string, clientPort: number, serverAddress: string, serverPort: number): string {
  return `${clientPort} ${key(clientAddress)} ${serverPort} ${key(serverAddress)}`;
}

/**
 * The other processes of a `--workers N` group. The kernel hands a connection to any worker
 * listening on the port, so a mark kept by the dialling worker alone left the others taking
 * its connections for trusted loopback clients. `announce` tells every worker of the group
 * (this one included) that a local end is marked (`on`) or no longer: for a mark, it resolves
 * true once every worker has it, false when the group did not confirm it in time. Set by the
 * runtime in a worker (cli/runtime.ts, over observe/worker-ipc.ts), which also hands the
 * group's messages to `groupForwardPeer`.
 */
export interface ForwardPeerGroup {
  announce(end: string, on: boolean): Promise<boolean>;
}

let group: ForwardPeerGroup | undefined;

/** Marks other workers of the group announced (and this worker's own, as the group relays them to every worker). */
const groupPeers = new Map<string, number>();

/** In a worker of a group: how marks reach the other workers (undefined: none, a process alone). */
export function shareForwardPeers(g: ForwardPeerGroup | undefined): void {
  group = g;
}

/** A mark of the group (`on`) or its end, as `ForwardPeerGroup.announce` sent it. */
export function groupForwardPeer(end: string, on: boolean): void {
  count(groupPeers, end, on ? 1 : -1);
}

function count(m: Map<string, number>, k: string, by: number): void {
  const n = (m.get(k) ?? 0) + by;
  if (n > 0) m.set(k, n);
  else m.delete(k);
}

/**
 * Mark `socket`, a forward-proxy connection to this process's gateway listener, just
 * connected: until it closes, the gateway takes a connection from its local end for a
 * forward user's (`viaOwnForward`). Called before any byte is written on it. Alone, the mark
 * holds at once (undefined); in a group, the promise says whether every worker has it, and no
 * byte may go before it resolves true (false: the connection must not be used).
 */
export function markOwnForwardPeer(socket: Socket): Promise<boolean> | undefined {
  const port = socket.localPort;
  const address = socket.localAddress;
  const to = socket.remotePort;
  const toAddress = socket.remoteAddress;
  if (port === undefined || address === undefined || to === undefined || toAddress === undefined) return group === undefined ? undefined : Promise.resolve(false);
  const k = connectionKey(address, port, toAddress, to);
  count(forwardPeers, k, 1);
  const g = group;
  socket.once('close', () => {
    count(forwardPeers, k, -1);
    // Ended: the others drop theirs (their answers are not waited for; a late one only distrusts longer).
    if (g !== undefined) void g.announce(k, false).catch(() => {});
  });
  return g === undefined ? undefined : g.announce(k, true).catch(() => false);
}

/** Whether a connection the gateway accepted (its client end) is one of this process group's forward proxy's: a forward user's, trusted with nothing a local client is. */
export function viaOwnForward(socket: PeerEnd | undefined): boolean {
  if ((forwardPeers.size === 0 && groupPeers.size === 0) || socket === undefined) return false;
  const port = socket.remotePort;
  const address = socket.remoteAddress;
  const at = socket.localPort;
  const atAddress = socket.localAddress;
  if (port === undefined || address === undefined || at === undefined || atAddress === undefined) return false;
  const k = connectionKey(address, port, atAddress, at);
  return forwardPeers.has(k) || groupPeers.has(k);
}

import { networkInterfaces } from 'node:os';
import { canonicalAddress } from './ip-canonical.js';
import { isLoopbackAddress } from './ip-address.js';

/**
 * Listeners of this process that its forward proxy must never dial, whatever the destination
 * rules say: the admin listener. On loopback without `admin.token` it takes a local caller for
 * the operator, and a forward user whose rules allow loopback (`allowPrivate`, an allow rule
 * for 127.0.0.0/8) would otherwise reach it through the proxy as one (adversarial probe,
 * session adminsec: a forward user read `/config` and drained an endpoint).
 *
 * By port first: a dial to any other port costs one Map lookup.
 */
const byPort = new Map<number, Map<string, number>>();

/** The address as the rules compare it (`::ffff:127.0.0.1` is `127.0.0.1`); the unspecified address as `*`. */
function key(address: string): string {
  const c = canonicalAddress(address)?.address ?? address;
  return c === '0.0.0.0' || c === '0:0:0:0:0:0:0:0' ? '*' : c;
}

/** Reserve a listening address and port (as `server.address()` gives them); the function returned releases it. */
export function reserveOwnListener(address: string, port: number): () => void {
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
 * Whether a connection to `address` (canonical, as the destination rules hold it) and `port`
 * would reach a reserved listener: the same address, or, for a listener on the unspecified
 * address, any loopback address or any address of this host's interfaces.
 */
export function ownListenerAt(address: string, port: number): boolean {
  const at = byPort.get(port);
  if (at === undefined) return false;
  if (at.has(key(address))) return true;
  if (!at.has('*')) return false;
  if (isLoopbackAddress(address)) return true;
  for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) if (key(i.address) === key(address)) return true;
  return false;
}

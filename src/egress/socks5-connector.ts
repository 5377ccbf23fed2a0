import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { DialTarget } from './dialer.js';
import type { ProxyEndpoint } from './proxy-url.js';
import { socks5Handshake } from './socks5-client.js';
import type { CancelSignal } from '../timing/cancel.js';

/**
 * The SOCKS5 Connector: username/password auth, then CONNECT to `target` over an existing
 * transport to the upstream proxy (`socks5-client.ts`). Refusals keep the proxy as next
 * hop, with the failure type and scope the reply code gives. `signal`: the connection's cancel
 * signal, as `httpConnect` takes it: a client that leaves stops the handshake at once.
 */
export async function socks5Connect(sock: Socket | Duplex, proxy: ProxyEndpoint, target: DialTarget, timeoutMs: number, signal?: CancelSignal): Promise<Socket> {
  const { socket } = await socks5Handshake(sock, proxy, 'connect', target, timeoutMs, signal);
  return socket;
}

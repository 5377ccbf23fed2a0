import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

function peerKey(socket: Socket): string {
  return `${socket.localPort}|${socket.remoteAddress}|${socket.remotePort}`;
}

/**
 * Every socket the lab's listeners accepted, so `close()` can destroy the ones a fault
 * keeps open (hang, stall) and a reset can reach the TCP socket under a TLS one.
 */
export class SocketTracker {
  readonly #sockets = new Set<Socket>();
  /** TCP sockets under TLS listeners, by local port and peer address (TLS sockets do not expose them). */
  readonly #tcpByPeer = new Map<string, Socket>();

  /** Track a socket until it closes. `underTls`: a TCP socket a TLS socket will wrap. */
  track(socket: Socket, underTls = false): void {
    const sockets = this.#sockets;
    const byPeer = this.#tcpByPeer;
    sockets.add(socket);
    let key: string | undefined;
    if (underTls) {
      key = peerKey(socket);
      byPeer.set(key, socket);
    }
    socket.once('close', () => {
      sockets.delete(socket);
      if (key !== undefined && byPeer.get(key) === socket) byPeer.delete(key);
    });
  }

  /**
   * Abort the connection with a TCP RST. For a TLS socket the RST is sent on the TCP
   * socket under it (`resetAndDestroy` only works on a TCP handle).
   */
  reset(socket: Socket): void {
    if (socket instanceof TLSSocket) {
      const tcp = this.#tcpByPeer.get(peerKey(socket));
      // The RST alone also closes the TLS socket; destroying that too in the same tick
      // leaves Node's connection list holding a null socket (server.close() then throws).
      if (tcp !== undefined && !tcp.destroyed) tcp.resetAndDestroy();
      else socket.destroy();
      return;
    }
    socket.resetAndDestroy();
  }

  destroyAll(): void {
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    this.#tcpByPeer.clear();
  }

  get size(): number {
    return this.#sockets.size;
  }
}

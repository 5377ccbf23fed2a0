import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { ForwardContext } from './context.js';
import type { HttpFront } from './http-front.js';

export type ForwardProtocol = 'http' | 'socks5' | 'socks4';

export interface ListenerSpec {
  address: string;
  port: number;
  protocols: readonly ForwardProtocol[];
}

/** Takes a sniffed connection: the socket and the bytes read from it so far. */
export type ConnectionHandler = (socket: Socket, first: Buffer) => void;

export interface ListenerHandlers {
  http: HttpFront;
  socks5: ConnectionHandler;
  socks4: ConnectionHandler;
}

/**
 * The Listener: accepts TCP connections and tells the protocol from the first byte
 * (0x05 SOCKS5, 0x04 SOCKS4, anything else HTTP), among the protocols it serves.
 * A connection that sends nothing within the handshake time is closed.
 */
export class ForwardListener {
  readonly #spec: ListenerSpec;
  readonly #ctx: ForwardContext;
  readonly #handlers: ListenerHandlers;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  constructor(spec: ListenerSpec, ctx: ForwardContext, handlers: ListenerHandlers) {
    this.#spec = spec;
    this.#ctx = ctx;
    this.#handlers = handlers;
    this.#server = createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.#onConnection(s));
    this.#server.maxConnections = ctx.settings.maxClientConnections;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ host: this.#spec.address, port: this.#spec.port, exclusive: true }, () => {
        this.#server.off('error', reject);
        this.#server.on('error', (err) => this.#ctx.logger.error({ err }, 'forward listener error'));
        resolve();
      });
    });
  }

  address(): { protocols: ForwardProtocol[]; address: string; port: number } {
    const a = this.#server.address() as AddressInfo | null;
    return { protocols: [...this.#spec.protocols], address: a?.address ?? this.#spec.address, port: a?.port ?? this.#spec.port };
  }

  #onConnection(socket: Socket): void {
    this.#sockets.add(socket);
    const untrack = this.#ctx.tracker.track(socket);
    socket.once('close', () => {
      this.#sockets.delete(socket);
      untrack();
    });
    socket.on('error', () => {});
    const timer = setTimeout(() => socket.destroy(), this.#ctx.settings.handshakeTimeoutMs);
    socket.once('close', () => clearTimeout(timer));
    socket.once('data', (first: Buffer) => {
      clearTimeout(timer);
      const protocols = this.#spec.protocols;
      const b = first[0];
      if (b === 0x05 && protocols.includes('socks5')) this.#handlers.socks5(socket, first);
      else if (b === 0x04 && protocols.includes('socks4')) this.#handlers.socks4(socket, first);
      else if (b !== 0x05 && b !== 0x04 && protocols.includes('http')) this.#handlers.http.accept(socket, first);
      else socket.destroy();
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      for (const s of this.#sockets) s.destroy();
    });
  }
}

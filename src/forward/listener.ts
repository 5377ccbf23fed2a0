import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { DeadlineEntry, deadlines } from '../timing/deadlines.js';
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
  readonly #onFirstData: (this: Socket, first: Buffer) => void;
  readonly #onClose: (this: Socket) => void;

  constructor(spec: ListenerSpec, ctx: ForwardContext, handlers: ListenerHandlers) {
    this.#spec = spec;
    this.#ctx = ctx;
    this.#handlers = handlers;
    const sniffed = (socket: Socket, first: Buffer): void => this.#sniffed(socket, first);
    this.#onFirstData = function onFirstData(this: WaitingSocket, first: Buffer): void {
      this.removeListener('data', onFirstData);
      endHandshakeWait(this);
      sniffed(this, first);
    };
    const tracker = ctx.tracker;
    this.#onClose = function onClose(this: WaitingSocket): void {
      endHandshakeWait(this);
      tracker.forget(this);
    };
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

  /**
   * Per connection: tracked for shutdown, a handshake timeout, one sniff of the first read.
   * No closures per connection (this runs once per tunnel, and CONNECT tunnels per second
   * are benchmarked): the handlers are made once per listener, and the handshake timeout
   * is a small deadline object on the process list (timing/deadlines.ts), ended by the
   * first read. (The socket's own `setTimeout` costs a Node timer per connection and
   * re-arms it on every read while set.)
   */
  #onConnection(socket: Socket): void {
    this.#ctx.tracker.add(socket);
    const ms = this.#ctx.settings.handshakeTimeoutMs;
    if (ms > 0) {
      const wait = new HandshakeWait(socket);
      (socket as WaitingSocket)[kWait] = wait;
      deadlines.add(wait, performance.now(), ms);
    }
    socket.on('close', this.#onClose);
    socket.on('error', ignore);
    socket.on('data', this.#onFirstData);
  }

  /** The first bytes of a connection: hand it to the protocol they start. */
  #sniffed(socket: Socket, first: Buffer): void {
    const protocols = this.#spec.protocols;
    const b = first[0];
    if (b === 0x05 && protocols.includes('socks5')) this.#handlers.socks5(socket, first);
    else if (b === 0x04 && protocols.includes('socks4')) this.#handlers.socks4(socket, first);
    else if (b !== 0x05 && b !== 0x04 && protocols.includes('http')) this.#handlers.http.accept(socket, first);
    else socket.destroy();
  }

  /** Stop accepting; resolves once the connections are gone (the proxy's tracker ends them). */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
    });
  }
}

const kWait = Symbol('gatewise.handshakeWait');
type WaitingSocket = Socket & { [kWait]?: HandshakeWait };

/** A connection that must send its first bytes in time. */
class HandshakeWait extends DeadlineEntry {
  readonly socket: Socket;

  constructor(socket: Socket) {
    super();
    this.socket = socket;
  }

  deadlineReached(): void {
    this.socket.destroy();
  }
}

function endHandshakeWait(s: WaitingSocket): void {
  const w = s[kWait];
  if (w === undefined) return;
  deadlines.remove(w);
  s[kWait] = undefined;
}

function ignore(): void {}

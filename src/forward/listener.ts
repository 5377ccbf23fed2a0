import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { Failure } from '../failure/index.js';
import type { ForwardListenerTlsConfig, ListenerTlsConfig } from '../config/tls.js';
import { AcmeChallenges, AcmeManager, CertificateStore, checkClientCertificate, classifyClientTlsError, namelessClient, type ClientTlsFailure } from '../tls/index.js';
import { newRequestId, clientAddressFor } from './context.js';
import { DeadlineEntry, deadlines, destroyAfter } from '../timing/deadlines.js';
import { ConnectionGate, handshakeLeft, type GateStats } from '../http/connection-gate.js';
import type { ForwardContext } from './context.js';
import { installAccept, kHandshakeWait, kRefusedAtLimit, kSocketUser, shapeSocket, type SlottedSocket } from '../net/index.js';
import { reserveOwnListener } from '../net/own-listeners.js';

/** The user slot of an accepted socket handed to TLS (net/socket-slots.ts): the TLS socket over it is the client connection close() drains and cuts. */
export const IN_TLS = 'tls';

export type ForwardProtocol = 'http' | 'socks5' | 'socks4';

export interface ListenerSpec {
  address: string;
  port: number;
  protocols: readonly ForwardProtocol[];
  /** An HTTPS proxy listener: TLS first, then the protocols inside it. */
  tls?: ListenerTlsConfig | ForwardListenerTlsConfig | undefined;
}

/** A protocol front as the listener sees it. */
export interface ConnectionFront {
  /** Take a sniffed connection: the socket and the bytes read from it so far. */
  accept(socket: Socket, first: Buffer): void;
  /** Answer a connection refused at a listener limit in this protocol, record it, and close. */
  refuseConnection(socket: Socket, first: Buffer, f: Failure): void;
}

export type ListenerHandlers = Record<ForwardProtocol, ConnectionFront>;

/**
 * The Listener: accepts TCP connections and tells the protocol from the first byte
 * (0x05 SOCKS5, 0x04 SOCKS4, anything else HTTP), among the protocols it serves.
 * A connection that sends nothing within the handshake time is closed. The connection
 * gate (http/connection-gate.ts) admits connections under the cap and the per-address cap and
 * gives each its handshake time (shorter under pressure); a connection over a limit is
 * answered in its protocol once its first bytes tell which, never reset.
 */
export class ForwardListener {
  #spec: ListenerSpec;
  readonly #ctx: ForwardContext;
  #handlers: ListenerHandlers;
  readonly #server: Server;
  readonly #gate: ConnectionGate;
  readonly #onFirstData: (this: Socket, first: Buffer) => void;
  readonly #onClose: (this: Socket) => void;
  /** TLS listeners: the certificates and the (never listening) TLS server that runs handshakes. */
  readonly #certs: CertificateStore | undefined;
  readonly #tlsServer: TlsServer | undefined;
  /** A TLS listener with acme: its certificate's orders (TLS-ALPN-01 on this port) and the challenges pending. */
  readonly #acme: AcmeManager | undefined;
  readonly #challenges: AcmeChallenges | undefined;

  constructor(spec: ListenerSpec, ctx: ForwardContext, handlers: ListenerHandlers, configPath = 'listeners') {
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
    const s = ctx.settings;
    const gate = new ConnectionGate({
      maxConnections: s.maxClientConnections,
      maxPerSource: s.maxConnectionsPerSource,
      handshakeMs: s.handshakeTimeoutMs,
      handshakeFloorMs: s.handshakeFloorMs,
    });
    this.#gate = gate;
    this.#onClose = function onClose(this: WaitingSocket): void {
      endHandshakeWait(this);
      gate.release(this);
      tracker.forget(this);
    };
    // No `server.maxConnections`: Node closes connections past it without a word; the
    // gate answers them instead.
    this.#server = createServer({ allowHalfOpen: true, noDelay: true }, (c) => this.#onConnection(c));
    if (spec.tls !== undefined) {
      const certs = new CertificateStore(spec.tls, `${spec.address}:${spec.port}`, `${configPath}.tls`);
      this.#certs = certs;
      const server = createTlsServer(certs.serverOptions(s.handshakeTimeoutMs));
      this.#tlsServer = server;
      const mode = spec.tls.clientAuth?.mode;
      const strictSni = spec.tls.strictSni;
      server.on('secureConnection', (t: TLSSocket) => this.#secured(t, mode, strictSni));
      server.on('tlsClientError', (err: NodeJS.ErrnoException, t: TLSSocket) => {
        this.#tlsFailed(classifyClientTlsError(err, t), t);
        t.destroy();
      });
      certs.attach(server);
      const acme = (spec.tls as ForwardListenerTlsConfig).acme;
      if (acme !== undefined) {
        // TLS-ALPN-01 only (the config says so): a validation reaches this port's ClientHello sniff.
        this.#challenges = new AcmeChallenges();
        this.#acme = new AcmeManager(acme, acme.hosts!, certs, this.#challenges, `${configPath}.tls.acme`);
      }
    }
  }

  /** The ACME manager of a TLS listener with acme (admin, tests). */
  get acme(): AcmeManager | undefined {
    return this.#acme;
  }

  /** The certificates of a TLS listener (undefined: plain). */
  get certificates(): CertificateStore | undefined {
    return this.#certs;
  }

  /**
   * A reload: new connections go to these fronts and protocols; connections already handed
   * to a front stay with it until they close.
   */
  swap(handlers: ListenerHandlers, protocols: readonly ForwardProtocol[]): void {
    this.#handlers = handlers;
    this.#spec = { ...this.#spec, protocols };
  }

  /** The gate's counters (connections admitted, refused ones waiting, shed, refused). */
  get stats(): GateStats {
    return this.#gate.stats;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      // Not `exclusive`: with --workers N the workers share the primary's listening socket (an
      // exclusive bind made the second worker fail with EADDRINUSE; found by test/observe/workers.test.ts).
      this.#server.listen({ host: this.#spec.address, port: this.#spec.port }, () => {
        this.#server.off('error', reject);
        // Accepted sockets made with one options map and shaped at once (net/accept.ts): before any connection comes.
        installAccept(this.#server, shapeSocket);
        // The proxy never dials its own listener (net/own-listeners.ts), until it closes.
        const bound = this.#server.address() as AddressInfo;
        this.#server.once('close', reserveOwnListener(bound.address, bound.port, 'forward', this.#ctx.ownScope));
        if (this.#certs !== undefined) this.#certs.listener = `${this.address().address}:${this.address().port}`;
        // Orders start once the port is bound: the validations come here.
        this.#acme?.start();
        this.#server.on('error', (err) => this.#ctx.logger.error({ component: 'forward', err }, 'forward listener error'));
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
    // Every Gatewise slot first, before the gate or Node reads the socket: it keeps one map from here on (net/socket-slots.ts).
    // `installAccept` shaped it already (before Node's setNoDelay read it); again for a socket
    // from Node's own accept (a server with maxConnections): the stores then change no map.
    shapeSocket(socket);
    const now = performance.now();
    const decision = this.#gate.admit(socket, now);
    if (decision === 'shed') {
      socket.on('error', ignore);
      socket.destroy();
      return;
    }
    this.#ctx.tracker.add(socket);
    const ms = handshakeLeft(socket, 0, now);
    if (ms > 0) {
      const wait = new HandshakeWait(socket);
      (socket as WaitingSocket)[kHandshakeWait] = wait;
      deadlines.add(wait, now, ms);
    }
    if (decision === 'refused') (socket as WaitingSocket)[kRefusedAtLimit] = true;
    socket.on('close', this.#onClose);
    socket.on('error', ignore);
    socket.on('data', this.#onFirstData);
  }

  /** The first bytes of a connection: hand it to the protocol they start. */
  #sniffed(socket: Socket, first: Buffer): void {
    if (this.#tlsServer !== undefined) {
      this.#sniffedOuter(socket, first);
      return;
    }
    this.#sniffedInner(socket, first);
  }

  /**
   * A TLS listener's first bytes: a ClientHello (a TLS handshake record, 0x16) starts TLS;
   * plain HTTP is told in HTTP that this port speaks TLS; anything else is closed.
   */
  #sniffedOuter(socket: Socket, first: Buffer): void {
    if (first[0] === 0x16) {
      // Put the bytes back (paused, or a flowing socket would emit them to no one): Node's
      // TLSSocket feeds what the socket has buffered to OpenSSL before reading the handle.
      const challenges = this.#challenges;
      if (challenges !== undefined && challenges.alpnPending > 0) {
        // A TLS-ALPN-01 validation pending: its ClientHello gets the challenge certificate (tls/acme/alpn.ts).
        challenges.route(socket, this.#ctx.settings.handshakeTimeoutMs, () => this.#tlsServer!.emit('connection', socket), first);
        return;
      }
      socket.pause();
      socket.unshift(first);
      // Its user is the TLS socket made over it (tracked itself): never idle to close() on its own.
      (socket as SlottedSocket)[kSocketUser] = IN_TLS;
      this.#tlsServer!.emit('connection', socket);
      return;
    }
    const b = first[0];
    if (b !== 0x05 && b !== 0x04 && this.#spec.protocols.includes('http')) {
      const f = new Failure({ type: 'http_request_error', phase: 'accept', reason: 'bad_request', detail: 'this proxy port speaks TLS (an HTTPS proxy): use an https:// proxy URL' });
      this.#handlers.http.refuseConnection(socket, first, f);
      return;
    }
    socket.destroy();
  }

  /** The handshake is done: check a client certificate, then read the first bytes inside TLS. */
  #secured(t: TLSSocket, clientAuth: 'require' | 'optional' | undefined, strictSni: boolean): void {
    t.on('error', ignore);
    const nameless = namelessClient(t, strictSni);
    if (nameless !== undefined) {
      this.#tlsFailed(nameless, t);
      t.destroy();
      return;
    }
    if (clientAuth !== undefined) {
      const f = checkClientCertificate(t, clientAuth);
      if (f !== undefined) {
        this.#tlsFailed(f, t);
        t.destroy();
        return;
      }
    }
    const raw = (t as TLSSocket & { _parent?: Socket })._parent;
    const tracker = this.#ctx.tracker;
    tracker.add(t);
    t.once('close', () => tracker.forget(t));
    // The raw socket's marks (refused at the gate, per-address count) stay on it; its
    // refusal is answered inside TLS, in the protocol the first bytes tell.
    const refused = raw !== undefined && (raw as WaitingSocket)[kRefusedAtLimit] === true;
    const onInner = (first: Buffer): void => {
      t.removeListener('data', onInner);
      if (refused) {
        const p = this.#protocolOf(first);
        if (p === undefined) t.destroy();
        else this.#handlers[p].refuseConnection(t, first, this.#gate.refusal(raw!));
        return;
      }
      this.#sniffedInner(t, first);
    };
    t.on('data', onInner);
  }

  /** A TLS failure on the client's side: recorded (no answer is possible). */
  #tlsFailed(f: ClientTlsFailure, t: TLSSocket): void {
    const raw = (t as TLSSocket & { _parent?: Socket })._parent ?? t;
    const session = this.#ctx.meter.open({ protocol: 'http', requestId: newRequestId(), user: null, clientAddress: clientAddressFor(this.#ctx, raw) });
    session.finish({ error: f.type, reason: f.reason, phase: 'tls', detail: f.detail, refused: true, endedBy: 'client' });
  }

  #protocolOf(first: Buffer): ForwardProtocol | undefined {
    const protocols = this.#spec.protocols;
    const b = first[0];
    return b === 0x05 ? (protocols.includes('socks5') ? 'socks5' : undefined) : b === 0x04 ? (protocols.includes('socks4') ? 'socks4' : undefined) : protocols.includes('http') ? 'http' : undefined;
  }

  /** The first bytes of the protocol (on the TCP socket, or inside TLS). */
  #sniffedInner(socket: Socket, first: Buffer): void {
    const protocols = this.#spec.protocols;
    const b = first[0];
    const protocol: ForwardProtocol | undefined =
      b === 0x05 ? (protocols.includes('socks5') ? 'socks5' : undefined) : b === 0x04 ? (protocols.includes('socks4') ? 'socks4' : undefined) : protocols.includes('http') ? 'http' : undefined;
    if (protocol === undefined) socket.destroy();
    else if ((socket as WaitingSocket)[kRefusedAtLimit]) this.#handlers[protocol].refuseConnection(socket, first, this.#gate.refusal(socket));
    else this.#handlers[protocol].accept(socket, first);
  }

  /** Stop accepting; resolves once the connections are gone (the proxy's tracker ends them). */
  close(): Promise<void> {
    this.#certs?.close();
    this.#acme?.close();
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
    });
  }
}

type WaitingSocket = SlottedSocket & { [kHandshakeWait]?: HandshakeWait | undefined };

/** A connection that must send its first bytes in time. */
class HandshakeWait extends DeadlineEntry {
  readonly socket: Socket;

  constructor(socket: Socket) {
    super();
    this.socket = socket;
  }

  deadlineReached(): void {
    // Nothing was asked, so no answer is due; a refused connection ends with a FIN.
    if ((this.socket as WaitingSocket)[kRefusedAtLimit]) {
      this.socket.end();
      destroyAfter(this.socket, REFUSED_LINGER_MS);
    } else {
      this.socket.destroy();
    }
  }
}

/** How long a refused connection that sent nothing has to close after our FIN. */
const REFUSED_LINGER_MS = 1000;

function endHandshakeWait(s: WaitingSocket): void {
  const w = s[kHandshakeWait];
  if (w === undefined) return;
  deadlines.remove(w);
  s[kHandshakeWait] = undefined;
}

function ignore(): void {}

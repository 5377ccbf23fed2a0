import type { Socket } from 'node:net';
import type { Failure } from '../failure/index.js';
import type { CancelSignal } from '../timing/cancel.js';

/** Where a connection should go, as the client named it. */
export interface DialTarget {
  /** A name, or an IP literal (IPv6 without brackets). */
  host: string;
  port: number;
}

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/**
 * Decides whether a resolved address may be used for a target. Runs after resolution and
 * before any packet is sent: the dialer connects to exactly the address it approved.
 * Returns the refusal, or undefined to allow.
 */
export interface AddressGuard {
  (addr: ResolvedAddress, target: DialTarget): Failure | undefined;
  /**
   * A target whose name this host does not resolve (an upstream proxy exit resolves it): the
   * refusal, or undefined to let it go. Asked by every way out through an upstream proxy before
   * the exit is (exit.ts `refuseLiteral`); a guard without it lets every such name go.
   */
  readonly unresolved?: (target: DialTarget) => Failure | undefined;
}

export interface DialOptions {
  guard: AddressGuard;
  /** Connect timeout in ms (per attempt budget shared by all addresses). */
  connectTimeoutMs: number;
  /** Name resolution timeout in ms. */
  dnsTimeoutMs: number;
  signal?: CancelSignal;
}

/**
 * `opts` with a cancel signal, as an object literal of its own. Not `{ ...opts, signal }`: in
 * Node 20's V8 a spread copy's map keeps no transitions, so every copy with a property added
 * gets new maps, and each read of it in the dialers (guard, timeouts, signal) misses to V8's
 * runtime, once per tunnel to a name or through a pool (docs/benchmarks.md §35).
 */
export function withSignal(opts: DialOptions, signal: CancelSignal): DialOptions {
  return { guard: opts.guard, connectTimeoutMs: opts.connectTimeoutMs, dnsTimeoutMs: opts.dnsTimeoutMs, signal };
}

/**
 * Opens the transport to the next hop (gost's vocabulary). Resolves the name itself,
 * checks every resolved address with `opts.guard` and connects only to approved ones.
 * Rejects with a `Failure` (dns_*, destination_ip_prohibited, connection_*).
 */
export interface Dialer {
  dial(target: DialTarget, opts: DialOptions): Promise<Socket>;
  /**
   * The same dial with callbacks instead of a promise (optional: the router falls back to
   * `dial`). For the tunnel path, which runs once per CONNECT: no promise, no `then`, and
   * the caller can cancel through the handle instead of a signal. The sink is called once,
   * possibly before this returns (a refusal that needs no I/O). `opts.signal` is ignored.
   */
  dialTo?(target: DialTarget, opts: DialOptions, sink: DialSink): DialHandle;
}

/** Where a callback dial reports: once, the socket or the failure. */
export interface DialSink {
  /** Connected to `address` (the one approved; undefined when the dialer does not know it). */
  dialed(socket: Socket, address: string | undefined): void;
  /** A Failure, or an error to classify. */
  dialFailed(err: unknown): void;
}

/** A dial in flight: `abort` ends it (the sink then hears a failure, if it has not heard yet). */
export interface DialHandle {
  abort(): void;
}

export interface UdpOpenOptions {
  guard: AddressGuard;
  dnsTimeoutMs: number;
  /** Family of the local socket(s) used to send; both when omitted. */
  families?: ReadonlyArray<4 | 6>;
  /**
   * How long an exit that is an upstream proxy has to accept the connection and answer the
   * association's handshake, in one deadline (as a tunnel's hop: `DialOptions.connectTimeoutMs`);
   * the dialer's own default when omitted.
   */
  connectTimeoutMs?: number;
  /**
   * The association's cancel signal (its client closed the control connection): a hop still
   * opening (an upstream SOCKS5 exit's handshake) stops at once, as a TCP dial's `signal`.
   */
  signal?: CancelSignal;
  /**
   * An answer the egress itself dropped (an upstream SOCKS5 relay's fragment, which it does not
   * reassemble): the association counts it in its `datagramsDropped`, as the relay's own drops.
   */
  onDropped?: () => void;
}

export interface UdpSource extends ResolvedAddress {
  port: number;
}

/** One local UDP endpoint through which an association's datagrams leave. */
export interface UdpEgress {
  /** Resolve, check with the guard, send to that same address. Rejects with a Failure. */
  send(target: DialTarget, payload: Buffer): Promise<UdpSource>;
  /** Every datagram received from anywhere; the caller filters. */
  onMessage(listener: (payload: Buffer, from: UdpSource) => void): void;
  close(): void;
}

/** The UDP counterpart of Dialer, for SOCKS5 UDP ASSOCIATE. */
export interface UdpDialer {
  open(opts: UdpOpenOptions): Promise<UdpEgress>;
}

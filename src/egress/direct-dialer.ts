import type { Socket } from 'node:net';
import { Failure, classify } from '../failure/index.js';
import { withScope } from './exit-failure.js';
import { kDialedAddress, kSocketUser, type SlottedSocket } from '../net/index.js';
import { openTcp } from './open-tcp.js';
import { markOwnForwardPeer, ownListenerAt } from '../net/own-listeners.js';
import { withSignal, type DialHandle, type DialOptions, type DialSink, type DialTarget, type Dialer, type ResolvedAddress } from './dialer.js';
import { literalAddress, resolveHost, systemResolver, unmappedAddress, type Resolver } from './resolver.js';
import { DeadlineEntry, deadlines } from '../timing/deadlines.js';
import { Cancel, type CancelSignal } from '../timing/cancel.js';

export interface DirectDialerOptions {
  resolver?: Resolver;
  /** Bind outgoing connections to this local address (egress address pools). */
  localAddress?: string;
  /** Only connect to addresses of this family (the local address's). */
  family?: 4 | 6;
}

function hostPort(t: DialTarget): string {
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

/**
 * The plain way out: resolve, check, connect straight to the approved address.
 * Addresses are tried in resolver order within one connect time budget.
 */
export class DirectDialer implements Dialer {
  readonly #resolver: Resolver;
  readonly #localAddress: string | undefined;
  readonly #family: 4 | 6 | undefined;

  constructor(opts: DirectDialerOptions = {}) {
    this.#resolver = opts.resolver ?? systemResolver;
    this.#localAddress = opts.localAddress;
    this.#family = opts.family;
  }

  dial(target: DialTarget, opts: DialOptions): Promise<Socket> {
    // An IP literal of this dialer's family (CONNECT 127.0.0.1:port): one check and one
    // connect, with no async frame, address list or second promise; the rejections are the
    // same Failures the general path throws for a single address. Per CONNECT tunnel: ~2 KB
    // less allocated (heap sampling profile, 2.3 KB → 0.2 KB in this function).
    const literal = this.#usableLiteral(target, opts);
    if (literal !== undefined) {
      const refusal = opts.guard(literal, target);
      if (refusal) return Promise.reject(refusal);
      return this.#connectOne(literal, target.port, opts.connectTimeoutMs, hostPort(target), opts.signal);
    }
    return this.#dial(target, opts, literalAddress(target.host));
  }

  /**
   * `dial` with callbacks (the tunnel path). An IP literal: the guard, then one connect whose
   * attempt is the handle; a refusal is reported before this returns. Anything else (a name
   * to resolve, a literal of the other family) goes the general way, cancelled by a signal.
   */
  dialTo(target: DialTarget, opts: DialOptions, sink: DialSink): DialHandle {
    const literal = this.#usableLiteral(target, opts);
    if (literal !== undefined) {
      const refusal = opts.guard(literal, target);
      if (refusal) {
        sink.dialFailed(refusal);
        return NO_HANDLE;
      }
      const sock = openTcp({ host: literal.address, port: target.port, family: literal.family, localAddress: this.#localAddress });
      return new ConnectAttempt(sock, literal, target.port, opts.connectTimeoutMs, hostPort(target), undefined, sink);
    }
    const cancel = new Cancel();
    const sinkOf = new PromiseSink(sink);
    this.#dial(target, withSignal(opts, cancel), literalAddress(target.host)).then(sinkOf.resolve, sinkOf.reject);
    return cancel;
  }

  /** The target as an IP literal this dialer can connect to in one attempt, or undefined. */
  #usableLiteral(target: DialTarget, opts: DialOptions): ResolvedAddress | undefined {
    const literal = literalAddress(target.host);
    return literal !== undefined && opts.connectTimeoutMs > 0 && (this.#family === undefined || this.#family === literal.family) ? literal : undefined;
  }

  async #dial(target: DialTarget, opts: DialOptions, literal: ResolvedAddress | undefined): Promise<Socket> {
    const nextHop = hostPort(target);
    // An IP literal needs no resolution: no promise and no DNS timer for it.
    const all = literal !== undefined ? [literal] : await resolveHost(this.#resolver, target.host, opts.dnsTimeoutMs, nextHop, opts.signal);
    const allowed: ResolvedAddress[] = [];
    let refusal: Failure | undefined;
    for (const a of all) {
      const f = opts.guard(a, target);
      if (f) refusal ??= f;
      else allowed.push(a);
    }
    if (allowed.length === 0) throw refusal!;
    if (this.#family !== undefined) {
      const fam = this.#family;
      // An IPv4-mapped IPv6 address (`[::ffff:127.0.0.2]`) is its IPv4 one, which an IPv4 exit
      // reaches (the rules judged it as that address already). Before, an IPv4 address pool
      // refused it as unroutable while a direct connection reached it (review of session 35).
      const usable = (fam === 4 ? allowed.map(unmappedAddress) : allowed).filter((a) => a.family === fam);
      if (usable.length === 0) {
        throw withScope(new Failure({ type: 'destination_ip_unroutable', phase: 'connect', nextHop, detail: `${target.host} has no IPv${fam} address to reach from ${this.#localAddress ?? 'this exit'}` }), 'skip');
      }
      allowed.splice(0, allowed.length, ...usable);
    }
    const deadline = performance.now() + opts.connectTimeoutMs;
    let last: Failure | undefined;
    for (const a of allowed) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      try {
        const sock = await this.#connectOne(a, target.port, left, nextHop, opts.signal);
        // The address a general dial connected to, read by `dialTo`'s promise path.
        (sock as SlottedSocket)[kDialedAddress] = a.address;
        return sock;
      } catch (err) {
        last = err instanceof Failure ? err : classify(err, { connected: false, responseStarted: false, headersReceived: false, nextHop });
        if (last.type === 'proxy_internal_error' && opts.signal?.aborted) throw last;
      }
    }
    throw last ?? new Failure({ type: 'connection_timeout', phase: 'connect', nextHop, detail: `connect to ${nextHop} timed out`, retrySafe: true });
  }

  #connectOne(a: ResolvedAddress, port: number, timeoutMs: number, nextHop: string, signal?: CancelSignal): Promise<Socket> {
    return new Promise<Socket>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new Failure({ type: 'proxy_internal_error', phase: 'connect', nextHop, detail: 'aborted: the client went away' }));
        return;
      }
      const sock = openTcp({ host: a.address, port, family: a.family, localAddress: this.#localAddress });
      new ConnectAttempt(sock, a, port, timeoutMs, nextHop, signal, { dialed: resolve, dialFailed: reject });
    });
  }
}

const NO_HANDLE: DialHandle = { abort(): void {} };

/** `dialTo` over the general (promise) path: the sink hears the promise's outcome. */
class PromiseSink {
  readonly resolve: (s: Socket) => void;
  readonly reject: (err: unknown) => void;

  constructor(sink: DialSink) {
    this.resolve = (s: Socket) => sink.dialed(s, (s as SlottedSocket)[kDialedAddress]);
    this.reject = (err: unknown) => sink.dialFailed(err);
  }
}

/**
 * One connect in flight: tells its sink once, on connect, error, timeout or abort (it is
 * the handle `dialTo` returns). The socket's listeners are module functions that find the
 * attempt on the socket, and the timeout is a deadline on the process list
 * (timing/deadlines.ts), so a dial allocates this object and no closures or Node timer (it
 * runs once per tunnel). The listeners stay on the socket once it is settled (one 'connect'
 * and one 'error' that then do nothing): removing them cost more than leaving them, and the
 * 'error' one means a tunnel need not add its own.
 */
class ConnectAttempt extends DeadlineEntry implements DialHandle {
  readonly #sock: SlottedSocket;
  readonly #address: ResolvedAddress;
  readonly #port: number;
  readonly #timeoutMs: number;
  readonly #nextHop: string;
  readonly #signal: CancelSignal | undefined;
  readonly #sink: DialSink;
  /** The abort listener handed to the signal (a signal takes functions, not objects). */
  #onAbort: (() => void) | undefined;

  constructor(sock: Socket, address: ResolvedAddress, port: number, timeoutMs: number, nextHop: string, signal: CancelSignal | undefined, sink: DialSink) {
    super();
    this.#sock = sock;
    this.#address = address;
    this.#port = port;
    this.#timeoutMs = timeoutMs;
    this.#nextHop = nextHop;
    this.#signal = signal;
    this.#sink = sink;
    this.#sock[kSocketUser] = this;
    sock.on('connect', onAttemptConnect);
    sock.on('error', onAttemptError);
    if (signal !== undefined) {
      this.#onAbort = () => this.abort();
      signal.addEventListener('abort', this.#onAbort, { once: true });
    }
    deadlines.add(this, performance.now(), timeoutMs);
  }

  #settle(): boolean {
    const sock = this.#sock;
    if (sock[kSocketUser] !== this) return false;
    deadlines.remove(this);
    sock[kSocketUser] = undefined;
    if (this.#onAbort !== undefined) this.#signal!.removeEventListener('abort', this.#onAbort);
    return true;
  }

  connected(): void {
    // This process's own gateway listener: its local end is marked before any byte goes, so
    // the gateway trusts it with nothing a loopback client gets (net/own-listeners.ts). One
    // Map lookup by port for any other destination. In a `--workers N` group every worker must
    // have the mark first (the kernel may hand the connection to any of them): the attempt
    // stays open (its deadline, abort and errors as while connecting) until the group says so.
    if (ownListenerAt(this.#address.address, this.#port, 'gateway')) {
      const shared = markOwnForwardPeer(this.#sock);
      if (shared !== undefined) {
        shared.then(
          (ok) => {
            if (ok) this.#dialed();
            else this.#fail(new Failure({ type: 'proxy_internal_error', phase: 'connect', nextHop: this.#nextHop, detail: `the worker group did not confirm in time that this connection to its own gateway listener (${this.#address.address} port ${this.#port}) is a forward user's: not used, the gateway would take it for a local client` }));
          },
          () => {},
        );
        return;
      }
    }
    this.#dialed();
  }

  #dialed(): void {
    if (!this.#settle()) return;
    this.#sink.dialed(this.#sock, this.#address.address);
  }

  failed(err: Error): void {
    this.#fail(classify(err, { connected: false, responseStarted: false, headersReceived: false, nextHop: this.#nextHop }));
  }

  /** The client went away: stop connecting. */
  abort(): void {
    this.#fail(new Failure({ type: 'proxy_internal_error', phase: 'connect', nextHop: this.#nextHop, detail: 'aborted: the client went away' }));
  }

  #fail(f: Failure): void {
    if (!this.#settle()) return;
    this.#sock.destroy();
    this.#sink.dialFailed(f);
  }

  deadlineReached(): void {
    const detail = `connect to ${this.#address.address} port ${this.#port} timed out after ${Math.round(this.#timeoutMs)} ms`;
    this.#fail(new Failure({ type: 'connection_timeout', phase: 'connect', nextHop: this.#nextHop, detail, retrySafe: true }));
  }
}

// The slot holds the attempt while it connects; afterwards nothing or the tunnel (kSocketUser).
function onAttemptConnect(this: SlottedSocket): void {
  const a = this[kSocketUser];
  if (a instanceof ConnectAttempt) a.connected();
}

/** While connecting: the attempt fails. Afterwards: nothing (the socket's user has its own ways to see the end: 'close'). */
function onAttemptError(this: SlottedSocket, err: Error): void {
  const a = this[kSocketUser];
  if (a instanceof ConnectAttempt) a.failed(err);
}

import { connect, type Socket } from 'node:net';
import { Failure, classify } from '../failure/index.js';
import { withScope } from './exit-failure.js';
import type { DialOptions, DialTarget, Dialer, ResolvedAddress } from './dialer.js';
import { literalAddress, resolveHost, systemResolver, type Resolver } from './resolver.js';
import { DeadlineEntry, deadlines } from '../timing/deadlines.js';
import type { CancelSignal } from '../timing/cancel.js';

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
    const literal = literalAddress(target.host);
    if (literal !== undefined && opts.connectTimeoutMs > 0 && (this.#family === undefined || this.#family === literal.family)) {
      const refusal = opts.guard(literal, target);
      if (refusal) return Promise.reject(refusal);
      return this.#connectOne(literal, target.port, opts.connectTimeoutMs, hostPort(target), opts.signal);
    }
    return this.#dial(target, opts, literal);
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
      const usable = allowed.filter((a) => a.family === fam);
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
        return await this.#connectOne(a, target.port, left, nextHop, opts.signal);
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
      const sock = connect({ host: a.address, port, family: a.family, localAddress: this.#localAddress, noDelay: true, allowHalfOpen: true });
      new ConnectAttempt(sock, a, port, timeoutMs, nextHop, signal, resolve, reject);
    });
  }
}

const kAttempt = Symbol('gatewise.connectAttempt');
type AttemptSocket = Socket & { [kAttempt]?: ConnectAttempt };

/**
 * One connect in flight: settles the dial's promise once, on connect, error, timeout or
 * cancel. The socket's listeners are module functions that find the attempt on the
 * socket, and the timeout is a deadline on the process list (timing/deadlines.ts), so a
 * dial allocates this object and no closures or Node timer (it runs once per tunnel).
 */
class ConnectAttempt extends DeadlineEntry {
  readonly #sock: AttemptSocket;
  readonly #address: ResolvedAddress;
  readonly #port: number;
  readonly #timeoutMs: number;
  readonly #nextHop: string;
  readonly #signal: CancelSignal | undefined;
  readonly #resolve: (s: Socket) => void;
  readonly #reject: (f: Failure) => void;
  /** The abort listener handed to the signal (a signal takes functions, not objects). */
  #onAbort: (() => void) | undefined;

  constructor(sock: Socket, address: ResolvedAddress, port: number, timeoutMs: number, nextHop: string, signal: CancelSignal | undefined, resolve: (s: Socket) => void, reject: (f: Failure) => void) {
    super();
    this.#sock = sock;
    this.#address = address;
    this.#port = port;
    this.#timeoutMs = timeoutMs;
    this.#nextHop = nextHop;
    this.#signal = signal;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#sock[kAttempt] = this;
    sock.on('connect', onAttemptConnect);
    sock.on('error', onAttemptError);
    if (signal !== undefined) {
      this.#onAbort = () => this.#fail(new Failure({ type: 'proxy_internal_error', phase: 'connect', nextHop, detail: 'aborted: the client went away' }));
      signal.addEventListener('abort', this.#onAbort, { once: true });
    }
    deadlines.add(this, performance.now(), timeoutMs);
  }

  #cleanup(): void {
    const sock = this.#sock;
    deadlines.remove(this);
    sock[kAttempt] = undefined;
    sock.removeListener('connect', onAttemptConnect);
    sock.removeListener('error', onAttemptError);
    if (this.#onAbort !== undefined) this.#signal!.removeEventListener('abort', this.#onAbort);
  }

  connected(): void {
    this.#cleanup();
    this.#resolve(this.#sock);
  }

  failed(err: Error): void {
    this.#fail(classify(err, { connected: false, responseStarted: false, headersReceived: false, nextHop: this.#nextHop }));
  }

  #fail(f: Failure): void {
    this.#cleanup();
    this.#sock.destroy();
    this.#reject(f);
  }

  deadlineReached(): void {
    const detail = `connect to ${this.#address.address} port ${this.#port} timed out after ${Math.round(this.#timeoutMs)} ms`;
    this.#fail(new Failure({ type: 'connection_timeout', phase: 'connect', nextHop: this.#nextHop, detail, retrySafe: true }));
  }
}

function onAttemptConnect(this: AttemptSocket): void {
  this[kAttempt]?.connected();
}

function onAttemptError(this: AttemptSocket, err: Error): void {
  this[kAttempt]?.failed(err);
}

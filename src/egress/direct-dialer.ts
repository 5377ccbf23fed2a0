import { connect, type Socket } from 'node:net';
import { Failure, classify } from '../failure/index.js';
import { withScope } from './exit-failure.js';
import type { DialOptions, DialTarget, Dialer, ResolvedAddress } from './dialer.js';
import { resolveHost, systemResolver, type Resolver } from './resolver.js';
import type { CancelSignal } from './cancel.js';

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

  async dial(target: DialTarget, opts: DialOptions): Promise<Socket> {
    const nextHop = hostPort(target);
    const all = await resolveHost(this.#resolver, target.host, opts.dnsTimeoutMs, nextHop, opts.signal);
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
      const cleanup = (): void => {
        clearTimeout(timer);
        sock.off('connect', onConnect);
        sock.off('error', onError);
        signal?.removeEventListener('abort', onAbort);
      };
      const onConnect = (): void => {
        cleanup();
        resolve(sock);
      };
      const onError = (err: Error): void => {
        cleanup();
        sock.destroy();
        reject(classify(err, { connected: false, responseStarted: false, headersReceived: false, nextHop }));
      };
      const onAbort = (): void => {
        cleanup();
        sock.destroy();
        reject(new Failure({ type: 'proxy_internal_error', phase: 'connect', nextHop, detail: 'aborted: the client went away' }));
      };
      const timer = setTimeout(() => {
        cleanup();
        sock.destroy();
        reject(new Failure({ type: 'connection_timeout', phase: 'connect', nextHop, detail: `connect to ${a.address} port ${port} timed out after ${Math.round(timeoutMs)} ms`, retrySafe: true }));
      }, timeoutMs);
      sock.once('connect', onConnect);
      sock.once('error', onError);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

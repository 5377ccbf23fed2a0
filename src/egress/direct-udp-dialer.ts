import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { isIP } from 'node:net';
import { Failure, classify } from '../failure/index.js';
import type { DialTarget, ResolvedAddress, UdpDialer, UdpEgress, UdpOpenOptions, UdpSource } from './dialer.js';
import { resolveHost, systemResolver, unmappedAddress, type Resolver } from './resolver.js';

export interface DirectUdpDialerOptions {
  resolver?: Resolver;
  /** How long a resolved name is reused for later datagrams of the same association. */
  resolveCacheMs?: number;
  /** Most names cached per association. */
  resolveCacheSize?: number;
  /** Send from this local address (egress address pools); only its family is used. */
  localAddress?: string;
}

function normalizeFamily(family: string | number): 4 | 6 {
  return family === 'IPv6' || family === 6 ? 6 : 4;
}

class DirectUdpEgress implements UdpEgress {
  readonly #opts: UdpOpenOptions;
  readonly #resolver: Resolver;
  readonly #cacheMs: number;
  readonly #cacheSize: number;
  readonly #cache = new Map<string, { addrs: ResolvedAddress[]; expires: number }>();
  readonly #sockets = new Map<4 | 6, UdpSocket>();
  readonly #listeners: Array<(payload: Buffer, from: UdpSource) => void> = [];
  #closed = false;

  readonly #localAddress: string | undefined;

  constructor(opts: UdpOpenOptions, resolver: Resolver, cacheMs: number, cacheSize: number, localAddress?: string) {
    this.#localAddress = localAddress;
    this.#opts = localAddress ? { ...opts, families: [isIP(localAddress) === 6 ? 6 : 4] } : opts;
    this.#resolver = resolver;
    this.#cacheMs = cacheMs;
    this.#cacheSize = cacheSize;
  }

  async #socketFor(family: 4 | 6): Promise<UdpSocket> {
    const existing = this.#sockets.get(family);
    if (existing) return existing;
    const sock = createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6 });
    this.#sockets.set(family, sock);
    sock.on('message', (msg, rinfo) => {
      const from: UdpSource = { address: rinfo.address, family: normalizeFamily(rinfo.family), port: rinfo.port };
      for (const l of this.#listeners) l(msg, from);
    });
    sock.on('error', () => {
      // ICMP errors and the like surface here; datagrams are best effort.
    });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(0, this.#localAddress, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    if (this.#closed) {
      sock.close();
      throw new Failure({ type: 'proxy_internal_error', phase: 'connect', detail: 'UDP association closed' });
    }
    return sock;
  }

  async #resolve(target: DialTarget, nextHop: string): Promise<ResolvedAddress[]> {
    const now = Date.now();
    const hit = this.#cache.get(target.host);
    if (hit && hit.expires > now) return hit.addrs;
    const addrs = await resolveHost(this.#resolver, target.host, this.#opts.dnsTimeoutMs, nextHop);
    if (this.#cache.size >= this.#cacheSize) {
      const oldest = this.#cache.keys().next();
      if (!oldest.done) this.#cache.delete(oldest.value);
    }
    this.#cache.set(target.host, { addrs, expires: now + this.#cacheMs });
    return addrs;
  }

  async send(target: DialTarget, payload: Buffer): Promise<UdpSource> {
    if (this.#closed) throw new Failure({ type: 'proxy_internal_error', phase: 'send', detail: 'UDP association closed' });
    const nextHop = target.host.includes(':') ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
    const addrs = await this.#resolve(target, nextHop);
    const families = this.#opts.families;
    let refusal: Failure | undefined;
    let chosen: ResolvedAddress | undefined;
    for (const found of addrs) {
      // An IPv4-mapped address goes out as the IPv4 address it maps, on the udp4 socket (the
      // udp6 one is IPv6-only and cannot reach it): the guard judges the same address, and a
      // TCP CONNECT to it reaches that host too (review finding: such datagrams were dropped).
      const a = unmappedAddress(found);
      if (families && !families.includes(a.family)) continue;
      const f = this.#opts.guard(a, target);
      if (f) {
        refusal ??= f;
        continue;
      }
      chosen = a;
      break;
    }
    if (!chosen) {
      throw refusal ?? new Failure({ type: 'destination_ip_unroutable', phase: 'connect', nextHop, detail: 'no address of a usable family' });
    }
    const sock = await this.#socketFor(chosen.family);
    const addr = chosen;
    await new Promise<void>((resolve, reject) => {
      sock.send(payload, target.port, addr.address, (err) => {
        if (err) reject(classify(err, { connected: false, responseStarted: false, headersReceived: false, nextHop }));
        else resolve();
      });
    });
    // A literal, not `{ ...addr, port }` (a spread copy with a property added gets new V8 maps per datagram in Node 20; withSignal in dialer.ts).
    return { address: addr.address, family: addr.family, port: target.port };
  }

  onMessage(listener: (payload: Buffer, from: UdpSource) => void): void {
    this.#listeners.push(listener);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#sockets.values()) {
      try {
        s.close();
      } catch {
        // already closed
      }
    }
    this.#sockets.clear();
    this.#listeners.length = 0;
    this.#cache.clear();
  }
}

/** UDP straight out of this host, one local socket per family per association. */
export class DirectUdpDialer implements UdpDialer {
  readonly #resolver: Resolver;
  readonly #cacheMs: number;
  readonly #cacheSize: number;
  readonly #localAddress: string | undefined;

  constructor(opts: DirectUdpDialerOptions = {}) {
    this.#localAddress = opts.localAddress;
    this.#resolver = opts.resolver ?? systemResolver;
    this.#cacheMs = opts.resolveCacheMs ?? 30_000;
    this.#cacheSize = opts.resolveCacheSize ?? 256;
  }

  async open(opts: UdpOpenOptions): Promise<UdpEgress> {
    return new DirectUdpEgress(opts, this.#resolver, this.#cacheMs, this.#cacheSize, this.#localAddress);
  }
}

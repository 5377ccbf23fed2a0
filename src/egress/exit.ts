import { isIP, type Socket } from 'node:net';
import { Failure, classify } from '../failure/index.js';
import type { DialOptions, DialTarget, UdpDialer } from './dialer.js';
import { DirectDialer } from './direct-dialer.js';
import { DirectUdpDialer } from './direct-udp-dialer.js';
import { scopeOf, withScope } from './exit-failure.js';
import { httpConnect } from './http-connector.js';
import { literalAddress, localhostAddresses, type Resolver } from './resolver.js';
import { socks5Connect } from './socks5-connector.js';
import { openTransport } from './proxy-transport.js';
import { Socks5UdpDialer } from './socks5-udp-dialer.js';
import type { ProxyEndpoint } from './proxy-url.js';

/**
 * One way out of a pool (a gost Node): a local source address, an upstream proxy, or
 * a chain of upstream proxies. `dial` rejects with a Failure whose scope
 * (exit-failure.ts) tells the pool what to mark.
 */
export interface Exit {
  /** Stable id within its pool (the label). */
  readonly id: string;
  readonly kind: 'address' | 'proxy';
  /** Safe to show: an address or proxy URL(s) without credentials. */
  readonly label: string;
  readonly weight: number;
  dial(target: DialTarget, opts: DialOptions): Promise<Socket>;
  /** UDP through this exit (address exits, and a single SOCKS5 upstream via its UDP ASSOCIATE). */
  readonly udp?: UdpDialer;
  /**
   * For a single HTTP upstream proxy: open a plain transport to it, over which plain
   * HTTP requests go in absolute-form.
   */
  readonly httpProxy?: { endpoint: ProxyEndpoint; open(opts: DialOptions): Promise<Socket> };
}

/** Outgoing connections bound to one local address ("datacenter proxies"). */
export class AddressExit implements Exit {
  readonly id: string;
  readonly kind = 'address' as const;
  readonly label: string;
  readonly weight: number;
  readonly udp: UdpDialer;
  readonly #family: 4 | 6;
  readonly #dialer: DirectDialer;

  constructor(address: string, opts: { resolver?: Resolver; weight?: number } = {}) {
    const fam = isIP(address);
    if (fam === 0) throw new TypeError(`egress address is not an IP address: ${address}`);
    this.#family = fam === 6 ? 6 : 4;
    this.id = this.label = address;
    this.weight = opts.weight ?? 1;
    this.#dialer = new DirectDialer({ resolver: opts.resolver, localAddress: address, family: this.#family });
    this.udp = new DirectUdpDialer({ resolver: opts.resolver, localAddress: address });
  }

  async dial(target: DialTarget, opts: DialOptions): Promise<Socket> {
    try {
      return await this.#dialer.dial(target, opts);
    } catch (err) {
      const f = err instanceof Failure ? err : classify(err, { connected: false, responseStarted: false, headersReceived: false });
      if (scopeOf(f) !== 'none') throw f;
      const code = (f.cause as { code?: string } | undefined)?.code;
      if (code === 'EADDRNOTAVAIL' || code === 'EINVAL' || code === 'EADDRINUSE') throw withScope(f, 'exit');
      if (f.type === 'connection_refused' || f.type === 'connection_timeout' || f.type === 'destination_ip_unroutable' || f.type === 'connection_terminated') {
        throw withScope(f, 'domain');
      }
      throw f;
    }
  }
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Through one upstream proxy or a chain of them ("rotating proxies"): the Dialer opens
 * TCP to the first hop, then each Connector (HTTP CONNECT or SOCKS5) asks its hop for the
 * next one, the last for the destination. Names are resolved by the last hop; the
 * address guard applies to IP literals here (names are checked by the handlers).
 */
/**
 * The address rules for a destination given as an IP literal (or a `localhost` name, whose
 * addresses are fixed), before any exit is asked to reach it: the exit (a proxy) resolves
 * names itself, so these are the addresses this hop can judge. Any other name is judged by
 * the guard's `unresolved` (the rules a name meets without its address). Every way out through an upstream proxy checks it first, the CONNECT or
 * SOCKS dial of a chain and the plain-HTTP request written to an HTTP proxy alike (finding,
 * session 29: the latter skipped it, so a denied literal was reachable through an HTTP exit).
 */
export function refuseLiteral(target: DialTarget, opts: DialOptions): void {
  const lit = literalAddress(target.host);
  if (lit !== undefined) {
    const refusal = opts.guard(lit, target);
    if (refusal) throw refusal;
    return;
  }
  // `localhost` and names under it are loopback wherever they are resolved (RFC 6761 §6.3):
  // judged here as 127.0.0.1 and ::1, refused if either is, since the exit picks which one it
  // dials. Before, the name went to the exit unjudged and reached the loopback a rule refuses.
  const local = localhostAddresses(target.host);
  if (local === undefined) {
    // A name the exit resolves: the rules it can meet unresolved (SSRF audit: `defaultAction:
    // deny`, and a global deny past a user's allow rule by address, did not judge it).
    const refusal = opts.guard.unresolved?.(target);
    if (refusal) throw refusal;
    return;
  }
  for (const a of local) {
    const refusal = opts.guard(a, target);
    if (refusal) throw refusal;
  }
}

export class ProxyChainExit implements Exit {
  readonly id: string;
  readonly kind = 'proxy' as const;
  readonly label: string;
  readonly weight: number;
  readonly hops: readonly ProxyEndpoint[];
  readonly httpProxy?: Exit['httpProxy'];
  readonly udp?: UdpDialer;

  constructor(hops: ProxyEndpoint[], opts: { weight?: number; resolver?: Resolver } = {}) {
    if (hops.length === 0) throw new TypeError('a proxy chain needs at least one hop');
    this.hops = hops;
    this.id = this.label = hops.map((h) => h.label).join(' > ');
    this.weight = opts.weight ?? 1;
    const only = hops[0]!;
    if (hops.length === 1 && only.protocol === 'http') {
      this.httpProxy = { endpoint: only, open: (o) => openTransport(only, o.connectTimeoutMs, o.signal) };
    }
    if (hops.length === 1 && only.protocol === 'socks5') this.udp = new Socks5UdpDialer(only, { resolver: opts.resolver });
  }

  async dial(target: DialTarget, opts: DialOptions): Promise<Socket> {
    refuseLiteral(target, opts);
    const deadline = performance.now() + opts.connectTimeoutMs;
    const left = (): number => Math.max(1, Math.round(deadline - performance.now()));
    let sock = await openTransport(this.hops[0]!, opts.connectTimeoutMs, opts.signal);
    try {
      for (let i = 0; i < this.hops.length; i++) {
        const hop = this.hops[i]!;
        const next = this.hops[i + 1];
        const to: DialTarget = next ? { host: next.host, port: next.port } : target;
        sock = hop.protocol === 'http' ? await httpConnect(sock, hop, to, left(), opts.signal) : await socks5Connect(sock, hop, to, left(), opts.signal);
        if (next && sock.destroyed) throw withScope(new Failure({ type: 'connection_terminated', phase: 'connect', nextHop: hop.label, detail: `chain broke after ${hop.label}` }), 'exit');
      }
      return sock;
    } catch (err) {
      sock.destroy();
      if (err instanceof Failure) {
        // Refusals while building the chain (not at its last hop) mark the whole chain.
        const failedAt = this.hops.findIndex((h) => h.label === err.nextHop);
        if (failedAt >= 0 && failedAt < this.hops.length - 1 && scopeOf(err) === 'domain') throw withScope(err, 'exit');
        throw err;
      }
      throw classify(err, { connected: false, responseStarted: false, headersReceived: false, nextHop: hostPort(target.host, target.port) });
    }
  }
}

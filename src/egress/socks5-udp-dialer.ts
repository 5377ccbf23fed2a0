import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createRequire } from 'node:module';
import { isIP, type Socket } from 'node:net';
import type { SocksClient as SocksClientType } from 'socks';
import { Failure, classify } from '../failure/index.js';
import type { DialTarget, ResolvedAddress, UdpDialer, UdpEgress, UdpOpenOptions, UdpSource } from './dialer.js';
import { withScope } from './exit-failure.js';
import { socks5Handshake } from './socks5-client.js';
import { openTransport } from './proxy-transport.js';
import type { ProxyEndpoint } from './proxy-url.js';
import { resolveHost, systemResolver, unmappedAddress, type Resolver } from './resolver.js';

const requireModule = createRequire(import.meta.url);
/**
 * The `socks` package (with ip-address and smart-buffer, ~25 modules), for its UDP frame
 * codec, loaded by the first association through an upstream SOCKS5 proxy: a forward proxy
 * whose exits are direct never holds it (docs/benchmarks.md §32). CommonJS: loads synchronously.
 */
let loaded: typeof SocksClientType | undefined;
const socksClient = (): typeof SocksClientType => (loaded ??= (requireModule('socks') as { SocksClient: typeof SocksClientType }).SocksClient);

/**
 * UDP through an upstream SOCKS5 proxy (its UDP ASSOCIATE): one control connection and
 * one local UDP socket per association. Names are resolved here and checked with the
 * guard (as for direct UDP), so replies can be matched to the address sent to.
 */
class Socks5UdpEgress implements UdpEgress {
  readonly #control: Socket;
  readonly #sock: UdpSocket;
  readonly #relay: { host: string; port: number };
  readonly #opts: UdpOpenOptions;
  readonly #resolver: Resolver;
  readonly #proxy: ProxyEndpoint;
  readonly #listeners: Array<(payload: Buffer, from: UdpSource) => void> = [];
  #closed = false;

  constructor(control: Socket, sock: UdpSocket, relay: { host: string; port: number }, opts: UdpOpenOptions, resolver: Resolver, proxy: ProxyEndpoint) {
    this.#control = control;
    this.#sock = sock;
    this.#relay = relay;
    this.#opts = opts;
    this.#resolver = resolver;
    this.#proxy = proxy;
    control.on('close', () => this.close());
    control.on('error', () => {});
    // Frames come from the upstream's relay only: its address and its port. The socket listens
    // on the wildcard address, so anyone could send to it from the relay's port number on
    // another address (review finding: the port alone was checked).
    const relayAddress = unmappedAddress({ address: relay.host, family: isIP(relay.host) === 6 ? 6 : 4 }).address;
    sock.on('message', (msg, rinfo) => {
      if (rinfo.port !== relay.port) return;
      if (rinfo.address !== relayAddress && unmappedAddress({ address: rinfo.address, family: rinfo.family === 'IPv6' ? 6 : 4 }).address !== relayAddress) return;
      let frame;
      try {
        frame = socksClient().parseUDPFrame(msg);
      } catch {
        return;
      }
      // A fragment (FRAG != 0): there is no reassembly, so it is dropped (RFC 1928 §7). Before,
      // FRAG was not read and a fragment went to the client as a whole datagram
      // (test/egress/socks5-udp-source.test.ts). Said to the association (`onDropped`), which counts
      // it in datagramsDropped (review of session 37: oversized answers were counted, these not).
      if (frame.frameNumber !== 0) {
        opts.onDropped?.();
        return;
      }
      const host = frame.remoteHost.host;
      const from: UdpSource = { address: host, family: isIP(host) === 6 ? 6 : 4, port: frame.remoteHost.port };
      for (const l of this.#listeners) l(frame.data, from);
    });
    sock.on('error', () => {});
  }

  async send(target: DialTarget, payload: Buffer): Promise<UdpSource> {
    const nextHop = target.host.includes(':') ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
    if (this.#closed) throw new Failure({ type: 'connection_terminated', phase: 'send', nextHop: this.#proxy.label, detail: `UDP association through ${this.#proxy.label} ended` });
    const addrs = await resolveHost(this.#resolver, target.host, this.#opts.dnsTimeoutMs, nextHop);
    let chosen: ResolvedAddress | undefined;
    let refusal: Failure | undefined;
    for (const a of addrs) {
      const f = this.#opts.guard(a, target);
      if (f) refusal ??= f;
      else {
        chosen = a;
        break;
      }
    }
    if (!chosen) throw refusal!;
    const frame = socksClient().createUDPFrame({ remoteHost: { host: chosen.address, port: target.port }, data: payload });
    await new Promise<void>((resolve, reject) => {
      this.#sock.send(frame, this.#relay.port, this.#relay.host, (err) => (err ? reject(classify(err, { connected: false, responseStarted: false, headersReceived: false, nextHop })) : resolve()));
    });
    // A literal, not `{ ...chosen, port }` (a spread copy with a property added gets new V8 maps per datagram in Node 20; withSignal in dialer.ts).
    return { address: chosen.address, family: chosen.family, port: target.port };
  }

  onMessage(listener: (payload: Buffer, from: UdpSource) => void): void {
    this.#listeners.push(listener);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#control.destroy();
    try {
      this.#sock.close();
    } catch {
      // already closed
    }
    this.#listeners.length = 0;
  }
}

export class Socks5UdpDialer implements UdpDialer {
  readonly #proxy: ProxyEndpoint;
  readonly #resolver: Resolver;
  readonly #timeoutMs: number;

  constructor(proxy: ProxyEndpoint, opts: { resolver?: Resolver; timeoutMs?: number } = {}) {
    this.#proxy = proxy;
    this.#resolver = opts.resolver ?? systemResolver;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
  }

  async open(opts: UdpOpenOptions): Promise<UdpEgress> {
    const p = this.#proxy;
    const family = isIP(p.host) === 6 ? 6 : 4;
    const sock = createSocket(family === 6 ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(0, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    // The connection and the handshake within one deadline, `timeouts.connect` (as a tunnel's
    // SOCKS5 hop, exit.ts `ProxyChainExit.dial`); before, a fixed 10 s of this dialer's own
    // (test/forward/socks5-udp-exit-timeout.test.ts).
    const timeoutMs = opts.connectTimeoutMs ?? this.#timeoutMs;
    const deadline = performance.now() + timeoutMs;
    let control: Socket | undefined;
    try {
      control = await openTransport(p, timeoutMs, opts.signal);
      control.setNoDelay(true);
      control.on('error', () => {}); // the handshake and then the egress read its end
      // The association's cancel signal, as the TCP hop takes it (socks5-connector.ts): a client
      // that leaves stops the handshake at the step it waits on, with an unscoped failure (the
      // router tries no other exit). Before, it ran to this hop's own time.
      const left = Math.max(1, Math.round(deadline - performance.now()));
      const { socket, bound } = await socks5Handshake(control, p, 'associate', { host: family === 6 ? '::' : '0.0.0.0', port: sock.address().port }, left, opts.signal);
      const remoteHost = bound;
      // The relay's address, as an IP (frames are taken from it alone): the one the reply
      // names (a name resolved once, here), or for a relay bound to the wildcard address, the
      // address the control connection reached (the proxy's own).
      let relayHost = remoteHost?.host ?? '';
      if (relayHost === '' || relayHost === '0.0.0.0' || relayHost === '::') relayHost = socket.remoteAddress ?? p.host;
      if (isIP(relayHost) === 0) relayHost = (await resolveHost(this.#resolver, relayHost, Math.max(1, Math.round(deadline - performance.now())), p.label, opts.signal))[0]!.address;
      return new Socks5UdpEgress(socket, sock, { host: relayHost, port: remoteHost?.port ?? 0 }, opts, this.#resolver, p);
    } catch (err) {
      sock.close();
      // The connection to the upstream too, which holds its association: a relay name that
      // did not resolve left it open (review of session 35; socks5-udp-relay-name.test.ts).
      control?.destroy();
      // The handshake's own failures name the reply; anything else is the exit failing.
      if (err instanceof Failure) throw err;
      throw withScope(new Failure({ type: 'connection_terminated', phase: 'connect', nextHop: p.label, detail: `upstream SOCKS5 proxy ${p.label} failed UDP ASSOCIATE`, cause: err, retrySafe: true }), 'exit');
    }
  }
}

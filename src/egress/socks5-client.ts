import { isIPv4, isIPv6, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Failure, classify, type ProxyErrorType } from '../failure/index.js';
import { DeadlineEntry, deadlines } from '../timing/deadlines.js';
import { withScope, type ExitFailureScope } from './exit-failure.js';
import type { DialTarget } from './dialer.js';
import type { ProxyEndpoint } from './proxy-url.js';
import { ipv6Bytes } from '../net/ip-address.js';
import type { CancelSignal } from '../timing/cancel.js';

/**
 * The client side of a SOCKS5 handshake (RFC 1928, RFC 1929) over a transport to an
 * upstream SOCKS5 proxy: CONNECT or UDP ASSOCIATE.
 *
 * Written here rather than with the `socks` package, which reports every refusal only as
 * message text ("Socks5 proxy rejected connection - HostUnreachable"): the classifier must
 * decide by codes, and here the reply code itself picks the failure type and whether it
 * is the exit's fault or the destination's. (The package's UDP frame helpers are still used.)
 */

const VERSION = 0x05;
const METHOD_NONE = 0x00;
const METHOD_USERPASS = 0x02;
const NO_ACCEPTABLE = 0xff;

/** RFC 1928 §6 reply code → failure type, and whose fault it is (the exit, or the destination seen through it). */
const REPLY: Readonly<Record<number, [ProxyErrorType, ExitFailureScope, string]>> = {
  0x01: ['destination_unavailable', 'domain', 'general failure'],
  // The hop's rules refuse this destination: another exit may take it (as an HTTP hop's 403).
  0x02: ['http_request_denied', 'domain', 'not allowed by its rules'],
  0x03: ['destination_ip_unroutable', 'domain', 'network unreachable'],
  0x04: ['destination_unavailable', 'domain', 'host unreachable'],
  0x05: ['connection_refused', 'domain', 'connection refused'],
  0x06: ['connection_timeout', 'domain', 'TTL expired'],
  0x07: ['proxy_configuration_error', 'exit', 'command not supported'],
  0x08: ['proxy_configuration_error', 'exit', 'address type not supported'],
};

export type Socks5Command = 'connect' | 'associate';

export interface Socks5Established {
  /** The transport, positioned after the reply (any bytes behind it are unshifted). */
  socket: Socket;
  /** BND.ADDR / BND.PORT of the reply (for ASSOCIATE: where to send datagrams). */
  bound: { host: string; port: number };
}

/** DST.ADDR DST.PORT (ATYP first): IPv4, IPv6 or a domain name of 1–255 bytes. */
export function encodeSocks5Address(host: string, port: number): Buffer {
  let addr: Buffer;
  if (isIPv4(host)) addr = Buffer.from([0x01, ...host.split('.').map(Number)]);
  else if (isIPv6(host)) addr = Buffer.concat([Buffer.from([0x04]), ipv6Bytes(host)]);
  else {
    const name = Buffer.from(host, 'utf8');
    if (name.length === 0 || name.length > 255) throw new TypeError(`SOCKS5 host name must be 1-255 bytes: ${host}`);
    addr = Buffer.concat([Buffer.from([0x03, name.length]), name]);
  }
  const p = Buffer.alloc(2);
  p.writeUInt16BE(port);
  return Buffer.concat([addr, p]);
}

/** One handshake: reads exactly what each step needs from the transport, times out as a whole. */
class Handshake extends DeadlineEntry {
  readonly #sock: Socket | Duplex;
  readonly #proxy: ProxyEndpoint;
  readonly #what: string;
  #buf: Buffer = Buffer.alloc(0);
  #want = 0;
  #wake: ((b: Buffer) => void) | undefined;
  #fail: ((f: Failure) => void) | undefined;
  #failure: Failure | undefined;
  readonly #signal: CancelSignal | undefined;

  constructor(sock: Socket | Duplex, proxy: ProxyEndpoint, what: string, timeoutMs: number, signal: CancelSignal | undefined) {
    super();
    this.#sock = sock;
    this.#proxy = proxy;
    this.#what = what;
    this.#signal = signal;
    sock.on('data', this.#onData);
    sock.on('close', this.#onClose);
    sock.on('error', this.#onError);
    if (timeoutMs > 0) deadlines.add(this, performance.now(), timeoutMs);
    if (signal !== undefined) {
      if (signal.aborted) this.#onAbort();
      else signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  /**
   * The client the connection is for has left: the handshake stops now (the step waited on
   * fails, and `socks5Handshake` destroys the socket), not when the proxy answers or the
   * connect time runs out. Not a failure of the exit (no scope): the router tries no other.
   */
  readonly #onAbort = (): void => {
    this.#abort(new Failure({ type: 'proxy_internal_error', phase: 'connect', nextHop: this.#proxy.label, detail: 'aborted: the client went away' }));
  };

  deadlineReached(): void {
    this.#abort(failure('connection_timeout', 'domain', this.#proxy, `upstream SOCKS5 proxy ${this.#proxy.label} did not complete ${this.#what} in time`));
  }

  readonly #onData = (c: Buffer): void => {
    this.#buf = this.#buf.length === 0 ? c : Buffer.concat([this.#buf, c]);
    this.#serve();
  };

  readonly #onClose = (): void => {
    this.#abort(failure('connection_terminated', 'exit', this.#proxy, `upstream SOCKS5 proxy ${this.#proxy.label} closed the connection during ${this.#what}`));
  };

  /** A transport error (the proxy refused the connection, reset it): classified by its code, the exit's fault. */
  readonly #onError = (err: Error): void => {
    this.#abort(withScope(classify(err, { connected: false, responseStarted: false, headersReceived: false, nextHop: this.#proxy.label }), 'exit'));
  };

  #abort(f: Failure): void {
    if (this.#failure) return;
    this.#failure = f;
    this.#fail?.(f);
  }

  #serve(): void {
    if (this.#wake === undefined || this.#buf.length < this.#want) return;
    const out = this.#buf.subarray(0, this.#want);
    this.#buf = this.#buf.subarray(this.#want);
    const wake = this.#wake;
    this.#wake = this.#fail = undefined;
    wake(out);
  }

  read(n: number): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      if (this.#failure) return reject(this.#failure);
      this.#want = n;
      this.#wake = resolve;
      this.#fail = reject;
      this.#serve();
    });
  }

  write(b: Buffer): void {
    this.#sock.write(b);
  }

  /** Stop listening; the bytes read past the handshake go back to the socket. */
  end(): void {
    deadlines.remove(this);
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#sock.off('data', this.#onData);
    this.#sock.off('close', this.#onClose);
    this.#sock.off('error', this.#onError);
    if (this.#buf.length > 0) this.#sock.unshift(this.#buf);
  }
}

function failure(type: ProxyErrorType, scope: ExitFailureScope, proxy: ProxyEndpoint, detail: string): Failure {
  return withScope(new Failure({ type, phase: 'connect', nextHop: proxy.label, detail, retrySafe: true }), scope);
}

function authority(t: DialTarget): string {
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

/**
 * Greet (no auth, or RFC 1929 when the proxy URL carries credentials), authenticate, send
 * the command, read the reply. A refusal is a Failure with the proxy as next hop and the
 * scope its reply code gives; the socket is destroyed. `signal`: the connection's cancel
 * signal (the client's, as the HTTP CONNECT hop takes it, egress/http-connector.ts): once
 * aborted the handshake stops at whatever step it waits on, with an unscoped
 * `proxy_internal_error` (the caller records the client's leaving, not this failure).
 */
export async function socks5Handshake(sock: Socket | Duplex, proxy: ProxyEndpoint, command: Socks5Command, target: DialTarget, timeoutMs: number, signal?: CancelSignal): Promise<Socks5Established> {
  const what = command === 'connect' ? `CONNECT ${authority(target)}` : 'UDP ASSOCIATE';
  const h = new Handshake(sock, proxy, what, timeoutMs, signal);
  try {
    const withAuth = proxy.username !== undefined;
    // RFC 1929 has one length byte each for the name and the password: longer ones are
    // refused here (the config check refuses them too), never sent with a wrapped length.
    const user = Buffer.from(proxy.username ?? '', 'utf8');
    const pass = Buffer.from(proxy.password ?? '', 'utf8');
    if (user.length > 255 || pass.length > 255) {
      throw failure('proxy_configuration_error', 'exit', proxy, `the ${user.length > 255 ? `user name (${user.length} bytes)` : `password (${pass.length} bytes)`} for upstream SOCKS5 proxy ${proxy.label} is longer than the 255 bytes RFC 1929 carries`);
    }
    h.write(Buffer.from(withAuth ? [VERSION, 2, METHOD_NONE, METHOD_USERPASS] : [VERSION, 1, METHOD_NONE]));
    const [ver, method] = await h.read(2);
    if (ver !== VERSION) throw failure('proxy_configuration_error', 'exit', proxy, `upstream ${proxy.label} does not speak SOCKS5`);
    if (method === NO_ACCEPTABLE || (method !== METHOD_NONE && method !== METHOD_USERPASS) || (method === METHOD_USERPASS && !withAuth)) {
      throw failure('proxy_configuration_error', 'exit', proxy, `upstream SOCKS5 proxy ${proxy.label} accepts none of our authentication methods`);
    }
    if (method === METHOD_USERPASS) {
      h.write(Buffer.concat([Buffer.from([0x01, user.length]), user, Buffer.from([pass.length]), pass]));
      const [, status] = await h.read(2);
      if (status !== 0x00) throw failure('proxy_configuration_error', 'exit', proxy, `upstream SOCKS5 proxy ${proxy.label} refused our credentials`);
    }
    h.write(Buffer.concat([Buffer.from([VERSION, command === 'connect' ? 0x01 : 0x03, 0x00]), encodeSocks5Address(target.host, target.port)]));
    const [rver, rep, , atyp] = await h.read(4);
    if (rver !== VERSION) throw failure('proxy_configuration_error', 'exit', proxy, `upstream ${proxy.label} answered ${what} with something other than a SOCKS5 reply`);
    if (rep !== 0x00) {
      const [type, scope, words] = REPLY[rep!] ?? (['destination_unavailable', 'domain', `reply ${rep}`] as const);
      throw failure(type, scope, proxy, `upstream SOCKS5 proxy ${proxy.label} refused ${what}: ${words} (0x${rep!.toString(16).padStart(2, '0')})`);
    }
    let host: string;
    if (atyp === 0x01) host = [...(await h.read(4))].join('.');
    else if (atyp === 0x04) {
      const b = await h.read(16);
      const groups: string[] = [];
      for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
      host = new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1); // compressed: '::' for the wildcard
    } else if (atyp === 0x03) host = (await h.read((await h.read(1))[0]!)).toString('utf8');
    else throw failure('proxy_configuration_error', 'exit', proxy, `upstream SOCKS5 proxy ${proxy.label} replied with address type ${atyp}`);
    const port = (await h.read(2)).readUInt16BE(0);
    h.end();
    return { socket: sock as Socket, bound: { host, port } };
  } catch (err) {
    h.end();
    sock.destroy();
    throw err;
  }
}

import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { SocksClient } from 'socks';
import { Failure, type ProxyErrorType } from '../failure/index.js';
import { withScope, type ExitFailureScope } from './exit-failure.js';
import type { DialTarget } from './dialer.js';
import type { ProxyEndpoint } from './proxy-url.js';

/** RFC 1928 reply names as the socks package reports them → failure type and scope. */
const REPLY: Record<string, [ProxyErrorType, ExitFailureScope]> = {
  Failure: ['destination_unavailable', 'domain'],
  NotAllowed: ['http_request_denied', 'none'],
  NetworkUnreachable: ['destination_ip_unroutable', 'domain'],
  HostUnreachable: ['destination_unavailable', 'domain'],
  ConnectionRefused: ['connection_refused', 'domain'],
  TTLExpired: ['connection_timeout', 'domain'],
  CommandNotSupported: ['proxy_configuration_error', 'exit'],
  AddressNotSupported: ['proxy_configuration_error', 'exit'],
};

/**
 * The SOCKS5 Connector (the `socks` package's SocksClient over an existing transport):
 * username/password auth, then CONNECT to `target`. Refusals keep the proxy as next hop.
 */
export async function socks5Connect(sock: Socket | Duplex, proxy: ProxyEndpoint, target: DialTarget, timeoutMs: number): Promise<Socket> {
  try {
    const { socket } = await SocksClient.createConnection({
      proxy: { host: proxy.host, port: proxy.port, type: 5, userId: proxy.username, password: proxy.password },
      command: 'connect',
      destination: { host: target.host, port: target.port },
      timeout: timeoutMs,
      existing_socket: sock,
    });
    return socket;
  } catch (err) {
    sock.destroy();
    const msg = (err as Error).message ?? '';
    const hp = target.host.includes(':') ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
    const rejected = /rejected connection - (\w+)/.exec(msg);
    if (rejected) {
      const [type, scope] = REPLY[rejected[1]!] ?? ['destination_unavailable', 'domain'];
      return Promise.reject(withScope(new Failure({ type, phase: 'connect', nextHop: proxy.label, detail: `upstream SOCKS5 proxy ${proxy.label} refused CONNECT ${hp}: ${rejected[1]}`, retrySafe: true }), scope));
    }
    if (/authentication/i.test(msg)) {
      return Promise.reject(withScope(new Failure({ type: 'proxy_configuration_error', phase: 'connect', nextHop: proxy.label, detail: `upstream SOCKS5 proxy ${proxy.label} refused our credentials`, retrySafe: true }), 'exit'));
    }
    if (/timed out/i.test(msg)) {
      return Promise.reject(withScope(new Failure({ type: 'connection_timeout', phase: 'connect', nextHop: proxy.label, detail: `upstream SOCKS5 proxy ${proxy.label} did not complete CONNECT ${hp} in ${timeoutMs} ms`, retrySafe: true }), 'domain'));
    }
    return Promise.reject(withScope(new Failure({ type: 'connection_terminated', phase: 'connect', nextHop: proxy.label, detail: `upstream SOCKS5 proxy ${proxy.label} failed the handshake`, cause: err, retrySafe: true }), 'exit'));
  }
}

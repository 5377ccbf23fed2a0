import type { Socket } from 'node:net';
import type { buildConnector as Connector } from 'undici';
import { buildConnector } from '../http/undici.js';
import { classify } from '../failure/index.js';

/** What a connector hands undici: the socket, or the classified failure. */
export type ConnectCallback = Connector.Callback;

/**
 * TLS to a destination over a socket the dialer or an egress exit opened: the one place
 * the forward proxy speaks TLS upstream, for the direct pools and for per-request exits.
 * undici's own connector does the handshake (`httpSocket`): server name from the host,
 * ALPN http/1.1, and its ConnectTimeoutError (a real `UND_ERR_CONNECT_TIMEOUT`, no
 * forged code) when the handshake outlasts the connect timeout. A failure is classified
 * here, while it is known that nothing was sent (a certificate error stays one) and that
 * the TCP connection was open: a reset or a timeout is in phase `tls` (`tlsHandshake`).
 */
export class UpstreamTls {
  readonly #connect: Connector.connector;

  /**
   * `resumeSessions: false` for exits of a rotating pool: a TLS session ticket would let
   * the destination link requests that left through different exits.
   */
  constructor(opts: { connectTimeoutMs: number; resumeSessions: boolean }) {
    this.#connect = buildConnector({ timeout: opts.connectTimeoutMs, maxCachedSessions: opts.resumeSessions ? 100 : 0 });
  }

  /** Upgrade `socket` to TLS with `host`; `callback` gets the TLS socket or a Failure. */
  upgrade(socket: Socket, host: string, port: number, callback: ConnectCallback): void {
    const hostname = host.includes(':') ? `[${host}]` : host;
    this.#connect({ hostname, host: `${hostname}:${port}`, protocol: 'https:', port: String(port), httpSocket: socket } as Connector.Options, (err, tls) => {
      if (err) {
        socket.destroy();
        callback(classify(err, { connected: false, responseStarted: false, headersReceived: false, tlsHandshake: true, nextHop: `${hostname}:${port}` }), null);
        return;
      }
      callback(null, tls!);
    });
  }
}

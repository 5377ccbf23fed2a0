import type { Socket } from 'node:net';
import type { buildConnector } from 'undici';
import type { CancelSignal } from '../timing/cancel.js';

/** How long each step of opening one upstream connection took. */
export interface ConnectTimings {
  dnsMs?: number;
  connectMs?: number;
  tlsMs?: number;
  /**
   * The connection speaks HTTP/2: ALPN chose `h2`, or h2c with prior knowledge (plain-connector.ts marks
   * that socket `alpnProtocol: 'h2'` too). Set once connected; the fact each response's Via
   * version is taken from.
   */
  h2?: boolean;
  /**
   * https: the TCP connection of the dial under way (or of the last one, when it failed)
   * opened and its TLS handshake did not finish. A dial that fails with it set failed in the
   * handshake (phase `tls`: gateway/attempt.ts hands it to `classify` as `tlsHandshake`), not
   * while connecting. Cleared at each dial's start and when the handshake is done.
   */
  handshaking?: boolean;
}

/**
 * How a pool opens one connection: undici's connector, and a third argument, the signal of
 * the request the connection is opened for (`ConnectionPool.acquire`'s `opener`), while that
 * request is the only one on it. A connector may skip the dial, or stop it, once the signal is
 * aborted (the forward proxy's direct exit: the client has left); it reports that as a connect
 * error, which fails only the request that asked. A connector that takes two arguments (the
 * reverse gateway's) ignores it.
 */
export type PoolConnector = (opts: buildConnector.Options, callback: buildConnector.Callback, opener?: CancelSignal) => void;

/**
 * undici's connector, with the socket's own events timed: 'lookup' (DNS done),
 * 'connect' (TCP established), 'secureConnect' (TLS done). The result lands in
 * `into`, which belongs to the one connection this connector opens; so does whether a
 * failed https dial had its TCP connection open (`handshaking`). No allocation beyond the
 * two listeners the timings already needed.
 */
export function timedConnector(base: PoolConnector, into: ConnectTimings): PoolConnector {
  return (opts, callback, opener) => {
    const t0 = performance.now();
    let tcpAt = 0;
    const tls = opts.protocol === 'https:';
    if (into.handshaking === true) into.handshaking = false;
    // The TLS server is named after the endpoint: the configured `tls.servername`, else the
    // endpoint's host name (none for an IP literal), as nginx's proxy_ssl_name and Caddy do,
    // never after a request's Host header, from which undici would take it (see PooledClient).
    if (opts.servername !== undefined && opts.servername !== null) opts = { ...opts, servername: undefined as unknown as string };
    const socket = (base as unknown as (o: buildConnector.Options, cb: buildConnector.Callback, opener?: CancelSignal) => Socket | undefined)(
      opts,
      (err, s) => {
        if (!err) {
          if (tls && tcpAt > 0) into.tlsMs = round(performance.now() - tcpAt);
          into.handshaking = false;
          into.h2 = (s as { alpnProtocol?: string | false } | null)?.alpnProtocol === 'h2';
        } else if (tls && tcpAt === 0 && resetOnceOpen(err)) {
          // A reset is of a connection that was open: one reset before the socket's 'connect'
          // was handled (an upstream that accepts and resets at once, before the event loop
          // came round to this socket) reaches here with no 'connect' at all. A refusal is
          // ECONNREFUSED, never a reset.
          into.handshaking = true;
        }
        callback(err as null, s as Socket);
      },
      opener,
    );
    if (socket && typeof socket.once === 'function') {
      socket.once('lookup', () => {
        into.dnsMs = round(performance.now() - t0);
      });
      socket.once('connect', () => {
        tcpAt = performance.now();
        into.connectMs = round(tcpAt - t0 - (into.dnsMs ?? 0));
        if (tls) into.handshaking = true;
      });
    }
  };
}

/** A reset or a broken pipe: the connection was established first (a refused one is ECONNREFUSED). */
function resetOnceOpen(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ECONNRESET' || code === 'EPIPE';
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

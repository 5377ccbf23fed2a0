import type { Socket } from 'node:net';
import { Failure } from '../failure/index.js';
import { handshakeLeft } from '../http/connection-gate.js';

/**
 * The deadline a request's head was read under, which the proxy's own password check of that
 * request must answer within (the HTTP fronts; the SOCKS fronts keep theirs in their byte
 * reader, socks/byte-reader.ts): a check that outlasts it does not hold the client.
 */

/** The slot of a node:http connection's head timer (forward/http-front.ts `HeadTimer`). */
export const kHeadTimer = Symbol('gatewise.headTimer');

/** What the head timer tells of the wait for the head now being served. */
export interface HeadDue {
  /**
   * When the head's time ends, on the `performance.now()` clock: the connection's handshake
   * time for its first head, `clientKeepAlive + handshake` after the previous response for a
   * later one; Infinity for a head that came while an earlier request of the connection was
   * unanswered (pipelined: it waited on the proxy, no head time ran for it).
   */
  readonly dueAt: number;
}

/**
 * When the head of the request just read on `socket` had to be in, as the check's deadline:
 * the head timer's for a node:http connection, else (a CONNECT read by the fast path, the
 * connection's first and only head) the connection's handshake time from its accept, as the
 * listener's gate gave it. Infinity when nothing timed the head (`handshake: "0s"`). Read only
 * when a check is under way (a promise): nothing of it runs for a check answered at once.
 */
export function headDueAt(socket: Socket, handshakeMs: number, now: number): number {
  const timer = (socket as Socket & { [kHeadTimer]?: HeadDue })[kHeadTimer];
  if (timer !== undefined) return timer.dueAt;
  return handshakeMs > 0 ? now + handshakeLeft(socket, handshakeMs, now) : Infinity;
}

/**
 * The failure of a handshake or request head whose time ran out while the proxy's own
 * password check was under way, on every front: http_request_error, `request_timeout`
 * (408 over HTTP: the client is waiting on its request), recorded as ended by the proxy.
 * `what`: the handshake's or request's name (`SOCKS5`, `CONNECT` …).
 */
export function checkOutlastedHead(what: string): Failure {
  return new Failure({ type: 'http_request_error', phase: 'accept', reason: 'request_timeout', detail: `the proxy's password check outlasted the ${what} handshake time` });
}

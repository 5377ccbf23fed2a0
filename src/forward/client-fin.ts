import type { Socket } from 'node:net';

/**
 * Whether a tunnel's client has left before its dial: it reset or closed (the socket is
 * destroyed), or it half-closed (FIN). A client that half-closes before the proxy has
 * answered (during its password check, a hook, an admission) is taken as gone, as Squid
 * (`half_closed_clients off`, its default) and nginx (499) take it: `TunnelRun.start` makes no
 * dial and records the client as the one that ended it. From the dial on, a FIN is the
 * client's half-close of the tunnel and is passed on at the splice (a request, its early
 * bytes and its FIN sent in one go, with nothing to wait for before the dial:
 * test/forward/stall-early-half-close.test.ts).
 *
 * The FIN is read from the socket's state, not heard as an event: CONNECT's socket waits
 * paused with its early bytes in its buffer (Node still reads it, up to its high-water mark,
 * so a FIN is taken in and marks the stream ended, but 'end' is emitted only once the buffer
 * is consumed), and SOCKS's reader lets 'end' through (`readableEnded`). Node has no public
 * name for "EOF read, not yet emitted": `_readableState.ended` is it. A first version read
 * CONNECT's early bytes with a flowing reader and destroyed the socket on 'end': a CONNECT
 * tunnel then cost ~14 % more CPU in the duel (docs/benchmarks.md §46).
 *
 * An absolute-form request reads it too, through `HttpExchange.aborted` (http-relay.ts), the
 * cancel signal its new connection's dial is given: the dialer reads it once the name has
 * resolved, so a client that left meanwhile (a FIN included: node:http ends such a connection)
 * gets no dial.
 */
export function clientLeft(socket: Socket): boolean {
  return socket.destroyed || socket.readableEnded || (socket as unknown as { _readableState?: { ended?: boolean } })._readableState?.ended === true;
}

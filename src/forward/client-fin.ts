import type { Socket } from 'node:net';

/**
 * A client's FIN before its dial is its leaving. A tunnel or absolute-form client that
 * half-closes before the proxy has answered (during its password check, a hook, the name's
 * resolution, an admission) is taken as gone, as Squid (`half_closed_clients off`, its
 * default) and nginx (499) take it: the proxy's side of the socket is destroyed, so the
 * dial that would follow finds the client gone and is never made (`TunnelRun.start`,
 * `HttpExchange.run`), and the record says the client ended it.
 *
 * From the dial on, a FIN is the client's half-close of the tunnel and is passed on at the
 * splice (a request, its early bytes and its FIN sent in one go, with nothing to wait for
 * before the dial: test/forward/stall-early-half-close.test.ts).
 *
 * Only where the socket flows: a paused socket never emits 'end' (the fronts read with a
 * flowing `ByteReader` until the answer).
 */
export function leaveOnFin(socket: Socket): void {
  socket.once('end', destroyOnFin);
}

/** The dial is made (or the request answered): a FIN is the client's half-close from now on. */
export function keepOnFin(socket: Socket): void {
  socket.off('end', destroyOnFin);
}

function destroyOnFin(this: Socket): void {
  this.destroy();
}

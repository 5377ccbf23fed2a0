import type { Socket } from 'node:net';
import { connectionCut, type ConnectionsCut, type Failure } from '../failure/index.js';
import type { FinishFields } from '../tenants/index.js';
import { Cancel } from '../timing/cancel.js';
import { cutFields } from './record-fields.js';

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

/**
 * The record of a client that left before it was answered (a tunnel's dial, a UDP
 * association's egress), made from `base` (the front's fields, ended by the client): the
 * client's, unless close() cut its connection at the drain timeout first (`noted`, a cut
 * already read, else `connectionCut` in 'connect'), which makes it the drain's, ended by the
 * gateway. One reading for `TunnelRun` and `UdpAssociation`.
 */
export function leftFields(cut: ConnectionsCut | undefined, client: Socket, base: FinishFields, noted?: Failure): FinishFields {
  const f = noted ?? connectionCut(cut, client, 'connect');
  return f === undefined ? base : cutFields(f, base);
}

/**
 * A client watched while a step it waits on runs before it is answered (an upstream SOCKS5
 * exit's UDP ASSOCIATE handshake): the `Cancel` given to the step as its signal, aborted when
 * the client leaves (its FIN, close or reset), with `left` read once the step is over (a FIN
 * the socket took in without its event included). `stop` takes the listeners off.
 *
 * Not the tunnel's watch, deliberately: a tunnel (`TunnelRun`) reads `clientLeft` before its
 * dial and then watches with the tunnel's own one 'close' listener, a module function the
 * splice keeps (no Cancel, no closure, no 'end' listener: docs/benchmarks.md §46), and a FIN
 * during its dial is the tunnel's half-close, passed on at the splice, not the client leaving.
 */
export class ClientWatch extends Cancel {
  readonly #socket: Socket;
  readonly #left = (): void => this.abort();

  constructor(socket: Socket) {
    super();
    this.#socket = socket;
    socket.once('end', this.#left);
    socket.once('close', this.#left);
  }

  /** The client left: heard during the watch, or read from the socket's state. */
  get left(): boolean {
    return this.aborted || clientLeft(this.#socket);
  }

  stop(): void {
    this.#socket.off('end', this.#left);
    this.#socket.off('close', this.#left);
  }
}

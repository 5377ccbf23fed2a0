import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { answerEndsConnection, closeAfter, closingAfterAnswer, finished, offer, runsAlone, withdrawn, type Ordered } from '../http/connection-order.js';
import { peerAddress } from '../http/peer.js';

/** Start a request (the HTTP proxy's handling of it). */
export type StartRequest = (req: IncomingMessage, res: ServerResponse) => void;
/**
 * A request that never started (the client's address, read when it was queued): its client
 * left while it waited, or (`afterClosingAnswer`) an answer before it ends the connection.
 */
export type RequestDropped = (req: IncomingMessage, clientAddress: string | undefined, afterClosingAnswer: boolean) => void;

/** Told once when a running request's response closes (its client left, or it finished). */
export interface ResponseCloseWatcher {
  responseClosed(): void;
}

const kTurn = Symbol('gatewise.orderedRequest');
type TurnResponse = ServerResponse & { [kTurn]?: OrderedRequest };

/**
 * One request of the HTTP proxy in its connection's order: the rule both faces share
 * (http/connection-order.ts, RFC 9112 §9.3.2), which starts it through `start` when the
 * requests before it allow, and tells it when the connection closed first (`abandon`).
 *
 * A request that waited and never started (its client left first) is handed to `dropped`,
 * so it is recorded like every other request. One object and a 'close' listener (a module
 * function) per request. That listener also tells a `ResponseCloseWatcher` the request set
 * for a while (`watch`): an absolute-form request dialling its own connection before any
 * relay listens (through an egress pool's exit, or for `Expect`) hears its client's close
 * through it, with no listener of its own.
 */
export class OrderedRequest implements Ordered {
  readonly unsafe: boolean;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  /** Kept: Node detaches `res.socket` once the response is done. */
  readonly #socket: Socket;
  readonly #start: StartRequest;
  readonly #dropped: RequestDropped;
  #state: 'waiting' | 'running' | 'over' = 'waiting';
  /** The client's address, read when the request had to wait (the connection may be gone when it is dropped). */
  #peer: string | undefined;
  #watcher: ResponseCloseWatcher | undefined = undefined;

  private constructor(req: IncomingMessage, res: ServerResponse, start: StartRequest, dropped: RequestDropped) {
    this.#req = req;
    this.#res = res;
    this.#socket = req.socket;
    this.#start = start;
    this.#dropped = dropped;
    this.unsafe = runsAlone(req.method ?? '', req.httpVersion);
  }

  /** Start `req` through `start` now, or when the requests before it on its connection allow. */
  static admit(req: IncomingMessage, res: ServerResponse, start: StartRequest, dropped: RequestDropped): void {
    const r = new OrderedRequest(req, res, start, dropped);
    (res as TurnResponse)[kTurn] = r;
    res.once('close', onResponseClose);
    if (!offer(r.#socket, r) && r.#state === 'waiting') r.#peer = peerAddress(r.#socket);
  }

  /**
   * `w` is told when this response closes, until it is replaced (undefined: no one). Once
   * closed, it is told at once. False when `res` was not admitted here (no one will tell).
   */
  static watch(res: ServerResponse, w: ResponseCloseWatcher | undefined): boolean {
    const r = (res as TurnResponse)[kTurn];
    if (r === undefined) return false;
    r.#watcher = w;
    if (w !== undefined && r.#state === 'over') w.responseClosed();
    return true;
  }

  /** Its turn came (Ordered). */
  begin(): void {
    if (this.#state !== 'waiting') return;
    if (this.#res.destroyed || this.#socket.destroyed) {
      // Its client left while it waited: never forwarded. (When the connection closes, Node
      // closes the first response before the order hears of it, and that would start the next.)
      this.#state = 'over';
      finished(this.#socket, this);
      this.#dropped(this.#req, this.#peer, false);
      return;
    }
    this.#state = 'running';
    this.#start(this.#req, this.#res);
  }

  /**
   * The connection closed before this answer was done (Ordered). Node emits no 'close' for
   * the response of a pipelined request it has not begun to write, and the relays learn that
   * their client left from that event (forward-relay.ts, http-relay.ts): a running request
   * behind the first went on waiting at its destination for its whole response timeout.
   * So the response is destroyed and its 'close' emitted here, once, when Node will not.
   */
  abandon(): void {
    const was = this.#state;
    this.#over();
    const res = this.#res;
    // A response on its socket, or one that finished, gets Node's own 'close'.
    if (was !== 'running' || res.socket !== null || res.writableFinished) return;
    res.removeListener('close', onResponseClose);
    res.destroy();
    res.emit('close');
  }

  /** Its response closed (finished or cut): the connection's next requests may start. */
  closed(): void {
    this.#over();
  }

  #over(): void {
    const was = this.#state;
    if (was === 'over') return;
    this.#state = 'over';
    if (was === 'running') {
      // Its answer ends the connection (read to its close, say): what waits behind it never starts.
      if (answerEndsConnection(this.#res)) closeAfter(this.#socket);
      finished(this.#socket, this);
      const w = this.#watcher;
      if (w !== undefined) {
        this.#watcher = undefined;
        w.responseClosed();
      }
      return;
    }
    withdrawn(this.#socket, this);
    this.#dropped(this.#req, this.#peer, closingAfterAnswer(this.#socket));
  }
}

function onResponseClose(this: TurnResponse): void {
  this[kTurn]?.closed();
}

import { connectionClosedByGateway } from './classify.js';
import type { Failure } from './failure.js';
import type { Phase } from './types.js';

/**
 * Why a face cuts the client connections still open itself (today: the drain timeout at
 * shutdown, the reverse `Gateway.close` and the forward proxy's `close`), noted on the face's
 * context (`GatewayContext.cut`, `ForwardContext.cut`) before it destroys them: a stable `code`
 * (the classifier reads it: ./classify.ts `connectionClosedByGateway`) and the words for the
 * records of the requests and tunnels it cuts. One for both faces; the HTTP/1.1 counterpart of
 * the reverse gateway's `H2ConnectionClosed` (gateway/h2-errors.ts), which an HTTP/2 session
 * is destroyed with.
 */
export class ConnectionsCut extends Error {
  readonly code: 'GATEWISE_DRAIN_TIMEOUT';

  constructor(code: ConnectionsCut['code'], detail: string) {
    super(detail);
    this.name = 'ConnectionsCut';
    this.code = code;
  }
}

/** What a connection's socket says of its client (a `net.Socket` or TLS socket; the fronts' own). */
interface ClientSide {
  readonly readableEnded: boolean;
  readonly errored: Error | null;
}

/**
 * An HTTP/1.1 request (or a forward tunnel) whose connection closed before it was complete: the
 * failure it ends with when the face cut that connection itself (`cut` noted), in the phase the
 * request had reached; undefined when the client left first (its FIN read, or its connection
 * reset: the socket ended or errored before the gateway destroyed it, which sets neither) or
 * the gateway cut nothing. Read only for a request that ends unanswered and without a failure.
 */
export function connectionCut(cut: ConnectionsCut | undefined, socket: ClientSide, phase: Phase): Failure | undefined {
  if (cut === undefined || socket.readableEnded || socket.errored !== null) return undefined;
  return connectionClosedByGateway(cut.code, phase, cut.message);
}

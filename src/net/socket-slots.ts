import type { Socket } from 'node:net';

/**
 * Every property Gatewise keeps on a Node socket, and the one function that gives a socket
 * all of them at once.
 *
 * Why one place: V8 gives an object a new hidden class (map) for each property added, and
 * Node's stream and socket code (`_handle`'s getter, `Socket._destroy`, `Readable.read`, ...)
 * is shared by every socket in the process. A site that has met at most four maps stays
 * polymorphic (an inline compare); a fifth makes it megamorphic for the life of the process
 * (a generic lookup, ~190 instructions a load for a symbol key). A Node socket already passes
 * three maps while its constructor runs, so the sockets Gatewise accepts and the sockets it
 * dials must end in one and the same map, given before Node's code reads them again. When the
 * gate, the listener and the dialer each added their own properties, an accepted socket and
 * a dialed one ended in two different maps and those sites went megamorphic (docs/benchmarks.md §33).
 */

/** The object a tunnel's socket events serve: the connect attempt, then the tunnel (egress, forward). */
export const kSocketUser = Symbol('gatewise.socketUser');
/** The connection gate's marks (http/connection-gate.ts). */
export const kGateSource = Symbol('gatewise.source');
export const kGateHandshakeEnd = Symbol('gatewise.handshakeEnd');
export const kGateCounted = Symbol('gatewise.counted');
export const kGateOverSource = Symbol('gatewise.overSource');
/** The forward listener's handshake deadline and its refusal mark (forward/listener.ts). */
export const kHandshakeWait = Symbol('gatewise.handshakeWait');
export const kRefusedAtLimit = Symbol('gatewise.refusedAtLimit');
/** The address a dial connected to (egress/direct-dialer.ts). */
export const kDialedAddress = Symbol('gatewise.dialedAddress');

export interface SlottedSocket extends Socket {
  [kSocketUser]?: unknown;
  [kGateSource]?: string | undefined;
  [kGateHandshakeEnd]?: number | undefined;
  [kGateCounted]?: 'open' | 'waiting' | undefined;
  [kGateOverSource]?: boolean | undefined;
  [kHandshakeWait]?: unknown;
  [kRefusedAtLimit]?: boolean | undefined;
  [kDialedAddress]?: string | undefined;
}

/**
 * Give a socket every slot, in one order, before anything else reads it: the listener on
 * accept, the dialer right after `new Socket()`. Later writes then change no map.
 */
export function shapeSocket(socket: Socket): void {
  const s = socket as SlottedSocket;
  s[kSocketUser] = undefined;
  s[kGateSource] = undefined;
  s[kGateHandshakeEnd] = undefined;
  s[kGateCounted] = undefined;
  s[kGateOverSource] = undefined;
  s[kHandshakeWait] = undefined;
  s[kRefusedAtLimit] = undefined;
  s[kDialedAddress] = undefined;
}

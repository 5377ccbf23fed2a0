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

/** The reverse listener's marks on an accepted TCP socket (gateway/server.ts). */
export const kRevRefused = Symbol('gatewise.refusedConnection');
export const kRevServed = Symbol('gatewise.firstRequestSeen');
export const kRevHeadDeadline = Symbol('gatewise.headDeadline');
/** TLS listeners only: the refusal owed once the handshake is done, the TLS socket over this one, accept time, peer. */
export const kRevRefusal = Symbol('gatewise.refusal');
export const kRevTls = Symbol('gatewise.tlsSocket');
export const kRevAcceptedAt = Symbol('gatewise.acceptedAt');
export const kRevPeer = Symbol('gatewise.peer');
/** The connection went to HTTP/2 (ALPN h2, or the h2c preface): its HTTP/2 front. */
export const kRevH2 = Symbol('gatewise.h2');
/** A connection's requests in order (http/connection-order.ts). */
export const kOrderLine = Symbol('gatewise.connection-order');
/** Reading held while too many requests wait (http/read-hold.ts). */
export const kReadHeld = Symbol('gatewise.readHold');
export const kReadReleased = Symbol('gatewise.readReleased');

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

/** A socket of the reverse gateway with node:http's and Node's late properties (see shapeHttpSocket). */
interface HttpSlots {
  [key: string | symbol]: unknown;
}

/**
 * `shapeSocket` for the reverse gateway's sockets: the client connections its HTTP/1.1 listeners
 * accept (`installAccept`'s shape, gateway/server.ts) and the cleartext upstream connections it
 * dials (pool/plain-connector.ts). Beyond the common slots, the reverse listener's marks and the
 * properties Node itself adds to a socket later, each with the value an absent one reads as:
 * `_peername` (cached by a `remoteAddress` read), `timeout` (by `setTimeout`), and node:http's
 * server additions (`parser`, `_paused`, `_httpMessage`, and its own `on`, `addListener`,
 * `prependListener`, `setEncoding`: here the prototype's, which node:http then replaces). The
 * stores node:http makes then change values, not maps, and an accepted socket and an upstream
 * one end in one map.
 *
 * Why: node:http adds its six properties in its 'connection' listener, `_httpMessage` at the
 * first request and `timeout` once the first answer is finished; the listener's marks came
 * between them in an order that depended on the gate (a head deadline under load, or none), and
 * the upstream socket had `_peername` and `timeout` after its slots. Node's shared sites met up
 * to seven socket maps: its `_handle` getter (~10 loads per request), `bytesWritten` (12 named
 * loads per request, read for the record's byte counts), `Readable.read`, `writeOrBuffer` and the
 * stream state getters went megamorphic (docs/benchmarks.md §52). The forward proxy keeps
 * `shapeSocket`: its sockets are never node:http's.
 */
export function shapeHttpSocket(socket: Socket): void {
  shapeSocket(socket);
  const s = socket as unknown as HttpSlots;
  s[kRevRefused] = undefined;
  s[kRevServed] = undefined;
  s[kRevHeadDeadline] = undefined;
  s[kRevRefusal] = undefined;
  s[kRevTls] = undefined;
  s[kRevAcceptedAt] = undefined;
  s[kRevPeer] = undefined;
  s[kRevH2] = undefined;
  s[kOrderLine] = undefined;
  s[kReadHeld] = undefined;
  s[kReadReleased] = undefined;
  s._peername = undefined;
  s.timeout = undefined;
  s.parser = undefined;
  s.on = socket.on;
  s.addListener = socket.addListener;
  s.prependListener = socket.prependListener;
  s.setEncoding = socket.setEncoding;
  s._paused = undefined;
  s._httpMessage = undefined;
}

import diagnostics from 'node:diagnostics_channel';
import { Socket, type Server } from 'node:net';

/**
 * Accepted sockets made with an options object V8 can keep in one map.
 *
 * Why: Node's `net.Server` makes each accepted socket with `new Socket({ handle, allowHalfOpen,
 * pauseOnCreate, readable, writable, readableHighWaterMark, writableHighWaterMark })`, and the
 * `Socket` constructor copies that object (`options = { ...options }`) and then adds
 * `emitClose`, `autoDestroy` and `decodeStrings` to the copy. In Node 20's V8 (11.3) a copy
 * made by spreading has a map that keeps no transitions, so each property added to it makes a
 * new map: every accepted socket's options object ends in maps of its own (V8's IC log: 18,406
 * distinct maps for 18,853 sockets, docs/benchmarks.md §33), and each of the ~27 reads of it in
 * the `Duplex`, stream state, `EventEmitter` and `Socket` constructors misses to V8's runtime.
 * Measured in plain JavaScript (the constructor's copy and stores alone): ~4.4 µs per copy
 * with Node's object, ~0.12 µs with one that already holds the three properties (the stores
 * then change values, not maps). Per CONNECT tunnel, `tunnel-icount.js`: Node's `onconnection`
 * was ~80k of ~286k instructions (docs/benchmarks.md §35).
 *
 * How: the listening handle's connection callback (`server._handle.onconnection`, which
 * `net.Server` sets when it starts listening, on a worker's round-robin handle too) is replaced
 * by one that does what Node's does for a server like Gatewise's (no `maxConnections`): the
 * socket made with the full options object, `noDelay` and `keepAlive` as the server was given
 * them, the server's connection count and the socket's server links (so `getConnections()` and
 * `close()` keep counting), the 'connection' event and the `net.server.socket` diagnostics
 * channel. An accept error or a server with `maxConnections` goes to Node's own callback. This
 * reaches into a Node internal (`_handle`, `_connections`, `_server`): `installAccept` checks
 * the handle has the callback it expects and leaves the server alone otherwise.
 */

interface ListenHandle {
  onconnection?: (err: number, clientHandle: unknown) => void;
}

interface ServerInternals {
  _handle: ListenHandle | null;
  _connections: number;
  allowHalfOpen?: boolean;
  pauseOnConnect?: boolean;
  noDelay?: boolean;
  keepAlive?: boolean;
  keepAliveInitialDelay?: number;
  highWaterMark?: number;
  maxConnections?: number;
}

const serverSocket = diagnostics.channel('net.server.socket');

/** Whether `server` now makes its accepted sockets through `installAccept`'s callback (tests). */
export const kAccepting: unique symbol = Symbol('gatewise.accepting');

/**
 * Make `server`'s accepted sockets with one options map (see above). Call when the server is
 * listening (its 'listening' event); true when installed.
 *
 * `shape`: gives each socket its final map (net/socket-slots.ts `shapeSocket`) as soon as the
 * constructor returns, before `setNoDelay` / `setKeepAlive` read `socket._handle`. Node's
 * `_handle` getter is one site for every socket in the process; the constructor passes it
 * three maps, and a read between the constructor and the listener's shaping showed it a fourth
 * (Node's unshaped map) beside the shaped one: a fifth, and the getter, `Readable.read`,
 * `Socket._destroy`, `prefinish` and the `Socket` constructor went megamorphic for the life of
 * the process (docs/benchmarks.md §51: `KeyedLoadIC_Megamorphic` 18.1k instructions per CONNECT
 * tunnel against the bare floor's 5.1k). Node's own accept sets no-delay on the handle, so it
 * never read the unshaped socket.
 */
export function installAccept(server: Server, shape?: (socket: Socket) => void): boolean {
  const s = server as unknown as ServerInternals & { [kAccepting]?: boolean };
  const handle = s._handle;
  const nodeOnConnection = handle?.onconnection;
  if (handle === null || handle === undefined || typeof nodeOnConnection !== 'function') return false;
  handle.onconnection = function onconnection(this: unknown, err: number, clientHandle: unknown): void {
    if (err !== 0 || (s.maxConnections !== undefined && s.maxConnections > 0)) {
      nodeOnConnection.call(this, err, clientHandle);
      return;
    }
    // Every property the Socket constructor stores on its copy, with the values it stores:
    // the copy then keeps this object's map (the stores change no map).
    const socket = new Socket({
      handle: clientHandle,
      allowHalfOpen: s.allowHalfOpen === true,
      pauseOnCreate: s.pauseOnConnect,
      readable: true,
      writable: true,
      readableHighWaterMark: s.highWaterMark,
      writableHighWaterMark: s.highWaterMark,
      emitClose: false,
      autoDestroy: true,
      decodeStrings: false,
    } as ConstructorParameters<typeof Socket>[0]);
    if (shape !== undefined) shape(socket);
    if (s.noDelay === true) socket.setNoDelay(true);
    if (s.keepAlive === true) socket.setKeepAlive(true, (s.keepAliveInitialDelay ?? 0) * 1000); // the server keeps it in seconds
    s._connections++;
    const links = socket as unknown as { server: Server; _server: Server };
    links.server = server;
    links._server = server;
    server.emit('connection', socket);
    if (serverSocket.hasSubscribers) serverSocket.publish({ socket });
  };
  s[kAccepting] = true;
  return true;
}

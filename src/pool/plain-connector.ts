import { Socket, type LookupFunction } from 'node:net';
import type { buildConnector as BuildConnector } from 'undici';
import { buildConnector, errors } from '../http/undici.js';
import { shapeHttpSocket } from '../net/index.js';
import { Timeout } from '../timing/deadlines.js';

/** What an endpoint gives its connector (undici's `buildConnector` options, as the endpoint builds them). */
export interface UpstreamConnectOptions {
  lookup?: LookupFunction | undefined;
  /** Connect timeout in ms (undici's default, 10 s, when absent; 0: none). */
  timeout?: number | undefined;
  allowH2?: boolean;
  /** Cleartext HTTP/2 with prior knowledge: the socket is marked `alpnProtocol: 'h2'`. */
  useH2c?: boolean;
  [tlsOption: string]: unknown;
}

/**
 * The connector of an upstream endpoint: undici's for TLS (its session cache, ALPN, server
 * name), and for cleartext a socket made the way `egress/open-tcp.ts` makes the forward
 * proxy's, with what undici's cleartext connector gives it: a 64 KiB read high-water mark,
 * TCP keep-alive after 60 s, Nagle off, the endpoint's `lookup`, the connect timeout
 * (`ConnectTimeoutError`, after a turn of the loop so that a socket error that came first
 * wins), `alpnProtocol: 'h2'` for h2c, the callback once on 'connect' or 'error'.
 *
 * Why not undici's for cleartext too: it makes the socket with `net.connect({ highWaterMark,
 * ...options, localAddress, port, host })`, and Node's `Socket` constructor copies that again
 * (`{ ...options }`) and adds `allowHalfOpen`, `emitClose`, `autoDestroy` and `decodeStrings`
 * to the copy: in Node 20's V8 each such copy gets maps of its own, and every read of it at
 * Node's shared stream sites misses to V8's runtime (the cost `net/accept.ts` removes from
 * accepted sockets, docs/benchmarks.md §33, §35). The reverse gateway opens a connection per
 * non-idempotent request (connection-pool.ts `acquire`), so a POST paid it every time:
 * measured in the `post-1k` duel, docs/benchmarks.md §36. Here the options object already
 * holds every property the constructor adds, with the values it stores, so its copy keeps
 * one map; the socket is then shaped (`shapeHttpSocket`) like the connections the reverse listeners accept.
 */
export function upstreamConnector(opts: UpstreamConnectOptions): BuildConnector.connector {
  const tls = buildConnector(opts as BuildConnector.BuildOptions);
  const lookup = opts.lookup;
  const timeoutMs = opts.timeout ?? 10_000;
  const h2c = opts.useH2c === true;
  const connect: BuildConnector.connector = (o, callback) => {
    if (o.protocol === 'https:' || o.httpSocket !== undefined) return tls(o, callback);
    return plainConnect(o.hostname, Number(o.port) || 80, o.localAddress ?? undefined, lookup, timeoutMs, h2c, callback);
  };
  return connect;
}

/**
 * A new, unconnected cleartext upstream socket: the options object holds what the `Socket`
 * constructor adds (see above), and the socket is shaped (`shapeHttpSocket`). Also the start-up
 * connect probe's (cli/runtime.ts), so that every socket the reverse gateway makes meets Node's
 * shared stream sites in the same two maps (the options object's and the socket's).
 */
export function upstreamSocket(): Socket {
  const socket = new Socket({
    allowHalfOpen: false,
    emitClose: false,
    autoDestroy: true,
    decodeStrings: false,
    highWaterMark: 64 * 1024,
  } as ConstructorParameters<typeof Socket>[0]);
  shapeHttpSocket(socket);
  return socket;
}

function plainConnect(
  host: string,
  port: number,
  localAddress: string | undefined,
  lookup: LookupFunction | undefined,
  timeoutMs: number,
  h2c: boolean,
  callback: BuildConnector.Callback,
): Socket {
  const socket = upstreamSocket();
  // Before the handle exists Node keeps both and applies them once connected.
  socket.setNoDelay(true);
  socket.setKeepAlive(true, 60_000);
  if (h2c) (socket as Socket & { alpnProtocol?: string }).alpnProtocol = 'h2';
  let cb: BuildConnector.Callback | undefined = callback;
  let immediate: NodeJS.Immediate | undefined;
  const timer =
    timeoutMs > 0
      ? new Timeout(() => {
          immediate = setImmediate(() => {
            if (socket.connecting || socket.pending) socket.destroy(new errors.ConnectTimeoutError(`Connect Timeout Error (attempted address: ${host}:${port}, timeout: ${timeoutMs}ms)`));
          });
        }, timeoutMs)
      : undefined;
  const settle = (): void => {
    timer?.cancel();
    if (immediate !== undefined) clearImmediate(immediate);
  };
  socket.once('connect', () => {
    settle();
    const c = cb;
    cb = undefined;
    c?.(null, socket);
  });
  socket.on('error', (err: Error) => {
    settle();
    const c = cb;
    cb = undefined;
    c?.(err, null);
  });
  // Destroyed by its owner before it connected (no 'error'): the timer lets go of it now.
  socket.once('close', settle);
  socket.connect({ host, port, localAddress, lookup });
  return socket;
}

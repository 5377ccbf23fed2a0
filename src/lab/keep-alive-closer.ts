import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { TimerSet } from './timer-set.js';

/** How the lab ends keep-alive connections, beyond Node's own keep-alive timeout. */
export interface KeepAliveCloserOptions {
  /**
   * Close each idle keep-alive connection after a uniform random time in [min, max] ms
   * (drawn again after every response), without saying so in any header.
   */
  idleCloseMs?: readonly [number, number];
  /** Close a connection after this many responses (nginx `keepalive_requests`). */
  maxRequestsPerConnection?: number;
  /** With `maxRequestsPerConnection`: say `Connection: close` on the last response (nginx does) or just close after it. */
  closeHeaderOnLast?: boolean;
  /** The random source of `idleCloseMs` (a seeded one makes a run repeatable). Default Math.random. */
  random?: () => number;
}

interface SocketState {
  requests: number;
  idleTimer: NodeJS.Timeout | undefined;
}

const kState = Symbol('gatewise.lab.keepAlive');
type TrackedSocket = Socket & { [kState]?: SocketState };

/**
 * Upstream keep-alive behaviours that defeat a gateway's connection reuse: irregular or very
 * short idle closes (shorter than any `Keep-Alive: timeout=` the lab advertises) and a limit on
 * requests per connection. A close is `destroy()`, as nginx and Node close an idle connection
 * (a FIN, or a RST when request bytes arrived unread): a request that meets it was never read.
 */
export class KeepAliveCloser {
  readonly #opts: KeepAliveCloserOptions;
  readonly #timers: TimerSet;
  readonly #random: () => number;

  constructor(opts: KeepAliveCloserOptions, timers: TimerSet) {
    this.#opts = opts;
    this.#timers = timers;
    this.#random = opts.random ?? Math.random;
  }

  /** Whether any of its behaviours is on. */
  static wanted(opts: KeepAliveCloserOptions): boolean {
    return opts.idleCloseMs !== undefined || opts.maxRequestsPerConnection !== undefined;
  }

  /** A request arrived on its connection: it is no longer idle; decide how its response ends the connection. */
  onRequest(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket as TrackedSocket;
    const st = (socket[kState] ??= { requests: 0, idleTimer: undefined });
    this.#timers.clear(st.idleTimer);
    st.idleTimer = undefined;
    st.requests++;
    const max = this.#opts.maxRequestsPerConnection;
    const last = max !== undefined && st.requests >= max;
    if (last && this.#opts.closeHeaderOnLast === true) {
      res.setHeader('connection', 'close');
      return; // Node closes it after the response
    }
    res.once('finish', () => {
      if (socket.destroyed) return;
      if (last) {
        socket.destroy();
        return;
      }
      const range = this.#opts.idleCloseMs;
      if (range === undefined) return;
      const ms = range[0] + this.#random() * (range[1] - range[0]);
      st.idleTimer = this.#timers.after(ms, () => {
        st.idleTimer = undefined;
        socket.destroy();
      });
    });
  }
}

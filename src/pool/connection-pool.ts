import type { Socket } from 'node:net';
import type { Client, Dispatcher } from 'undici';
import { ExpectClient } from '../http/expect-client.js';
import { undici } from '../http/undici.js';
import { Failure } from '../failure/index.js';
import type { CancelSignal } from '../timing/cancel.js';
import { H2Client } from './h2-client.js';
import { NativeClient } from './native-client.js';
import { timedConnector, type ConnectTimings, type PoolConnector } from './timed-connector.js';

/** An ExpectClient over the endpoint's connector, with the timings of its connect. */
export type TimedExpectClient = ExpectClient & { readonly timings: ConnectTimings };

/**
 * Connections to one origin: a reverse endpoint (upstream/endpoint.ts), or a destination of
 * the forward proxy's direct exit (forward/direct-pools.ts, through a PoolSet). The caller
 * supplies the connector (the reverse side's undici connector with its TLS options; the
 * forward side's Dialer under the user's destination rules, with its upstream TLS).
 * Written here rather than using undici's Pool because the keep-alive race needs
 * per-connection choices that Pool does not expose:
 *  - idle connections are reused newest-first (LIFO), so the one most likely to be
 *    still open upstream goes first;
 *  - a connection idle longer than the endpoint's safe idle time is never reused: its
 *    idle limit is learned from every idle close the upstream makes, however short
 *    (and from its `Keep-Alive: timeout=` hint, which undici's Client already honours);
 *  - a non-idempotent request never goes on a reused connection: it gets a connection
 *    opened for it (RFC 9112 §9.3.1: it may not be retried once it may have been
 *    processed, and an upstream may close a reused connection at any moment after its
 *    last response, §9.6; only a connection with no idle time before the request cannot
 *    lose that race). Afterwards the connection joins the idle list like any other;
 *  - a retry can ask for a fresh connection (at `maxConnections`, with every connection
 *    busy, it queues like any request: the limit holds, and gateway/retry-policy.ts bounds
 *    the races such a retry can lose).
 * Each connection is an undici Client (one socket, no pipelining), or with `native` set a
 * `NativeClient` (native-client.ts: the hand-written HTTP/1.1 client), or with `h2` set an
 * `H2Client` (h2-client.ts: HTTP/2 on node:http2, up to `maxStreams` requests at once), all
 * seen through `PoolConnection`.
 *
 * "Idempotent" for `acquire` means "may be retried on a fresh connection if it loses the
 * race": a caller that cannot resend a request's body passes false for it whatever its method
 * (the reverse gateway for a body it cannot keep whole, gateway/exchange.ts #bodyKept; the
 * forward relay for any body). At `maxConnections` with every connection busy even such a
 * request waits behind another on its connection (`acquire`): no idle time precedes it there,
 * but it is the one case in which it can still lose the race.
 */

/**
 * A learned idle limit is trusted this long, then relearned (upstreams change, and a
 * restart's closes of idle connections look like a very short idle limit). Relearning
 * costs at most one keep-alive race, which an idempotent request retries.
 */
const LEARN_TTL_MS = 60_000;

/**
 * One upstream connection on undici's Client and what the pool knows of it. The class is made
 * when the first pool on undici's client is (src/http/undici.ts: the whole of undici is loaded
 * only where one of its clients is used).
 */
function definePooledClient(Base: typeof Client): PooledClientClass {
  return class PooledClient extends Base {
    /** Requests dispatched and not yet finished. */
    active = 0;
    /** Completed requests: >0 means the socket is being reused. */
    uses = 0;
    /** When the last request finished (ms since epoch). */
    lastUsed = 0;
    /** The socket is connected (between undici's connect and disconnect events). */
    connected = false;
    /** DNS, TCP and TLS times of this connection. */
    readonly timings: ConnectTimings = {};
    /**
     * https: the endpoint's TLS name, put on every request. undici otherwise takes a request's
     * servername from its Host header (the client's, in a gateway) and closes the connection
     * whenever it differs from the last request's: keep-alive would end at each new Host.
     * The connector (timed-connector.ts) then names the server after the endpoint itself.
     */
    servername: string | undefined;

    override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
      if (this.servername !== undefined) (opts as { servername?: string }).servername = this.servername;
      return super.dispatch(opts, handler);
    }

    /** The address the connection went to (for the forward access log). */
    remoteAddress: string | undefined;

    /** The socket of the current connection (set by the pool's connector). */
    socket: Socket | undefined;

    /** The signal of the request this connection is being opened for (see ConnectionState). */
    opener: CancelSignal | undefined = undefined;
  };
}

/** What the pool keeps on each connection, whichever client it is (the fields: definePooledClient). */
interface ConnectionState {
  active: number;
  uses: number;
  lastUsed: number;
  connected: boolean;
  readonly timings: ConnectTimings;
  servername: string | undefined;
  remoteAddress: string | undefined;
  /**
   * The connection's current socket (undefined before it connects). Its `bytesWritten` tells
   * whether a request was written on it (gateway/attempt.ts: whether a try's connection was
   * reused, and whether a reset came before any byte of the request was written).
   */
  socket: Socket | undefined;
  /**
   * The signal of the request this connection is opened for (`acquire`'s `opener`), handed to
   * the connector with the dial, and only while that request is the one request on it: another
   * request queued on the connection clears it (before the dial starts), or detaches the dial
   * from it (after: a `DialSignal`), and so does the connect's answer (a pooled connection must
   * not keep its first request alive).
   */
  opener: CancelSignal | undefined;
}

/**
 * The signal a connection's dial is made with in a pool that can queue a request on a
 * connection still opening (a finite `maxConnections`): the opening request's signal until
 * another request waits on the connection, then none. The connector holds this object, not the
 * request's signal, so `detach` reaches a dial already under way: it takes the dial's abort
 * listeners off the request's signal, and `aborted` reads false from then on. Before, `acquire`
 * only cleared the connection's `opener` field, which a dial that had started had already read:
 * the first request's client leaving stopped the dial and failed every request queued on it
 * (test/pool/shared-dial.test.ts). A pool without a limit (the forward proxy's direct pools)
 * never queues a request on a connection and hands the request's signal itself: no object.
 */
class DialSignal implements CancelSignal {
  #opener: CancelSignal | undefined;
  /** The listeners the dial added, to take them off the opener at `detach`. */
  #listeners: (() => void)[] | undefined = undefined;

  constructor(opener: CancelSignal) {
    this.#opener = opener;
  }

  get aborted(): boolean {
    return this.#opener?.aborted === true;
  }

  get reason(): unknown {
    return this.#opener?.reason;
  }

  addEventListener(_type: 'abort', listener: () => void): void {
    const o = this.#opener;
    if (o === undefined) return;
    o.addEventListener('abort', listener, { once: true });
    (this.#listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const o = this.#opener;
    if (o === undefined) return;
    o.removeEventListener('abort', listener);
    const l = this.#listeners;
    const i = l === undefined ? -1 : l.indexOf(listener);
    if (i >= 0) l!.splice(i, 1);
  }

  /** Another request waits on the dial: the opener's leaving no longer stops it. */
  detach(): void {
    const o = this.#opener;
    if (o === undefined) return;
    this.#opener = undefined;
    const l = this.#listeners;
    this.#listeners = undefined;
    if (l !== undefined) for (const f of l) o.removeEventListener('abort', f);
  }
}

/** One upstream connection on undici's Client (see definePooledClient). */
export interface PooledClient extends Client, ConnectionState {}
type PooledClientClass = new (origin: string, options: Client.Options) => PooledClient;
let pooledClientClass: PooledClientClass | undefined;

/** The PooledClient class, made on first use (which loads undici). */
function pooledClient(): PooledClientClass {
  return (pooledClientClass ??= definePooledClient(undici().Client));
}

/**
 * What the pool and its users (the gateway's Attempt, revalidation and upgrade, the forward
 * relay) use of a connection: undici's `Client` surface, which `PooledClient` and
 * `NativeClient` both have. `connected` is kept by the pool from the 'connect' and
 * 'disconnect' events.
 */
export interface PoolConnection extends ConnectionState {
  pipelining: number | undefined;
  readonly destroyed: boolean;
  readonly closed: boolean;
  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean;
  /**
   * Take a request that has not started out of the connection's queue (its try gave up
   * waiting behind the request ahead): true when it was still there. Only the native client
   * can; undici's Client cannot drop a queued request, so its try aborts at onConnect instead,
   * which closes the connection.
   */
  drop?(handler: Dispatcher.DispatchHandler): boolean;
  close(): Promise<void>;
  destroy(err?: Error | null): Promise<void>;
  on(event: string, listener: (...args: any[]) => void): this;
  /** HTTP/2 (`H2Client`): the upstream's GOAWAY on the connection, in words, once one came. */
  readonly goaway?: string | undefined;
}

export interface ConnectionPoolOptions {
  origin: string;
  maxConnections: number;
  /** Configured keep-alive: the longest a connection may sit idle and still be reused. */
  keepAliveMs: number;
  clientOptions: Client.Options;
  /**
   * Opens (and, for https, secures) one connection to the origin; timed per connection. Given
   * the opening request's signal as a third argument (`PoolConnector`), which it may ignore.
   */
  connector: PoolConnector;
  /** https: the TLS name every request carries (PooledClient.servername); default the origin's host name. */
  servername?: string;
  /**
   * HTTP/2 multiplexing: requests one connection that negotiated h2 carries at once (the
   * `H2Client`'s stream limit). Default 1: a request per connection. An HTTP/1.1 connection
   * (an h2 cluster whose upstream agreed only to http/1.1) keeps 1.
   */
  maxStreams?: number;
  /**
   * HTTP/2 toward the origin (a cluster's `protocol: h2` or `h2c`): every connection is an
   * `H2Client` (h2-client.ts), over the connector, which offers h2 by ALPN or marks a
   * cleartext socket h2 (prior knowledge). An upstream that agrees only to http/1.1 gets the
   * hand-written HTTP/1.1 client on that socket. Its timeouts, header limit and keep-alive
   * come from `clientOptions` (headersTimeout, bodyTimeout, maxHeaderSize, keepAliveTimeout,
   * keepAliveTimeoutThreshold).
   */
  h2?: boolean;
  /**
   * The hand-written HTTP/1.1 client (native-client.ts) instead of undici's for every
   * connection (a cluster's `client: native`). HTTP/1.1 only: never with `maxStreams` > 1.
   * Its header limit and keep-alive come from `clientOptions` (maxHeaderSize, keepAliveTimeout,
   * keepAliveTimeoutThreshold).
   */
  native?: boolean;
}

/**
 * `C` is the connection type its users see: `PooledClient` (undici) unless the pool was made
 * with `native` (then `PoolConnection`, which both are).
 */
export class ConnectionPool<C extends PoolConnection = PooledClient> {
  readonly #opts: ConnectionPoolOptions;
  /** Idle connections, most recently used last. */
  readonly #idle: C[] = [];
  readonly #all = new Set<C>();
  /** Retired connections still finishing a request (closed gracefully): `destroy` reaches them too. */
  readonly #retiring = new Set<C>();
  /** Shortest idle age at which the upstream closed a connection (ms), forgotten after LEARN_TTL_MS. */
  learnedIdleMs = Infinity;
  #learnedAt = 0;
  #closed = false;

  readonly #connector: PoolConnector;

  constructor(opts: ConnectionPoolOptions) {
    this.#opts = opts;
    this.#connector = opts.connector;
    // Loaded here, with the configuration, rather than at the first request on undici.
    if (!opts.native && !opts.h2) pooledClient();
  }

  get size(): number {
    return this.#all.size;
  }

  get idleCount(): number {
    return this.#idle.length;
  }

  /** The most connections to the origin (the endpoint's `maxConnections`). */
  get maxConnections(): number {
    return this.#opts.maxConnections;
  }

  /**
   * A request queued behind another on a busy connection, one wait shared by every dispatcher
   * of the pool (gateway/attempt.ts, gateway/revalidation.ts, gateway/upgrade.ts). At
   * `maxConnections` with every connection busy, `acquire` queues the request on the least busy
   * one, and the client calls its handler's onConnect only when the request ahead ends (a
   * download, an event stream: possibly never), so the dispatcher times it from the dispatch:
   * - `queuedOn(c)` at the dispatch (`c` just given by `acquire`): whether the request waits.
   *   If so the dispatcher keeps when (its `queuedAt`, performance.now(); 0 again at
   *   onConnect) and starts its head timer then. The common case (sent at once) costs one
   *   comparison and allocates nothing;
   * - `giveUpQueued(c, handler, nextHop, queuedAt, now)` when its head timeout passes before
   *   onConnect: takes it out of `c`'s queue (`drop`, native client; undici's cannot, so the
   *   dispatcher aborts at the onConnect that still comes) and returns the Failure to end it with.
   */
  queuedOn(c: C): boolean {
    return c.active > 1 && c.active > Math.max(1, c.pipelining ?? 1);
  }

  /**
   * Gives up a request that waited its whole head timeout in a busy connection's queue
   * (`queuedOn`), unsent: `connection_limit_reached` in the admit phase. The endpoint is
   * not unreachable (no hold for it), and nothing reached the upstream, so any request may go
   * to another endpoint (gateway/retry-policy.ts).
   */
  giveUpQueued(c: C, handler: Dispatcher.DispatchHandler, nextHop: string, queuedAt: number, now: number): Failure {
    c.drop?.(handler);
    return new Failure({
      type: 'connection_limit_reached',
      phase: 'admit',
      retrySafe: true,
      nextHop,
      detail: `every connection to ${nextHop} was busy (maxConnections ${this.#opts.maxConnections}) for ${Math.round(now - queuedAt)} ms; the request was not sent`,
    });
  }

  /** The longest idle age at which a connection is still reused. */
  safeIdleMs(): number {
    if (this.learnedIdleMs !== Infinity && Date.now() - this.#learnedAt > LEARN_TTL_MS) this.learnedIdleMs = Infinity;
    const learned = this.learnedIdleMs === Infinity ? Infinity : Math.max(0, this.learnedIdleMs * 0.8 - 50);
    return Math.min(this.#opts.keepAliveMs, learned);
  }

  /**
   * A connection for the next request. An idempotent request reuses the newest idle
   * connection within the safe idle time (and closes older ones); `fresh` (a retry after
   * the race) and non-idempotent requests get a new connection.
   *
   * `opener`: the request's cancel signal. A connection opened for this request hands it to
   * the connector with its dial, so a dial for a request already abandoned (the forward
   * proxy's client left while the name resolved) is skipped or stopped rather than made for
   * no one. It is read, not listened to, by the pool; a reused connection never sees it. A
   * request queued on the connection while it opens (at `maxConnections`) detaches the dial
   * from the opener's signal, started or not: the dial now serves that request too.
   */
  acquire(now: number, idempotent: boolean, fresh: boolean, opener?: CancelSignal): C {
    const streams = this.#opts.maxStreams ?? 1;
    if (streams > 1 && !fresh) {
      // HTTP/2: another stream on a busy h2 connection (no keep-alive race on a connection in
      // use; an idle one goes through the idle rules below).
      for (const c of this.#all) {
        if (c.active > 0 && c.active < streams && c.connected && c.timings.h2 === true && !c.destroyed && !c.closed) {
          c.active++;
          return c;
        }
      }
    }
    const idle = this.#idle;
    if (!fresh && idempotent) {
      const limit = this.safeIdleMs();
      while (idle.length > 0) {
        const c = idle.pop()!;
        if (c.destroyed || c.closed) continue;
        if (now - c.lastUsed <= limit) {
          c.active++;
          return c;
        }
        // Too old to reuse: close it rather than risk the race.
        this.#retire(c);
      }
    }
    // A new connection takes the place of the oldest idle one (the least likely to be reused
    // safely): one opened per POST would otherwise pile up idle until the keep-alive time.
    if (idle.length > 0) {
      this.#retire(idle[0]!);
      return this.#open(opener);
    }
    if (this.#all.size < this.#opts.maxConnections || this.#all.size === 0) return this.#open(opener);
    // Every connection is busy: queue on the least busy one (the one case in which a
    // non-idempotent request follows another request on its connection).
    let best: C | undefined;
    for (const c of this.#all) if (!c.destroyed && !c.closed && (!best || c.active < best.active)) best = c;
    if (!best) return this.#open(opener);
    const i = idle.indexOf(best);
    if (i >= 0) idle.splice(i, 1);
    best.active++;
    // A connection still opening now serves a second request: its opener's leaving no longer
    // stops its dial, whether the dial has started (its DialSignal detached) or not (cleared).
    const o = best.opener;
    if (o instanceof DialSignal) o.detach();
    best.opener = undefined;
    return best;
  }

  /** The request on `c` finished; `reusable` false when its connection must not be reused. */
  release(c: C, now: number, reusable: boolean): void {
    c.active--;
    c.uses++;
    c.lastUsed = now;
    if (c.active > 0) return;
    if (!reusable || this.#closed || c.destroyed || c.closed) {
      // A connection already gone (its 'disconnect' came while it was busy) is retired here.
      if (!reusable || !c.connected) this.#retire(c);
      return;
    }
    this.#idle.push(c);
  }

  /**
   * A connection of its own, outside the pool, for a request with `Expect: 100-continue`
   * (../http/expect-client.ts: undici cannot send one), its connect timed for the attempt record.
   */
  openExpectClient(): TimedExpectClient {
    const timings: ConnectTimings = {};
    return Object.assign(new ExpectClient({ origin: this.#opts.origin, connector: timedConnector(this.#connector, timings) }), { timings });
  }

  #open(opener: CancelSignal | undefined): C {
    const c = this.#opts.h2 === true ? this.#openH2() : this.#opts.native === true ? this.#openNative() : this.#openUndici();
    // Only a pool with a limit queues requests on a connection still opening (acquire).
    c.opener = opener !== undefined && this.#opts.maxConnections !== Infinity ? new DialSignal(opener) : opener;
    c.active = 1;
    c.lastUsed = Date.now();
    this.#all.add(c);
    c.on('connect', () => {
      c.connected = true;
    });
    c.on('disconnect', (_origin: unknown, _targets: unknown, err: { code?: string } | undefined) => {
      const wasIdle = c.connected && c.active === 0 && c.uses > 0;
      c.connected = false;
      // Only the upstream's closes tell its idle limit: a connection this pool retired (the
      // oldest idle one, given up for a POST's new connection) closes idle too, a few ms old,
      // and learning that made the safe idle time 0, so nothing was reused for a minute
      // (reverse GET 1 KiB fell from ~12,000 to ~3,500 req/s after any POST traffic).
      if (wasIdle && !this.#retiring.has(c) && (err?.code === 'UND_ERR_SOCKET' || err?.code === 'ECONNRESET')) {
        // The upstream closed an idle keep-alive connection: learn its idle limit.
        const idleMs = Date.now() - c.lastUsed;
        if (idleMs < this.learnedIdleMs || Date.now() - this.#learnedAt > LEARN_TTL_MS) {
          this.learnedIdleMs = idleMs;
          this.#learnedAt = Date.now();
        }
      }
      // The Client would reconnect on the next dispatch; the pool prefers a clean new one.
      if (c.active === 0) this.#retire(c);
    });
    c.on('connectionError', () => {
      c.connected = false;
    });
    return c;
  }

  /** The hand-written HTTP/1.1 client, over the same timed connector (TLS in one place). */
  #openNative(): C {
    const timings: ConnectTimings = {};
    const o = this.#opts.clientOptions;
    const c = new NativeClient({
      origin: this.#opts.origin,
      connector: timedConnector(this.#connector, timings),
      maxHeaderSize: o.maxHeaderSize ?? 16384,
      keepAliveMs: o.keepAliveTimeout ?? this.#opts.keepAliveMs,
      keepAliveThresholdMs: o.keepAliveTimeoutThreshold ?? 1000,
      timings,
    });
    return c as unknown as C;
  }

  /** HTTP/2 on node:http2 (h2-client.ts), over the same timed connector. */
  #openH2(): C {
    const timings: ConnectTimings = {};
    const o = this.#opts.clientOptions;
    const c = new H2Client({
      origin: this.#opts.origin,
      connector: timedConnector(this.#connector, timings),
      maxStreams: this.#opts.maxStreams ?? 1,
      headersTimeoutMs: o.headersTimeout ?? 0,
      bodyTimeoutMs: o.bodyTimeout ?? 0,
      maxHeaderSize: o.maxHeaderSize ?? 16384,
      keepAliveMs: o.keepAliveTimeout ?? this.#opts.keepAliveMs,
      keepAliveThresholdMs: o.keepAliveTimeoutThreshold ?? 1000,
      timings,
    });
    return c as unknown as C;
  }

  #openUndici(): C {
    const timings: ConnectTimings = {};
    const timed = timedConnector(this.#connector, timings);
    const c: PooledClient = new (pooledClient())(this.#opts.origin, {
      ...this.#opts.clientOptions,
      pipelining: 1,
      connect: (o, cb) =>
        timed(
          o,
          (err, s) => {
            c.opener = undefined;
            if (s) {
              c.remoteAddress = (s as Socket).remoteAddress;
              c.socket = s as Socket;
            }
            (cb as (e: Error | null, s: unknown) => void)(err, s);
          },
          c.opener,
        ),
    });
    Object.assign(c, { timings });
    if (this.#opts.origin.startsWith('https:')) c.servername = this.#opts.servername ?? new URL(this.#opts.origin).hostname;
    return c as unknown as C;
  }

  #retire(c: C): void {
    if (!this.#all.delete(c)) return;
    const i = this.#idle.indexOf(c);
    if (i >= 0) this.#idle.splice(i, 1);
    const retiring = this.#retiring;
    retiring.add(c);
    c.close()
      .catch(() => c.destroy())
      .catch(() => undefined)
      .finally(() => retiring.delete(c));
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#idle.length = 0;
    await Promise.allSettled([...this.#all, ...this.#retiring].map((c) => c.close()));
    this.#all.clear();
  }

  async destroy(): Promise<void> {
    this.#closed = true;
    this.#idle.length = 0;
    await Promise.allSettled([...this.#all, ...this.#retiring].map((c) => c.destroy()));
    this.#all.clear();
    this.#retiring.clear();
  }
}

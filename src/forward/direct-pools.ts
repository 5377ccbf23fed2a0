import type { Socket } from 'node:net';
import type { buildConnector } from 'undici';
import { unbracket } from '../egress/index.js';
import type { Dialer } from '../egress/index.js';
import { ConnectionPool, PoolSet, type PoolConnector } from '../pool/index.js';
import type { CancelSignal } from '../timing/cancel.js';
import type { DestinationRules } from './rules/destination-rules.js';
import type { ForwardSettings } from './settings.js';
import type { UpstreamTls } from './upstream-tls.js';

/** Origins (per rules scope) with a pool at once; the least recently used is closed beyond this. */
const MAX_POOLS = 4096;
/** A pool without connections is kept this long (what it learned of the origin's idle limit lives there). */
const EMPTY_POOL_TTL_MS = 60_000;
/** Idle time of a connection when the destination sends no `Keep-Alive: timeout=` hint. */
const KEEP_ALIVE_MS = 4_000;
/** The longest a destination's `Keep-Alive: timeout=` hint may keep a connection for reuse. */
const KEEP_ALIVE_MAX_MS = 60_000;

/**
 * The direct exit's keep-alive connections: a `ConnectionPool` (../pool/, the reverse
 * gateway's, with its keep-alive race defence) per rules scope and origin, in one bounded
 * `PoolSet`. Each connection is opened by the Dialer, so destination rules apply to every
 * new connection, and secured by `UpstreamTls` for https. Users with rules of their own get
 * pools of their own (their pooled connections were checked against their rules); everyone
 * else shares one scope.
 */
export class DirectPools {
  readonly #pools: PoolSet;
  readonly #dialer: Dialer;
  readonly #rulesOf: () => DestinationRules;
  readonly #settings: ForwardSettings;
  readonly #onSocket: (s: Socket) => () => void;
  readonly #tls: UpstreamTls;

  constructor(dialer: Dialer, rules: () => DestinationRules, settings: ForwardSettings, onSocket: (s: Socket) => () => void, tls: UpstreamTls) {
    this.#tls = tls;
    this.#dialer = dialer;
    this.#rulesOf = rules;
    this.#settings = settings;
    this.#onSocket = onSocket;
    this.#pools = new PoolSet({ maxPools: MAX_POOLS, emptyTtlMs: EMPTY_POOL_TTL_MS, create: (key) => this.#create(key) });
  }

  scopeOf(user: string | null): string {
    return this.#rulesOf().hasOwnRules(user) ? `user:${user}` : '*';
  }

  /** The pool whose connections to `origin` obey `user`'s rules. */
  for(user: string | null, origin: string, now: number): ConnectionPool {
    const scope = this.scopeOf(user);
    return this.#pools.get(scope === '*' ? origin : `${scope} ${origin}`, now);
  }

  /**
   * One connection to `protocol//host:port` under `user`'s rules, outside the pools (a
   * request undici cannot carry: `Expect: 100-continue`). TLS for https. `opener` as for a
   * pooled connection: the request's signal, read by the dialer (no dial for a client gone).
   */
  connectOnce(user: string | null, protocol: 'http:' | 'https:', hostname: string, port: number, opener?: CancelSignal): Promise<Socket> {
    return new Promise((resolve, reject) => {
      this.#connector(user)({ protocol, hostname, port: String(port), host: `${hostname}:${port}` } as buildConnector.Options, (err, sock) => (err ? reject(err) : resolve(sock as Socket)), opener);
    });
  }

  /**
   * The pools' connector: the Dialer under `user`'s rules. The opening request's signal goes
   * to the dialer (`DialOptions.signal`), which reads it before it resolves and before each
   * connect, and stops a dial in flight when it is aborted: a request whose client left while
   * the name resolved gets no connection (http-relay.ts records it 499, ended by the client).
   */
  #connector(user: string | null): PoolConnector {
    const guard = this.#rulesOf().guardFor(user);
    const s = this.#settings;
    return (opts, callback, opener) => {
      const https = opts.protocol === 'https:';
      const host = unbracket(opts.hostname);
      const port = Number(opts.port) || (https ? 443 : 80);
      // Every field written, the signal too when there is none: one object shape (egress/dialer.ts withSignal).
      this.#dialer.dial({ host, port }, { guard, connectTimeoutMs: s.connectTimeoutMs, dnsTimeoutMs: s.dnsTimeoutMs, signal: opener }).then(
        (sock) => {
          const untrack = this.#onSocket(sock);
          sock.once('close', untrack);
          if (https) this.#tls.upgrade(sock, host, port, callback);
          else callback(null, sock);
        },
        (err: Error) => callback(err, null),
      );
    };
  }

  /** A pool for `key`: the origin, after the scope (`user:<name> `) when the user has rules of their own. */
  #create(key: string): ConnectionPool {
    const space = key.lastIndexOf(' ');
    const origin = space < 0 ? key : key.slice(space + 1);
    const user = space < 0 ? null : key.slice('user:'.length, space);
    return new ConnectionPool({
      origin,
      maxConnections: Infinity,
      keepAliveMs: KEEP_ALIVE_MAX_MS,
      // The relay times the response itself (ResponseTimer): undici's timers are off per request.
      clientOptions: { keepAliveTimeout: KEEP_ALIVE_MS, keepAliveMaxTimeout: KEEP_ALIVE_MAX_MS },
      connector: this.#connector(user),
    });
  }

  /** Drop every pool (rules changed): new requests get pools with the new rules; requests in flight finish. */
  reset(): void {
    this.#pools.reset();
  }

  async close(): Promise<void> {
    await this.#pools.close();
  }
}

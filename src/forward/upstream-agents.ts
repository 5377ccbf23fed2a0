import type { Socket } from 'node:net';
import { Agent, type buildConnector } from 'undici';
import { unbracket } from '../egress/index.js';
import type { Dialer } from '../egress/index.js';
import type { DestinationRules } from './rules/destination-rules.js';
import type { ForwardSettings } from './settings.js';
import type { UpstreamTls } from './upstream-tls.js';

/**
 * undici Agents (a Pool per origin) whose connections are opened by the Dialer, so
 * destination rules apply to every new connection. Users with rules of their own get
 * their own Agent (their pooled connections were checked against their rules); everyone
 * else shares one.
 */
export class UpstreamAgents {
  readonly #agents = new Map<string, Agent>();
  readonly #lastAddress = new Map<string, string>();
  readonly #dialer: Dialer;
  readonly #rulesOf: () => DestinationRules;
  readonly #settings: ForwardSettings;
  readonly #onSocket: (s: Socket) => () => void;
  readonly #tls: UpstreamTls;
  #closed = false;

  constructor(dialer: Dialer, rules: () => DestinationRules, settings: ForwardSettings, onSocket: (s: Socket) => () => void, tls: UpstreamTls) {
    this.#tls = tls;
    this.#dialer = dialer;
    this.#rulesOf = rules;
    this.#settings = settings;
    this.#onSocket = onSocket;
  }

  scopeOf(user: string | null): string {
    return this.#rulesOf().hasOwnRules(user) ? `user:${user}` : '*';
  }

  /** The Agent whose connections obey `user`'s rules. */
  for(user: string | null): Agent {
    const scope = this.scopeOf(user);
    let a = this.#agents.get(scope);
    if (!a) {
      a = this.#create(scope, user);
      this.#agents.set(scope, a);
    }
    return a;
  }

  /** The address the latest connection for this scope and origin went to (for the access log). */
  lastAddress(user: string | null, origin: string): string | undefined {
    return this.#lastAddress.get(`${this.scopeOf(user)} ${origin}`);
  }

  /**
   * One connection to `protocol//host:port` under `user`'s rules, outside the pools (a
   * request undici cannot carry: `Expect: 100-continue`). TLS for https.
   */
  connectOnce(user: string | null, protocol: 'http:' | 'https:', hostname: string, port: number): Promise<Socket> {
    return new Promise((resolve, reject) => {
      this.#connector(this.scopeOf(user), user)({ protocol, hostname, port: String(port), host: `${hostname}:${port}` } as buildConnector.Options, (err, sock) =>
        err ? reject(err) : resolve(sock as Socket),
      );
    });
  }

  #connector(scope: string, user: string | null): buildConnector.connector {
    const guard = this.#rulesOf().guardFor(user);
    const s = this.#settings;
    return (opts, callback) => {
      const https = opts.protocol === 'https:';
      const host = unbracket(opts.hostname);
      const port = Number(opts.port) || (https ? 443 : 80);
      const origin = `${opts.protocol}//${opts.hostname}${opts.port ? `:${opts.port}` : ''}`;
      this.#dialer.dial({ host, port }, { guard, connectTimeoutMs: s.connectTimeoutMs, dnsTimeoutMs: s.dnsTimeoutMs }).then(
        (sock) => {
          const untrack = this.#onSocket(sock);
          sock.once('close', untrack);
          if (sock.remoteAddress) this.#lastAddress.set(`${scope} ${origin}`, sock.remoteAddress);
          if (this.#lastAddress.size > 10_000) this.#lastAddress.clear();
          if (https) this.#tls.upgrade(sock, host, port, callback);
          else callback(null, sock);
        },
        (err: Error) => callback(err, null),
      );
    };
  }

  #create(scope: string, user: string | null): Agent {
    const s = this.#settings;
    const connect = this.#connector(scope, user);
    return new Agent({
      connect,
      headersTimeout: s.responseHeadersMs,
      bodyTimeout: s.responseBodyIdleMs,
      keepAliveTimeout: 4_000,
      keepAliveMaxTimeout: 60_000,
    });
  }

  /** Drop every Agent (rules changed): new requests get Agents with the new rules. */
  reset(): void {
    const all = [...this.#agents.values()];
    this.#agents.clear();
    for (const a of all) a.close().catch(() => {});
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const all = [...this.#agents.values()];
    this.#agents.clear();
    await Promise.allSettled(all.map((a) => a.destroy()));
  }
}

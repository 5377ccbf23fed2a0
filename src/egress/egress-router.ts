import type { Socket } from 'node:net';
import { Failure, classify } from '../failure/index.js';
import { customerFacingFailure } from '../tenants/limit-refusal.js';
import { withSignal, type DialHandle, type DialOptions, type DialSink, type DialTarget, type Dialer, type UdpDialer, type UdpEgress, type UdpOpenOptions } from './dialer.js';
import { Cancel } from '../timing/cancel.js';
import { scopeOf, withEgress, withScope } from './exit-failure.js';
import { refuseLiteral, type Exit } from './exit.js';
import type { ExitPool } from './exit-pool.js';
import { HostPatterns, hostNeed, readHost, type HostNeed } from './host-pattern.js';

/** Who is asking and what the username parameters said. */
export interface EgressRoute {
  user: string | null;
  /** Pool named in the username (`-pool-NAME`). */
  pool?: string;
  session?: string;
  /** Session lifetime from the username (`-ttl-10m`), ms. */
  ttlMs?: number;
  /** `-debug-1` / `-debug-0` in the username: the Gatewise-Debug header on (off) for this request, whatever the plan says. */
  debug?: boolean;
  /** The pool was chosen by a `chooseEgress` hook, not the username. */
  poolByHook?: boolean;
}

export interface RoutingRule {
  users?: readonly string[];
  /** Host patterns: `example.com`, `*.example.com`, `*`. */
  hosts?: readonly string[];
  pool: string;
}

/** Which exit carried a connection, for the access log and response headers. */
export interface ExitChoice {
  pool: string;
  exit: Exit;
  session?: string;
  repinned: boolean;
  /** Exits tried before this one (failed before anything was sent). */
  retried: number;
}

export interface EgressDial {
  socket: Socket;
  /** Undefined when the connection left directly (no pool). */
  choice?: ExitChoice;
}

export interface EgressEvents {
  /** An exit failed and its failure count moved (cooled: it tripped into cool-down). */
  onExitFailure?(info: { pool: string; exit: string; host: string; scope: string; cooled: boolean; failure: Failure }): void;
  /** A sticky session moved from its exit to another (`why`: the pinned exit failed, cools down or left the pool). */
  onRepin?(info: { pool: string; user: string | null; session: string | undefined; from: string; to: string; why: string }): void;
  /** An exit's cool-down (for one host, or as a whole) ended after `forMs`: it is back in service. */
  onExitReturn?(info: { pool: string; exit: string; host: string | undefined; forMs: number }): void;
}


/**
 * The egress Router: picks the pool for a connection (username `pool` parameter, then
 * the routing rules in order, then the default pool; none = direct), picks an exit with
 * the pool's Selector, dials through it, marks failures, and tries another exit when a
 * connect failed before anything was sent.
 */
export class EgressRouter {
  readonly pools: ReadonlyMap<string, ExitPool>;
  readonly #rules: ReadonlyArray<RoutingRule & { readonly patterns: HostPatterns | undefined }>;
  /** What the rules' host patterns need read of a host at each pick. */
  readonly #hostNeed: HostNeed;
  readonly #defaultPool: string | undefined;
  readonly #direct: Dialer;
  readonly #directUdp: UdpDialer;
  readonly #events: EgressEvents;

  constructor(opts: { pools: Map<string, ExitPool>; routing?: RoutingRule[]; defaultPool?: string; direct: Dialer; directUdp: UdpDialer; events?: EgressEvents }) {
    this.pools = opts.pools;
    // Host patterns as the destination rules match them (HostPattern: an IP address in every
    // spelling). Before, the text alone: `2130706434` or `[::ffff:127.0.0.2]` passed a rule for
    // 127.0.0.2 and left by the default way (review of session 35).
    this.#rules = (opts.routing ?? []).map((r) => ({ ...r, patterns: r.hosts ? new HostPatterns(r.hosts) : undefined }));
    this.#hostNeed = hostNeed(this.#rules.map((r) => r.patterns));
    this.#defaultPool = opts.defaultPool;
    this.#direct = opts.direct;
    this.#directUdp = opts.directUdp;
    this.#events = opts.events ?? {};
    for (const r of this.#rules) if (!this.pools.has(r.pool)) throw new TypeError(`routing rule names unknown pool ${r.pool}`);
    if (this.#defaultPool !== undefined && !this.pools.has(this.#defaultPool)) throw new TypeError(`defaultPool ${this.#defaultPool} is not a pool`);
  }

  get hasPools(): boolean {
    return this.pools.size > 0;
  }

  /** What chose the pool for this route and host, for the debug header: `username`, `hook`, `rule-N` (the routing rule, from 1), `default`, `direct`. */
  poolDecidedBy(route: EgressRoute, host: string): string {
    if (route.pool !== undefined) return route.poolByHook ? 'hook' : 'username';
    const h = readHost(host, this.#hostNeed);
    for (let i = 0; i < this.#rules.length; i++) {
      const r = this.#rules[i]!;
      if (r.users && !(route.user !== null && r.users.includes(route.user))) continue;
      if (r.patterns && !r.patterns.matches(h)) continue;
      return `rule-${i + 1}`;
    }
    return this.#defaultPool !== undefined ? 'default' : 'direct';
  }

  /** The pool name for this route and host (undefined = direct), or the refusal for an unknown pool. */
  poolName(route: EgressRoute, host: string): string | undefined | Failure {
    if (route.pool !== undefined) {
      if (!this.pools.has(route.pool)) {
        // The client's own -pool- parameter: the detail is for them (customer-facing).
        return customerFacingFailure({ type: 'http_request_denied', phase: 'route', detail: `there is no egress pool named ${route.pool}` });
      }
      return route.pool;
    }
    const h = readHost(host, this.#hostNeed);
    for (const r of this.#rules) {
      if (r.users && !(route.user !== null && r.users.includes(route.user))) continue;
      if (r.patterns && !r.patterns.matches(h)) continue;
      return r.pool;
    }
    return this.#defaultPool;
  }

  /**
   * Pick an exit and run `attempt` through it; on a failure the exit is to blame for
   * (scope exit/domain/skip) and while attempts remain, try another exit.
   */
  async #through<T>(poolName: string, host: string, route: EgressRoute, attempt: (exit: Exit) => Promise<T>, exclude?: ReadonlySet<string>): Promise<{ value: T; choice: ExitChoice }> {
    const pool = this.pools.get(poolName)!;
    // Exits that already failed this request (a hop that refused a plain-HTTP request) count as tried.
    const tried = new Set<string>(exclude);
    let last: Failure | undefined;
    let lastExit: string | undefined;
    let repinned = false;
    const limit = Math.max(1, Math.max(pool.maxAttempts, 1) - tried.size);
    for (let attempts = 0; attempts < limit + pool.exits.length && tried.size < pool.exits.length; ) {
      const picked = pool.select({ host, user: route.user, session: route.session, ttlMs: route.ttlMs, exclude: tried });
      const pick = picked instanceof Promise ? await picked : picked;
      if (!pick) break;
      repinned ||= pick.repinned;
      if (pick.repinned) this.#events.onRepin?.({ pool: poolName, user: route.user, session: route.session, from: pick.from!, to: pick.exit.label, why: pick.why! });
      tried.add(pick.exit.id);
      try {
        const value = await attempt(pick.exit);
        pool.succeeded(pick.exit, host);
        return { value, choice: { pool: poolName, exit: pick.exit, session: route.session, repinned, retried: tried.size - 1 } };
      } catch (err) {
        const f = err instanceof Failure ? err : classify(err, { connected: false, responseStarted: false, headersReceived: false, nextHop: pick.exit.label });
        const scope = scopeOf(f);
        if (scope === 'none') throw f;
        last = f;
        lastExit = pick.exit.label;
        if (scope !== 'skip') {
          attempts++;
          const cooled = pool.failed(pick.exit, host, scope);
          this.#events.onExitFailure?.({ pool: poolName, exit: pick.exit.label, host, scope, cooled, failure: f });
          // The pinned exit just failed: the session moves on.
          if (pick.sessionKey) repinned = true;
        }
        if (attempts >= limit) break;
      }
    }
    if (last) throw withEgress(last, { pool: poolName, exit: lastExit, retried: Math.max(0, tried.size - 1), repinned });
    const waitMs = pool.retryAfterMs(host);
    const init = {
      type: 'destination_unavailable',
      phase: 'pick',
      detail: `every exit of pool ${poolName} is cooling down for ${host}${waitMs ? ` (next in ${Math.ceil(waitMs / 1000)} s)` : ''}`,
      retryAfter: waitMs ? Math.ceil(waitMs / 1000) : undefined,
    } as const;
    // A pool the client named (-pool-NAME) is theirs to know: the detail names only it, their
    // destination and the wait, so it is shown with revealDetails off (an unknown pool's is too).
    // A pool a routing rule or hook chose is the operator's topology: the type and Retry-After only.
    const f = route.pool !== undefined && !route.poolByHook ? customerFacingFailure(init) : new Failure(init);
    throw withEgress(f, { pool: poolName, exit: undefined, retried: 0, repinned });
  }

  /** Open a TCP connection to `target` for this route. */
  dial(target: DialTarget, opts: DialOptions, route: EgressRoute): Promise<EgressDial> {
    const name = this.poolName(route, target.host);
    if (name instanceof Failure) return Promise.reject(name);
    // Direct: the dialer's promise and one `then`, no async frame (once per tunnel).
    if (name === undefined) return this.#direct.dial(target, opts).then(directDial);
    return this.#dialPool(name, target, opts, route);
  }

  /**
   * `dial` with callbacks, for tunnels (once per CONNECT): a direct dial goes to the
   * dialer's `dialTo` when it has one (no promise at all for an IP literal); a pool, or a
   * dialer without it, runs `dial` and reports its outcome. The sink is called once,
   * possibly before this returns; `abort` cancels the dial (the client left).
   */
  dialTo(target: DialTarget, opts: DialOptions, route: EgressRoute, sink: TunnelDialSink): DialHandle {
    const name = this.poolName(route, target.host);
    if (name instanceof Failure) {
      sink.dialFailed(name);
      return NO_HANDLE;
    }
    if (name === undefined && this.#direct.dialTo !== undefined) return this.#direct.dialTo(target, opts, sink);
    const cancel = new Cancel();
    const dial = name === undefined ? this.#direct.dial(target, withSignal(opts, cancel)).then(directDial) : this.#dialPool(name, target, withSignal(opts, cancel), route);
    dial.then(
      (d) => sink.dialedThrough(d.socket, d.choice),
      (err: unknown) => sink.dialFailed(err),
    );
    return cancel;
  }

  async #dialPool(name: string, target: DialTarget, opts: DialOptions, route: EgressRoute): Promise<EgressDial> {
    const pool = this.pools.get(name)!;
    const { value, choice } = await this.#through(name, target.host, route, (exit) => exit.dial(target, opts));
    const release = pool.opened(choice.exit);
    value.once('close', release);
    return { socket: value, choice };
  }

  /**
   * For a plain-HTTP request: a transport on which the request can be written. Through a
   * single HTTP upstream proxy this is a connection to the proxy (`absoluteForm`, with
   * the Proxy-Authorization to send); otherwise a connection to the destination.
   * `exclude`: exits that already failed this request (their hop refused it).
   */
  async dialHttp(target: DialTarget, opts: DialOptions, route: EgressRoute, exclude?: ReadonlySet<string>): Promise<EgressDial & { absoluteForm?: { proxyAuthorization?: string } }> {
    const name = this.poolName(route, target.host);
    if (name instanceof Failure) throw name;
    if (name === undefined) return { socket: await this.#direct.dial(target, opts) };
    const pool = this.pools.get(name)!;
    const { value, choice } = await this.#through(name, target.host, route, async (exit) => {
      if (!exit.httpProxy) return { socket: await exit.dial(target, opts), absolute: false };
      refuseLiteral(target, opts);
      return { socket: await exit.httpProxy.open(opts), absolute: true };
    }, exclude);
    const release = pool.opened(choice.exit);
    value.socket.once('close', release);
    if (!value.absolute) return { socket: value.socket, choice };
    const ep = choice.exit.httpProxy!.endpoint;
    const auth = ep.username !== undefined ? `Basic ${Buffer.from(`${ep.username}:${ep.password ?? ''}`).toString('base64')}` : undefined;
    return { socket: value.socket, choice, absoluteForm: { proxyAuthorization: auth } };
  }

  /** Report how a request through an exit ended after the connection opened (e.g. a 407 from an upstream proxy). */
  report(choice: ExitChoice, host: string, scope: 'exit' | 'domain', failure: Failure): void {
    const pool = this.pools.get(choice.pool);
    if (!pool) return;
    const cooled = pool.failed(choice.exit, host, scope);
    this.#events.onExitFailure?.({ pool: choice.pool, exit: choice.exit.label, host, scope, cooled, failure });
  }

  /**
   * UDP for a SOCKS5 association: through an exit of the route's pool that carries UDP
   * (an address exit, or a single SOCKS5 upstream), kept for the whole association; or
   * directly. HTTP upstreams and chains cannot carry UDP.
   */
  async openUdp(opts: UdpOpenOptions, route: EgressRoute): Promise<{ egress: UdpEgress; choice?: ExitChoice }> {
    const name = this.poolName(route, '*');
    if (name instanceof Failure) throw name;
    return this.openUdpThrough(name, opts, route);
  }

  /**
   * UDP through pool `name` (undefined: directly), as `openUdp` opens it: the association's
   * datagrams to hosts a routing rule sends to another pool go through an egress of that
   * pool, opened by this when the first of them comes (forward/socks/socks5-udp-relay.ts).
   */
  async openUdpThrough(name: string | undefined, opts: UdpOpenOptions, route: EgressRoute): Promise<{ egress: UdpEgress; choice?: ExitChoice }> {
    if (name === undefined) return { egress: await this.#directUdp.open(opts) };
    const pool = this.pools.get(name)!;
    if (!pool.exits.some((e) => e.udp)) {
      throw new Failure({ type: 'proxy_configuration_error', phase: 'connect', detail: `pool ${name} has no exit that can carry UDP (address exits or single SOCKS5 upstreams)` });
    }
    const { value, choice } = await this.#through(name, '*', route, async (exit) => {
      if (!exit.udp) throw withScope(new Failure({ type: 'proxy_configuration_error', phase: 'connect', detail: `${exit.label} cannot carry UDP` }), 'skip');
      return exit.udp.open(opts);
    });
    return { egress: value, choice };
  }

  stats(): Record<string, ReturnType<ExitPool['stats']>> {
    const out: Record<string, ReturnType<ExitPool['stats']>> = {};
    for (const [k, p] of this.pools) out[k] = p.stats();
    return out;
  }
}

/** A tunnel's dial sink: also told which exit carried the connection (a pool), when it is not direct. */
export interface TunnelDialSink extends DialSink {
  dialedThrough(socket: Socket, choice: ExitChoice | undefined): void;
}

const NO_HANDLE: DialHandle = { abort(): void {} };

function directDial(socket: Socket): EgressDial {
  return { socket };
}

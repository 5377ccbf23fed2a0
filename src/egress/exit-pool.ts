import { createHash } from 'node:crypto';
import type { Exit } from './exit.js';
import type { ExitFailureScope } from './exit-failure.js';
import { FailureMarker, type CooldownEnd, type FailurePolicy } from './failure-marker.js';
import { SessionTable } from './session-table.js';
import type { SharedState } from '../state/index.js';

/**
 * How a pool picks an exit for a connection or request without a session:
 * `request` (a fresh random exit each time, the default), `random` (weighted random),
 * `round-robin`, `least-used` (fewest open connections, then fewest uses), `hash`
 * (hash of the destination host: one site, one exit), `sticky` (per user, for the
 * session lifetime). A username session id always makes the choice sticky.
 */
export type RotationStrategy = 'request' | 'round-robin' | 'random' | 'least-used' | 'hash' | 'sticky';

export const ROTATION_STRATEGIES: readonly RotationStrategy[] = ['request', 'round-robin', 'random', 'least-used', 'hash', 'sticky'];

export interface ExitPoolOptions {
  name: string;
  strategy: RotationStrategy;
  sessionTtlMs: number;
  sessionIdleMs: number;
  failure: FailurePolicy;
  /** Most exits tried for one connection when the earlier ones fail before anything was sent. */
  maxAttempts: number;
  now?: () => number;
  random?: () => number;
  /** Shared state: sticky sessions and cool-downs hold across workers and nodes. */
  shared?: SharedState;
  /** A cool-down ended (the exit, or the exit for `domain`, is back in service). */
  onCooldownEnd?: CooldownEnd;
}

export interface PickRequest {
  host: string;
  user: string | null;
  /** Username session id: sticky to one exit. */
  session?: string;
  /** Session lifetime asked for in the username (ms); the pool's sessionTtl otherwise. */
  ttlMs?: number;
  /** Exits already tried for this connection. */
  exclude?: ReadonlySet<string>;
}

export interface PickResult {
  exit: Exit;
  /** The session key when sticky. */
  sessionKey?: string;
  /** A live session had to move to another exit (its exit is down or just failed). */
  repinned: boolean;
  /** When re-pinned: the exit the session was pinned to, and why it left it. */
  from?: string;
  why?: string;
}

export interface ExitStats {
  id: string;
  active: number;
  uses: number;
  down: boolean;
}

/** A Hop of exits with a Selector (filter by failure marks, then the strategy). */
export class ExitPool {
  readonly name: string;
  readonly exits: readonly Exit[];
  readonly strategy: RotationStrategy;
  readonly maxAttempts: number;
  readonly marker: FailureMarker;
  readonly sessions: SessionTable;
  readonly #opts: ExitPoolOptions;
  readonly #byId = new Map<string, Exit>();
  readonly #active = new Map<string, number>();
  readonly #uses = new Map<string, number>();
  readonly #random: () => number;
  readonly #shared: SharedState | undefined;
  #rr = 0;

  constructor(exits: Exit[], opts: ExitPoolOptions) {
    if (exits.length === 0) throw new TypeError(`pool ${opts.name} has no exits`);
    this.name = opts.name;
    this.exits = exits;
    this.strategy = opts.strategy;
    this.maxAttempts = opts.maxAttempts;
    this.#opts = opts;
    this.#random = opts.random ?? Math.random;
    this.marker = new FailureMarker(opts.failure, opts.now, opts.onCooldownEnd);
    this.sessions = new SessionTable(opts.now);
    this.#shared = opts.shared;
    // Cool-downs other nodes found: scope is "pool\nexit\ndomain".
    opts.shared?.onCooldown((scope, forMs) => {
      const [pool, exit, domain] = scope.split('\n');
      if (pool === this.name && exit !== undefined && this.#byId.has(exit)) this.marker.coolFor(exit, domain || undefined, forMs);
    });
    for (const e of exits) {
      if (this.#byId.has(e.id)) throw new TypeError(`pool ${opts.name} lists ${e.label} twice`);
      this.#byId.set(e.id, e);
    }
  }

  /** Exits usable for this host now, minus the excluded. */
  candidates(host: string, exclude?: ReadonlySet<string>): Exit[] {
    return this.exits.filter((e) => !exclude?.has(e.id) && this.marker.available(e.id, host));
  }

  /**
   * Choose an exit for a connection (the router's call): `pick`, except that a sticky choice
   * with shared state asks the shared session table (a promise, bounded by the state budget).
   */
  select(req: PickRequest): PickResult | undefined | Promise<PickResult | undefined> {
    if (this.#shared === undefined || (req.session === undefined && this.strategy !== 'sticky')) return this.pick(req);
    return this.#pickShared(this.#shared, `${req.user ?? '-'}|${req.session ?? '*'}`, this.candidates(req.host, req.exclude), req);
  }

  /** Choose an exit from this process's own state; undefined when every exit is excluded or cooling down. */
  pick(req: PickRequest): PickResult | undefined {
    const cands = this.candidates(req.host, req.exclude);
    const sticky = req.session !== undefined || this.strategy === 'sticky';
    if (!sticky) {
      const exit = cands.length ? this.#choose(cands, req.host) : undefined;
      return exit ? { exit, repinned: false } : undefined;
    }
    const key = `${req.user ?? '-'}|${req.session ?? '*'}`;
    const pin = this.sessions.get(key);
    if (pin) {
      const pinned = this.#byId.get(pin.exitId);
      // Cooling down for this destination counts too (a hop that refuses one host is marked per domain).
      if (pinned && !req.exclude?.has(pinned.id) && this.marker.available(pinned.id, req.host)) {
        this.sessions.touch(key);
        return { exit: pinned, sessionKey: key, repinned: false };
      }
    }
    if (cands.length === 0) return undefined;
    const exit = this.#weighted(cands);
    this.sessions.pin(key, exit.id, req.ttlMs ?? this.#opts.sessionTtlMs, this.#opts.sessionIdleMs);
    if (pin === undefined) return { exit, sessionKey: key, repinned: false };
    const why = !this.#byId.has(pin.exitId)
      ? 'its exit is no longer in the pool'
      : req.exclude?.has(pin.exitId)
        ? 'its exit failed this connection'
        : `its exit is cooling down after failures (${Math.ceil(this.marker.coolingFor(pin.exitId, req.host) / 1000)} s left)`;
    return { exit, sessionKey: key, repinned: true, from: pin.exitId, why };
  }

  /** The sticky pick in the shared table: the pinned exit unless it is unusable here, else a new pin. */
  async #pickShared(shared: SharedState, key: string, cands: Exit[], req: PickRequest): Promise<PickResult | undefined> {
    const candidate = cands.length ? this.#weighted(cands) : undefined;
    const unusable: string[] = [];
    for (const e of this.exits) if (req.exclude?.has(e.id) || this.marker.down(e.id)) unusable.push(e.id);
    const ttlMs = req.ttlMs ?? this.#opts.sessionTtlMs;
    const idleMs = this.#opts.sessionIdleMs;
    const r = shared.sessionPick(`${this.name}:${key}`, candidate?.id ?? '', unusable, ttlMs, idleMs);
    const got = r instanceof Promise ? await r : r;
    if (got === undefined) return undefined;
    // An exit this node does not know (another node's config differs): the local candidate.
    const exit = this.#byId.get(got.exitId) ?? candidate;
    if (exit === undefined) return undefined;
    // Mirrored locally for the admin API's session list.
    this.sessions.pin(key, exit.id, ttlMs, idleMs);
    return { exit, sessionKey: key, repinned: got.repinned };
  }

  #choose(cands: Exit[], host: string): Exit {
    switch (this.strategy) {
      case 'round-robin': {
        // Walk the full list so skipping a cooled exit does not shift the others.
        for (let i = 0; i < this.exits.length; i++) {
          const e = this.exits[this.#rr++ % this.exits.length]!;
          if (cands.includes(e)) return e;
        }
        return cands[0]!;
      }
      case 'least-used': {
        let best = cands[0]!;
        for (const e of cands) {
          const a = this.#active.get(e.id) ?? 0;
          const b = this.#active.get(best.id) ?? 0;
          if (a < b || (a === b && (this.#uses.get(e.id) ?? 0) < (this.#uses.get(best.id) ?? 0))) best = e;
        }
        return best;
      }
      case 'hash': {
        // Rendezvous hashing: the same host keeps its exit while that exit is usable.
        let best = cands[0]!;
        let bestScore = -1;
        for (const e of cands) {
          const score = createHash('sha1').update(`${host.toLowerCase()}|${e.id}`).digest().readUInt32BE(0);
          if (score > bestScore) {
            bestScore = score;
            best = e;
          }
        }
        return best;
      }
      default:
        return this.#weighted(cands);
    }
  }

  #weighted(cands: Exit[]): Exit {
    let total = 0;
    for (const e of cands) total += e.weight;
    let r = this.#random() * total;
    for (const e of cands) {
      r -= e.weight;
      if (r < 0) return e;
    }
    return cands[cands.length - 1]!;
  }

  /** A connection through the exit opened: count it until `release`. */
  opened(exit: Exit): () => void {
    this.#active.set(exit.id, (this.#active.get(exit.id) ?? 0) + 1);
    this.#uses.set(exit.id, (this.#uses.get(exit.id) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#active.set(exit.id, Math.max(0, (this.#active.get(exit.id) ?? 1) - 1));
    };
  }

  succeeded(exit: Exit, host: string): void {
    this.marker.succeed(exit.id, host);
  }

  /** Count a failure by its scope; true when the exit (or exit+domain) started cooling down. */
  failed(exit: Exit, host: string, scope: ExitFailureScope): boolean {
    if (scope === 'skip' || scope === 'none') return false;
    const domain = scope === 'domain' ? host : undefined;
    const cooled = this.marker.fail(exit.id, domain);
    // Tell the other nodes, so one node's discovery spares them the failed tries.
    if (cooled && this.#shared !== undefined) this.#shared.publishCooldown(`${this.name}\n${exit.id}\n${domain?.toLowerCase() ?? ''}`, this.marker.remaining(exit.id, domain));
    return cooled;
  }

  /** Shortest time until some exit becomes usable for the host again (ms). */
  retryAfterMs(host: string): number {
    let best = Infinity;
    for (const e of this.exits) best = Math.min(best, this.marker.coolingFor(e.id, host));
    return best === Infinity ? 0 : best;
  }

  stats(): ExitStats[] {
    return this.exits.map((e) => ({ id: e.id, active: this.#active.get(e.id) ?? 0, uses: this.#uses.get(e.id) ?? 0, down: this.marker.down(e.id) }));
  }
}

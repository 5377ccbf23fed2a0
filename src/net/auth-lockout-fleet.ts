import type { AuthLockout, AuthLockoutSettings } from './auth-lockout.js';

/**
 * One wrong-credential count for a fleet of nodes sharing Redis (net/auth-lockout.ts). Each
 * node counted on its own before: a guesser whose connections a balancer spread over K nodes
 * had K × maxFailures guesses, and a lockout on one node did not refuse the address on another.
 *
 * - A node's limiter hands each wrong credential to Redis (`FleetLockoutStore.lockoutFailed`,
 *   one Lua script in `state/redis-store.ts`), unless the address is locked out in its own
 *   table already. Only a wrong credential goes there: a right one from an address that is not
 *   locked out is judged from the node's own table (one field test), no Redis round trip.
 * - Redis counts it in the address's window, with the settings the node sent; at maxFailures
 *   it locks the address out and publishes the lockout on its channel (in the same script).
 *   The node whose wrong credential tripped it logs and publishes it (once in the fleet); every
 *   other node hears it (`onLockout`) and refuses the address from its own table.
 * - Redis lists the lockouts in force (`<prefix>lockouts`, by end time, at most
 *   LOCKOUTS_KEPT). A node reads the list when a limiter joins (a node starting waits for it,
 *   bounded by `state.timeout`, before it listens: `learned`) and each time its subscription is
 *   made again, so a lockout published while it could not hear (it started later, or its
 *   subscriber was reconnecting) is refused before the address's next attempt, a right
 *   credential too. A wrong credential from an address Redis holds locked out is also answered
 *   with what is left of the lockout, and the node takes it then.
 * - Redis back after an outage: the lockouts this node's limiters decided alone meanwhile (or
 *   heard from their group) and still in force are handed to Redis (`lockoutImpose`, one script
 *   each), which keeps and publishes those it did not hold until as late, so every node refuses
 *   them too. Counts below maxFailures taken meanwhile are not handed on: the fleet's count of
 *   such an address starts from Redis's (docs/fleet.md says why).
 * - Redis away or slow: the wait is bounded by `state.timeout` and the node's shared state
 *   turns degraded (`FleetAsk`, SharedState.read: one warning line, which names the lockout
 *   counts); the wrong credential is then counted by the node itself (in a `--workers` node,
 *   by its group's primary: net/auth-lockout-group.ts), as every one after it until Redis
 *   answers again. Lockouts never stop, and nobody is refused for it.
 *
 * In a `--workers N` node every worker has its own Redis client (the state is per worker with
 * Redis) and talks to Redis itself; the primary has none. So one place talks to Redis per
 * wrong credential, the worker that checked it, with no IPC hop before it, and every worker
 * hears a lockout on its own subscription. The group's primary counts only while Redis is away.
 *
 * What holds: a lockout reaches every node within one Redis round trip plus the pub/sub
 * delivery after the wrong credential that tripped it; checks in flight meanwhile answer as
 * they would have, so the fleet gives at most maxFailures plus the checks in flight then.
 */

/** A lockout as the store tells it (`Store`'s LockoutNews). */
interface FleetLockoutNews {
  name: string;
  key: string;
  address: string;
  ms: number;
  strike: number;
  failures: number;
  lastLockoutMs?: number;
}

/** What the fleet needs of a shared store (`RedisStore`). */
export interface FleetLockoutStore {
  lockoutFailed(name: string, key: string, address: string, settings: AuthLockoutSettings): Promise<{ ms: number; strike: number; lastLockoutMs: number; failures: number; tripped: boolean }>;
  onLockout(listener: (news: FleetLockoutNews) => void): void;
  lockoutsInForce?(): Promise<FleetLockoutNews[]>;
  lockoutImpose?(name: string, key: string, address: string, lockout: { ms: number; lastLockoutMs: number; strike: number }, settings: AuthLockoutSettings): Promise<boolean>;
  onLockoutSubscribed?(listener: () => void): void;
  onReachable?(listener: () => void): void;
}

/** The store's answer within the budget, else `fallback()` at once (SharedState.read): a value, not a promise, when the store is not asked. */
export type FleetAsk = <T>(remote: () => Promise<T>, fallback: () => T) => T | Promise<T>;

const NOT_ASKED = (): undefined => undefined;

export class LockoutFleet {
  readonly #store: FleetLockoutStore;
  readonly #ask: FleetAsk;
  /** This node's limiters by name (`forward`, `admin`: the same on every node). */
  readonly #members = new Map<string, Set<AuthLockout>>();
  /** The last read of the lockouts in force, settled. */
  #learning: Promise<void> = Promise.resolve();

  constructor(store: FleetLockoutStore, ask: FleetAsk) {
    this.#store = store;
    this.#ask = ask;
    store.onLockout((n) => {
      const set = this.#members.get(n.name);
      if (set !== undefined) for (const l of set) l.lockedByGroup(n.key, n.address, n.ms, n.strike, n.failures, false, n.ms);
    });
    // Subscribed again: what was published meanwhile was not heard.
    store.onLockoutSubscribed?.(() => void this.#learn());
    // Redis back (SharedState, whose listener runs first, has recovered): hand it the lockouts decided here meanwhile, then read its own.
    store.onReachable?.(() => void this.#rejoin());
  }

  /** Settled once the lockouts in force that the last `join` asked for are in the limiters' tables (or Redis did not answer within the budget). */
  learned(): Promise<void> {
    return this.#learning;
  }

  /** Read the lockouts in force and take each into the members of its name (never shortening one a member holds). */
  #learn(): Promise<void> {
    const read = this.#store.lockoutsInForce;
    if (read === undefined || this.#members.size === 0) return Promise.resolve();
    const r = this.#ask(() => read.call(this.#store), NOT_ASKED);
    return (this.#learning = Promise.resolve(r).then(
      (list) => {
        for (const n of list ?? []) {
          const set = this.#members.get(n.name);
          if (set !== undefined) for (const l of set) if (l.keyLockedFor(n.key) < n.ms) l.lockedByGroup(n.key, n.address, n.ms, n.strike, 0, false, n.lastLockoutMs ?? n.ms);
        }
      },
      () => {},
    ));
  }

  /** Hand Redis the lockouts in force in the members' tables (decided while it was away), then read the fleet's. */
  async #rejoin(): Promise<void> {
    const impose = this.#store.lockoutImpose;
    if (impose !== undefined) {
      const sent: Array<Promise<unknown>> = [];
      for (const [name, set] of this.#members) {
        for (const l of set) {
          if (l.settings.maxFailures === 0) continue;
          for (const a of l.activeLockouts()) sent.push(Promise.resolve(this.#ask(() => impose.call(this.#store, name, a.key, a.key, a, l.settings), NOT_ASKED)).catch(() => {}));
        }
      }
      await Promise.all(sent);
    }
    await this.#learn();
  }

  /**
   * Count `limiter`'s wrong credentials with the fleet's, under `name` (the face: the same
   * name on every node). Returns a function that leaves (the limiter counts in its group or
   * itself again).
   */
  join(name: string, limiter: AuthLockout): () => void {
    let set = this.#members.get(name);
    if (set === undefined) this.#members.set(name, (set = new Set()));
    set.add(limiter);
    limiter.fleet({ report: (key, address, settings) => this.#report(name, limiter, key, address, settings) });
    void this.#learn();
    return () => {
      set.delete(limiter);
      limiter.fleet(undefined);
    };
  }

  #report(name: string, limiter: AuthLockout, key: string, address: string, settings: AuthLockoutSettings): boolean {
    const r = this.#ask(() => this.#store.lockoutFailed(name, key, address, settings), NOT_ASKED);
    // Not asked (Redis away, between probes): the limiter counts it at once.
    if (!(r instanceof Promise)) return false;
    void r.then((v) => {
      if (v === undefined) limiter.failedAside(key, address);
      else if (v.ms > 0) limiter.lockedByGroup(key, address, v.ms, v.strike, v.failures, v.tripped, v.lastLockoutMs);
    });
    return true;
  }
}

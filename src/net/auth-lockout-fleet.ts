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
 * - A wrong credential from an address Redis holds locked out already (the node missed the
 *   message: it started later, or its subscriber was reconnecting) is answered with what is
 *   left of the lockout, and the node takes it then.
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

/** What the fleet needs of a shared store (`RedisStore`). */
export interface FleetLockoutStore {
  lockoutFailed(name: string, key: string, address: string, settings: AuthLockoutSettings): Promise<{ ms: number; strike: number; lastLockoutMs: number; failures: number; tripped: boolean }>;
  onLockout(listener: (news: { name: string; key: string; address: string; ms: number; strike: number; failures: number }) => void): void;
}

/** The store's answer within the budget, else `fallback()` at once (SharedState.read): a value, not a promise, when the store is not asked. */
export type FleetAsk = <T>(remote: () => Promise<T>, fallback: () => T) => T | Promise<T>;

const NOT_ASKED = (): undefined => undefined;

export class LockoutFleet {
  readonly #store: FleetLockoutStore;
  readonly #ask: FleetAsk;
  /** This node's limiters by name (`forward`, `admin`: the same on every node). */
  readonly #members = new Map<string, Set<AuthLockout>>();

  constructor(store: FleetLockoutStore, ask: FleetAsk) {
    this.#store = store;
    this.#ask = ask;
    store.onLockout((n) => {
      const set = this.#members.get(n.name);
      if (set !== undefined) for (const l of set) l.lockedByGroup(n.key, n.address, n.ms, n.strike, n.failures, false, n.ms);
    });
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

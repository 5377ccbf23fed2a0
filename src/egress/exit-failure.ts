import { Failure } from '../failure/index.js';

/**
 * How far a failure through an exit reaches:
 * - `exit`: the exit itself is broken (cannot reach the upstream proxy, it refused our
 *   credentials, the local address cannot be bound) — marks the whole exit;
 * - `domain`: reaching one destination through this exit failed (refused, timed out,
 *   the upstream proxy answered 502) — marks the exit for that domain only;
 * - `skip`: this exit cannot serve this target (wrong address family) — try another, no mark;
 * - `none`: not the exit's business (destination rules, DNS of a name we resolve) — no retry.
 */
export type ExitFailureScope = 'exit' | 'domain' | 'skip' | 'none';

const scopes = new WeakMap<Failure, ExitFailureScope>();

export function withScope(f: Failure, scope: ExitFailureScope): Failure {
  scopes.set(f, scope);
  return f;
}

export function scopeOf(f: unknown): ExitFailureScope {
  return f instanceof Failure ? (scopes.get(f) ?? 'none') : 'none';
}

/** Which pool and exit a failure happened through, and how many exits were tried before it (for the record). */
export interface FailedEgress {
  pool: string;
  exit: string | undefined;
  retried: number;
  repinned: boolean;
}

const egressFacts = new WeakMap<Failure, FailedEgress>();

/** Remember where a failure through a pool happened (the failure path only: nothing per request on success). */
export function withEgress(f: Failure, facts: FailedEgress): Failure {
  egressFacts.set(f, facts);
  return f;
}

export function egressOf(f: Failure): FailedEgress | undefined {
  return egressFacts.get(f);
}

/**
 * Credit blocks: how much of a shared limit a node takes from the store at once and spends
 * locally, so that most admissions of a busy user ask the store nothing (docs/fleet.md,
 * "Credit blocks").
 *
 * For a limit L (a plan's requestsPerSecond, a sold maxConnections or maxTunnels) the block
 * is b = min(max, floor(L × share)). A node keeps at most b unspent units of each limit per
 * user (rate tokens already counted in the store's GCRA cell, connection slots already
 * recorded as its lease), and asks the store for more (the admissions waiting in this
 * event-loop turn plus enough to hold b again: b spare rate tokens, b lease slots open and spare
 * together) only when it has none left. So:
 *
 * - `requestsPerSecond`: across N nodes, over any interval, the fleet admits at most what one
 *   GCRA cell admits in it plus N × b (tokens taken before the interval, spent in it); a node
 *   may refuse up to N × b sooner (tokens held unspent elsewhere).
 * - `maxConnections` / `maxTunnels`: never more than the limit open (a slot is recorded in the
 *   store before it is used); a node may be refused while up to (N − 1) × b slots are held
 *   unused by other nodes. Unused slots go back when a node holds more than b, and all of them
 *   when the user has not been seen for a heartbeat interval.
 *
 * b = 0 (small limits, or `max: 0`) is exact: every admission asks the store, several of
 * one event-loop turn in one script call.
 */
export interface CreditPolicy {
  /** Largest block (0: no blocks, every admission asks the store). */
  max: number;
  /** The block is at most this share of the limit. */
  share: number;
}

export const DEFAULT_CREDIT: CreditPolicy = { max: 64, share: 0.02 };

/** The block for a limit of `limit` (0: none). */
export function creditBlock(policy: CreditPolicy, limit: number): number {
  if (policy.max <= 0 || !(limit > 0)) return 0;
  return Math.max(0, Math.min(policy.max, Math.floor(limit * policy.share)));
}

/** The documented bound: the most a fleet of `nodes` may admit past one GCRA cell's allowance over any interval, for a limit with block `block`. */
export function rateOvershootBound(nodes: number, block: number): number {
  return nodes * block;
}

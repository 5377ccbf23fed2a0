export interface RetryBudgetOptions {
  /** Retries allowed per original request over the window. Default 0.2 (20%). */
  ratio?: number;
  /** Retries allowed in any one second whatever the traffic, so a quiet cluster can still retry. Default 3. */
  minPerSecond?: number;
  /** Sliding window (ms), kept as one-second buckets. Default 10 s. */
  windowMs?: number;
}

/**
 * Caps retries at `ratio` × requests over the last `windowMs`, and always allows
 * `minPerSecond` retries in each second (the floor is a rate, refilled each second, not a
 * reserve: Finagle deposits minRetriesPerSec × ttl at once, and that whole reserve could be
 * spent in one burst: 20 requests against an outage sent 34 retries in a second). A retry is
 * allowed when it fits under the ratio or under this second's floor; it counts against both.
 * Per-request retry limits alone multiply load exactly when an upstream is failing (3 tries
 * each = 3× traffic into an overloaded server); a budget lets isolated failures be retried
 * while turning a failure storm into fast errors. (Envoy's retry budget bounds retries in
 * flight instead: a share of the active requests, at least `min_retry_concurrency`.)
 *
 * Counts live in a ring of one-second buckets: each call advances the ring by the seconds that
 * passed (bounded by the ring length) and keeps running totals, so every method is O(1) and
 * allocation-free. The window is therefore between windowMs − 1 s and windowMs long.
 *
 * Call `onRequest` for each original request (not for retries), `canRetry` before a retry and
 * `onRetry` when one is sent (or `tryRetry` for both).
 */
export class RetryBudget {
  readonly #ratio: number;
  /** Retries always allowed in one second. */
  readonly #floor: number;
  readonly #requests: Float64Array;
  readonly #retries: Float64Array;
  #requestTotal = 0;
  #retryTotal = 0;
  /** The second (since epoch) the newest bucket stands for; -1 before the first call. */
  #second = -1;

  constructor(opts: RetryBudgetOptions = {}) {
    const buckets = Math.max(1, Math.ceil((opts.windowMs ?? 10_000) / 1000));
    this.#ratio = opts.ratio ?? 0.2;
    this.#floor = opts.minPerSecond ?? 3;
    this.#requests = new Float64Array(buckets);
    this.#retries = new Float64Array(buckets);
  }

  onRequest(now: number): void {
    this.#requests[this.#advance(now)]! += 1;
    this.#requestTotal++;
  }

  canRetry(now: number): boolean {
    const i = this.#advance(now);
    // Whole retries only: one more must still fit under the ratio or this second's floor.
    return this.#retryTotal + 1 <= this.#ratio * this.#requestTotal + 1e-9 /* 0.57 × 100 = 56.99999999999999 */ || this.#retries[i]! + 1 <= this.#floor;
  }

  onRetry(now: number): void {
    this.#retries[this.#advance(now)]! += 1;
    this.#retryTotal++;
  }

  /** `canRetry` and, when it allows, `onRetry`. */
  tryRetry(now: number): boolean {
    if (!this.canRetry(now)) return false;
    this.onRetry(now);
    return true;
  }

  /** Retries allowed now: what the ratio leaves in the window, or this second's floor (for metrics and tests). */
  remaining(now: number): number {
    const i = this.#advance(now);
    return Math.max(0, Math.floor(this.#ratio * this.#requestTotal + 1e-9 - this.#retryTotal), Math.floor(this.#floor - this.#retries[i]!));
  }

  /** Index of the current second's bucket, after clearing the buckets of seconds that passed. */
  #advance(now: number): number {
    const n = this.#requests.length;
    const s = Math.floor(now / 1000);
    if (this.#second < 0) this.#second = s;
    // A clock step backwards counts into the newest bucket rather than corrupting older ones.
    if (s > this.#second) {
      const steps = Math.min(s - this.#second, n);
      for (let k = 1; k <= steps; k++) {
        const i = (this.#second + k) % n;
        this.#requestTotal -= this.#requests[i]!;
        this.#retryTotal -= this.#retries[i]!;
        this.#requests[i] = 0;
        this.#retries[i] = 0;
      }
      this.#second = s;
    }
    return this.#second % n;
  }
}

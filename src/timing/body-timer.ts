import { DeadlineEntry, deadlines } from './deadlines.js';

/** What a request body timer serves: the reader of a client's request body. */
export interface BodyTimerOwner {
  /** The client is too slow: `detail` says how (no byte for the gap timeout, or below the minimum rate). */
  bodyStalled(detail: string): void;
}

/** The client-body limits, in ms and bytes per second (0: off). */
export interface ClientBodyLimits {
  /** Longest gap between two reads of the request body (nginx `client_body_timeout`). */
  gapMs: number;
  /**
   * Lowest average rate once the gap time has passed (Apache mod_reqtimeout's `MinRate`):
   * the body may take `gapMs + bytes / minRate` in all, so a trickle that beats the gap
   * timer (one byte a second against a 30 s gap) is still cut.
   */
  minRate: number;
}

/**
 * The wait for a client's request body, on the process deadline list (./deadlines.ts):
 * at most `gapMs` between two body bytes, and on average at least `minRate` bytes a second
 * after a grace of `gapMs`. Bytes only stamp the time (`progress`); the deadline checks the
 * stamp when it is reached and waits on for what is left, so a moving upload costs no timer
 * work per chunk.
 *
 * Time the gateway is not reading is not the client's: while `held` (the reader paused the
 * body because the upstream does not take it: backpressure) neither wait runs, and on
 * `release` the gap starts again and the held time is taken off the rate's clock.
 */
export class BodyTimer extends DeadlineEntry {
  readonly #owner: BodyTimerOwner;
  readonly #gapMs: number;
  readonly #minRate: number;
  #startedAt = 0;
  #heldAt = 0;
  /** performance.now() of the last body byte (or of the start, or of the release). */
  lastAt = 0;
  bytes = 0;
  held = false;

  constructor(owner: BodyTimerOwner, limits: ClientBodyLimits) {
    super();
    this.#owner = owner;
    this.#gapMs = limits.gapMs;
    this.#minRate = limits.minRate;
  }

  /** Whether these limits time anything (a gap timeout of 0 turns both off). */
  static active(limits: ClientBodyLimits): boolean {
    return limits.gapMs > 0;
  }

  /** Start timing: the reader wants the body from now on. */
  start(now: number): void {
    this.#startedAt = this.lastAt = now;
    this.held = false;
    if (this.#gapMs > 0) deadlines.add(this, now, this.#gapMs);
  }

  /** `n` body bytes came. */
  progress(n: number, now: number): void {
    this.bytes += n;
    this.lastAt = now;
  }

  /** The reader stopped taking the body (the upstream's buffer is full): the client is not late. */
  hold(now: number): void {
    if (this.held) return;
    this.held = true;
    this.#heldAt = now;
  }

  /** The reader wants the body again: the gap starts afresh, the held time is off the rate's clock. */
  release(now: number): void {
    if (!this.held) return;
    this.held = false;
    this.#startedAt += now - this.#heldAt;
    this.lastAt = now;
    // The wait armed while held may end after the rate's deadline: wake for the earlier.
    const rate = this.#minRate;
    if (rate > 0 && !Number.isNaN(this.deadlineAt)) {
      const due = this.#startedAt + this.#gapMs + (this.bytes * 1000) / rate;
      if (due < this.deadlineAt) deadlines.add(this, now, Math.max(0, due - now));
    }
  }

  stop(): void {
    deadlines.remove(this);
  }

  deadlineReached(now: number): void {
    const gapMs = this.#gapMs;
    if (this.held) {
      deadlines.add(this, now, gapMs);
      return;
    }
    // Due within a nanosecond counts as due: a re-arm at the due time may miss it by an ulp.
    const gap = now - this.lastAt;
    if (gap + 1e-6 >= gapMs) {
      this.#owner.bodyStalled(`the client stopped sending the request body (no byte for ${gapMs} ms)`);
      return;
    }
    let wait = gapMs - gap;
    const rate = this.#minRate;
    if (rate > 0) {
      const allowed = gapMs + (this.bytes * 1000) / rate;
      const elapsed = now - this.#startedAt;
      if (elapsed + 1e-6 >= allowed) {
        this.#owner.bodyStalled(`the client stopped sending the request body (${this.bytes} bytes in ${Math.round(elapsed)} ms, below the minimum of ${rate} bytes/s)`);
        return;
      }
      if (allowed - elapsed < wait) wait = allowed - elapsed;
    }
    deadlines.add(this, now, wait);
  }
}

import { DeadlineEntry, Deadlines } from '../timing/deadlines.js';

/**
 * Failure markers of a pool's exits (gost: each Node carries one). Failures count up;
 * at `threshold` consecutive failures the exit (or the exit for one domain) cools
 * down for `cooldownMs`, doubling each time it trips again, up to `maxCooldownMs`.
 * A success resets the count and the back-off. The end of each cool-down is reported
 * (`onEnd`) when it comes, whether or not traffic asks for the exit then.
 */
export interface FailurePolicy {
  threshold: number;
  cooldownMs: number;
  maxCooldownMs: number;
}

/** A mark is also its cool-down's deadline entry: no timer or closure per cool-down. */
class Mark extends DeadlineEntry {
  failures = 0;
  trips = 0;
  until = 0;
  /** When the cool-down that is running began (extensions continue it), on the marker's clock. */
  since = 0;
  readonly #marker: FailureMarker;
  readonly exit: string;
  readonly domain: string | undefined;

  constructor(marker: FailureMarker, exit: string, domain: string | undefined) {
    super();
    this.#marker = marker;
    this.exit = exit;
    this.domain = domain;
  }

  deadlineReached(now: number): void {
    this.#marker.cooldownDue(this, now);
  }
}

/** How a cool-down ended: which exit (and domain), and how long it was set for. */
/** `forMs`: how long it lasted, from its start to its end (or to the success that ended it early). */
export type CooldownEnd = (exit: string, domain: string | undefined, forMs: number) => void;

/**
 * Cool-down ends of every marker: minutes-long deadlines, kept out of the process's list
 * of per-request deadlines so its sweeps do not walk them.
 */
const cooldownEnds = new Deadlines(100);

const MAX_DOMAIN_MARKS = 10_000;

export class FailureMarker {
  readonly #policy: FailurePolicy;
  readonly #now: () => number;
  readonly #marks = new Map<string, Mark>();
  readonly #onEnd: CooldownEnd | undefined;

  constructor(policy: FailurePolicy, now: () => number = Date.now, onEnd?: CooldownEnd) {
    this.#policy = policy;
    this.#now = now;
    this.#onEnd = onEnd;
  }

  #key(exit: string, domain?: string): string {
    return domain === undefined ? exit : `${exit}\0${domain.toLowerCase()}`;
  }

  /** The mark of `k`, made when there is none (the oldest dropped beyond MAX_DOMAIN_MARKS). */
  #mark(k: string, exit: string, domain: string | undefined): Mark {
    let m = this.#marks.get(k);
    if (!m) {
      if (this.#marks.size >= MAX_DOMAIN_MARKS) {
        const oldest = this.#marks.keys().next();
        if (!oldest.done) this.#drop(oldest.value);
      }
      m = new Mark(this, exit, domain);
      this.#marks.set(k, m);
    }
    return m;
  }

  /** Forget a mark. A cool-down it still ran ends here (a success, or the end not yet swept): reported now. */
  #drop(k: string): void {
    const m = this.#marks.get(k);
    if (m === undefined) return;
    this.#marks.delete(k);
    if (!Number.isNaN(m.deadlineAt)) {
      cooldownEnds.remove(m);
      this.#onEnd?.(m.exit, m.domain, Math.min(m.until, this.#now()) - m.since);
    }
  }

  /**
   * Cool `m` down until `until`, computed by the caller from `now`; its end is reported when it
   * comes. One clock reading for both: a second one could fall in the next millisecond and
   * report a 302 ms cool-down as 301 (state-changes.test finding).
   */
  #coolUntil(m: Mark, until: number, now: number): void {
    m.until = until;
    if (this.#onEnd === undefined) return;
    if (Number.isNaN(m.deadlineAt)) m.since = now;
    cooldownEnds.add(m, performance.now(), until - now);
  }

  /** A mark's end deadline passed (on the timer's clock): report the end once this marker's clock agrees. */
  cooldownDue(m: Mark, at: number): void {
    const left = m.until - this.#now();
    if (left > 0) cooldownEnds.add(m, at, left);
    else this.#onEnd?.(m.exit, m.domain, m.until - m.since);
  }

  /** Count a failure; returns true when this failure started a cool-down. */
  fail(exit: string, domain?: string): boolean {
    const k = this.#key(exit, domain);
    const m = this.#mark(k, exit, domain);
    m.failures++;
    if (m.failures >= this.#policy.threshold) {
      const p = this.#policy;
      const ms = Math.min(p.maxCooldownMs, p.cooldownMs * 2 ** m.trips);
      m.trips++;
      m.failures = 0;
      const now = this.#now();
      // A trip never shortens a cool-down already running (one shared by another node, or a
      // longer earlier trip): a failure must not make an exit usable sooner.
      if (now + ms > m.until) this.#coolUntil(m, now + ms, now);
      return true;
    }
    return false;
  }

  /** A success through the exit (for the domain): forget its failures. */
  succeed(exit: string, domain?: string): void {
    this.#drop(this.#key(exit, domain));
    if (domain !== undefined) {
      const whole = this.#marks.get(exit);
      if (whole && whole.until <= this.#now()) this.#drop(exit);
    }
  }

  /** Milliseconds left of the cool-down of exactly this mark (the exit, or the exit for one domain); 0 when none. */
  remaining(exit: string, domain?: string): number {
    const m = this.#marks.get(this.#key(exit, domain));
    return m ? Math.max(0, m.until - this.#now()) : 0;
  }

  /** Another node (or worker) found this exit (for the domain) dead: cool it down here too, for `forMs`. */
  coolFor(exit: string, domain: string | undefined, forMs: number): void {
    const k = this.#key(exit, domain);
    const m = this.#mark(k, exit, domain);
    const now = this.#now();
    const until = now + forMs;
    if (until > m.until) this.#coolUntil(m, until, now);
  }

  /** Whether the exit is cooling down as a whole. */
  down(exit: string): boolean {
    const m = this.#marks.get(exit);
    return m !== undefined && m.until > this.#now();
  }

  /** Whether the exit may be used for this domain now. */
  available(exit: string, domain?: string): boolean {
    if (this.down(exit)) return false;
    if (domain === undefined) return true;
    const m = this.#marks.get(this.#key(exit, domain));
    return !(m && m.until > this.#now());
  }

  /** Milliseconds until the exit's whole-exit cool-down ends (0 when none). */
  coolingFor(exit: string, domain?: string): number {
    const a = this.#marks.get(exit)?.until ?? 0;
    const b = domain !== undefined ? (this.#marks.get(this.#key(exit, domain))?.until ?? 0) : 0;
    return Math.max(0, Math.max(a, b) - this.#now());
  }
}

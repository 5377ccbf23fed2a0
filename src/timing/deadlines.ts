/**
 * Deadlines for short-lived work, kept in one list and served by one Node timer.
 *
 * Why not a `setTimeout` per deadline: Node keeps one timer list per duration and tears the
 * list down when its last timer is cleared. A proxied request lives well under a millisecond
 * on loopback, so with a few dozen requests in flight the list for "30 s" empties and refills
 * thousands of times a second, and each arm then allocates a list, pushes it on the priority
 * queue and restarts the libuv timer. Profiled under `wrk -c50`, arming and clearing two
 * timers per request cost ~5–6 µs of ~160 µs. undici's FastTimer avoids the churn with a
 * 1 s tick, but its cleared timers stay in its list until that tick, and its precision is
 * half a second.
 *
 * Here arming is linking the entry at the tail of an intrusive list and disarming is
 * unlinking it: no allocation, no timer call. The single timer wakes at the earliest deadline
 * seen at the last sweep (never more often than `resolutionMs`); a sweep walks the list once,
 * takes out what is due and re-arms for the rest. A deadline that is earlier than the timer's
 * wake (a shorter timeout than any in the list) moves the wake forward. Deadlines fire on
 * time, late by at most `resolutionMs` when sweeps are coalesced or the event loop is busy.
 */

/** Something with a deadline: the list's links live on the object itself. */
export interface Timed {
  /** When it is due, on the `performance.now()` clock; NaN while not in a list. */
  deadlineAt: number;
  deadlinePrev: Timed | undefined;
  deadlineNext: Timed | undefined;
  /** The deadline passed. The entry is out of the list; it may add itself again. */
  deadlineReached(now: number): void;
}

/** A base for deadline entries: the list's links as fields, the reaction left to the subclass. */
export abstract class DeadlineEntry implements Timed {
  deadlineAt = NaN;
  deadlinePrev: Timed | undefined = undefined;
  deadlineNext: Timed | undefined = undefined;
  abstract deadlineReached(now: number): void;
}

/** The longest delay Node's timers take (2^31 − 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class Deadlines {
  readonly resolutionMs: number;
  #head: Timed | undefined;
  #tail: Timed | undefined;
  #size = 0;
  #timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires (Infinity: none armed). */
  #wakeAt = Infinity;
  /** Sweeps done (for tests and diagnostics). */
  sweeps = 0;

  constructor(resolutionMs = 10) {
    this.resolutionMs = resolutionMs;
  }

  get size(): number {
    return this.#size;
  }

  /** Due `ms` after `now` (a `performance.now()` the caller already has). Re-adding moves it. */
  add(e: Timed, now: number, ms: number): void {
    if (!Number.isNaN(e.deadlineAt)) this.remove(e);
    const at = now + ms;
    e.deadlineAt = at;
    e.deadlineNext = undefined;
    const tail = this.#tail;
    e.deadlinePrev = tail;
    if (tail === undefined) this.#head = e;
    else tail.deadlineNext = e;
    this.#tail = e;
    this.#size++;
    if (at + this.resolutionMs < this.#wakeAt) this.#wake(at, now);
  }

  /** Take it out; nothing happens if it is not in. */
  remove(e: Timed): void {
    if (Number.isNaN(e.deadlineAt)) return;
    const { deadlinePrev: prev, deadlineNext: next } = e;
    if (prev === undefined) this.#head = next;
    else prev.deadlineNext = next;
    if (next === undefined) this.#tail = prev;
    else next.deadlinePrev = prev;
    e.deadlinePrev = e.deadlineNext = undefined;
    e.deadlineAt = NaN;
    this.#size--;
  }

  #wake(at: number, now: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    // At most Node's longest timer (~24.8 days): it turns a longer delay into 1 ms, and the
    // sweep then re-armed it every millisecond (finding, session 29: a `1000h` timeout spun a
    // core and wrote a TimeoutOverflowWarning per turn). Woken early, the sweep re-arms for the rest.
    const delay = Math.min(MAX_TIMER_MS, Math.max(this.resolutionMs, Math.ceil(at - now)));
    this.#wakeAt = now + delay;
    // Unref'd: pending deadlines alone do not keep the process alive (their sockets do).
    this.#timer = setTimeout(sweep, delay, this).unref();
  }

  /** Fire what is due, and arm the timer for the earliest of the rest. */
  sweep(): void {
    this.#timer = undefined;
    this.#wakeAt = Infinity;
    this.sweeps++;
    // libuv's clock is cached per loop turn, so the timer may run a hair before the deadline.
    const now = performance.now();
    const dueBy = now + 1;
    let due: Timed[] | undefined;
    let next = Infinity;
    for (let e = this.#head; e !== undefined; ) {
      const following = e.deadlineNext;
      if (e.deadlineAt <= dueBy) {
        this.remove(e);
        (due ??= []).push(e);
      } else if (e.deadlineAt < next) {
        next = e.deadlineAt;
      }
      e = following;
    }
    if (next !== Infinity) this.#wake(next, now);
    // Callbacks last: they may add, remove or re-add any entry.
    if (due !== undefined) for (const e of due) e.deadlineReached(now);
  }
}

function sweep(d: Deadlines): void {
  d.sweep();
}

/** The process's deadline list. */
export const deadlines = new Deadlines();

/**
 * A deadline with a callback, for the places that want a cancellable timeout rather than
 * an object of their own in the list (a handshake, a DNS wait, a connect through a proxy).
 * On the process list like every short-lived deadline: no Node timer per use.
 */
export class Timeout extends DeadlineEntry {
  readonly #fn: () => void;
  readonly #ms: number;

  constructor(fn: () => void, ms: number, now = performance.now()) {
    super();
    this.#fn = fn;
    this.#ms = ms;
    deadlines.add(this, now, ms);
  }

  deadlineReached(): void {
    this.#fn();
  }

  /** Start the wait again from now. */
  refresh(now = performance.now()): void {
    deadlines.add(this, now, this.#ms);
  }

  cancel(): void {
    deadlines.remove(this);
  }
}

/** Call `fn` once `ms` have passed, unless cancelled; `ms` ≤ 0 means never (undefined). */
export function timeout(fn: () => void, ms: number): Timeout | undefined {
  return ms > 0 ? new Timeout(fn, ms) : undefined;
}

interface Destroyable {
  destroy(): void;
  readonly destroyed: boolean;
}

class Linger extends DeadlineEntry {
  readonly #target: Destroyable;

  constructor(target: Destroyable) {
    super();
    this.#target = target;
  }

  deadlineReached(): void {
    if (!this.#target.destroyed) this.#target.destroy();
  }
}

/** How long a peer whose connection was answered and ended on our side may take to close it (`destroyAfter`). */
export const CLOSE_LINGER_MS = 2000;

/**
 * After an answer was written with `end()`, give the peer `ms` to read it and close, then
 * destroy the socket: a client that never reads must not hold it. Every refusal that ends a
 * connection uses this one.
 */
export function destroyAfter(target: Destroyable, ms: number): void {
  if (target.destroyed) return;
  deadlines.add(new Linger(target), performance.now(), ms);
}

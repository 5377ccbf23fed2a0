import { channel } from 'node:diagnostics_channel';

export const LIMIT_CHANNEL = 'gatewise:upstream:limit';
const limitChannel = channel(LIMIT_CHANNEL);

/** Published on `gatewise:upstream:limit` when an adaptive limit changes (and it has subscribers). */
export interface LimitEvent {
  cluster?: string;
  limit: number;
  previous: number;
  /** Requests in flight after the release that moved it. */
  inflight: number;
  /** The latency (ms) of the sample that moved it. */
  latencyMs: number;
  /** What moved it, as a code (`LimitCause`) and in plain words. */
  cause: LimitCause;
  reason: string;
}

/**
 * What moved an adaptive limit. aimd: `drop` (a request timed out, was refused or the
 * upstream was overloaded), `latency` (a latency above the target), `grow` (limit-many
 * successes while the limit was in use). gradient: `drop` (a drop in the window: halved),
 * `gradient` (the window's RTT against the no-load RTT), `probe` (dropped to √limit to
 * measure the no-load RTT afresh).
 */
export type LimitCause = 'drop' | 'latency' | 'grow' | 'gradient' | 'probe';

/** Rejection of a queued request that waited `queueTimeoutMs` without getting a slot. */
export class QueueTimeoutError extends Error {
  readonly code = 'GATEWISE_QUEUE_TIMEOUT';
  readonly waitedMs: number;
  constructor(waitedMs: number) {
    super(`waited ${Math.round(waitedMs)} ms in the admission queue without a free slot`);
    this.name = 'QueueTimeoutError';
    this.waitedMs = waitedMs;
  }
}

export interface AdaptiveOptions {
  /**
   * 'aimd': +1 per limit-many successes while the limit is in use; ×0.9 on a drop (timeout,
   * overload) or a latency above `targetLatencyMs`, at most once per limit-many samples.
   * 'gradient': limit × (no-load RTT ÷ recent RTT) + √limit, per window of 10 samples
   * (Netflix concurrency-limits' GradientLimit).
   */
  kind: 'aimd' | 'gradient';
  min: number;
  max: number;
  initial: number;
  /** aimd: latency above this is an overload signal. Without it only drops are. */
  targetLatencyMs?: number;
}

export interface AdmissionOptions {
  /** Hard cap on requests in flight; undefined = none (an adaptive limit still applies). */
  maxConcurrent: number | undefined;
  /** Requests that may wait for a slot; beyond that `acquire` answers 'full' at once. */
  maxQueued: number;
  queueTimeoutMs: number;
  adaptive?: AdaptiveOptions;
  /** Named in limit events. */
  cluster?: string;
}

/** Estimates how many requests the upstream can take at once from what came back. */
interface LimitEstimator {
  readonly limit: number;
  /** What moved the estimate last (read only when the limit changed). */
  readonly cause: LimitCause;
  /** The figures behind `cause`, in plain words. */
  explain(latencyMs: number): string;
  /** One finished request: its latency, whether it was dropped, and the inflight count it finished with. */
  sample(latencyMs: number, dropped: boolean, inflight: number): void;
}

/** Multiplicative decrease factor, as in TCP Reno's gentler cousins and Netflix's AIMDLimit. */
const AIMD_BACKOFF = 0.9;

class AimdLimit implements LimitEstimator {
  readonly #min: number;
  readonly #max: number;
  readonly #target: number;
  #estimate: number;
  #successes = 0;
  cause: LimitCause = 'grow';
  /** Samples to ignore after a decrease: those requests were admitted under the old limit. */
  #cooldown = 0;

  constructor(o: AdaptiveOptions) {
    this.#min = o.min;
    this.#max = o.max;
    this.#target = o.targetLatencyMs ?? Infinity;
    this.#estimate = clamp(o.initial, o.min, o.max);
  }

  get limit(): number {
    return Math.floor(this.#estimate);
  }

  sample(latencyMs: number, dropped: boolean, inflight: number): void {
    if (this.#cooldown > 0) this.#cooldown--;
    if (dropped || latencyMs > this.#target) {
      if (this.#cooldown > 0) return;
      this.cause = dropped ? 'drop' : 'latency';
      this.#estimate = Math.max(this.#min, this.#estimate * AIMD_BACKOFF);
      this.#cooldown = Math.floor(this.#estimate);
      this.#successes = 0;
      return;
    }
    // Only grow when the limit is actually used: an idle cluster's limit says nothing about capacity.
    if (inflight * 2 < this.#estimate) return;
    if (++this.#successes >= this.#estimate) {
      this.#successes = 0;
      this.cause = 'grow';
      this.#estimate = Math.min(this.#max, this.#estimate + 1);
    }
  }

  explain(latencyMs: number): string {
    if (this.cause === 'drop') return `a request was dropped (timed out, refused or overloaded): limit ×${AIMD_BACKOFF}`;
    if (this.cause === 'latency') return `latency ${Math.round(latencyMs)} ms above the target ${this.#target} ms: limit ×${AIMD_BACKOFF}`;
    return 'limit-many requests succeeded with the limit in use: limit +1';
  }
}

const GRADIENT_WINDOW = 10;
const GRADIENT_SMOOTHING = 0.2;
/** Windows between probes of the no-load RTT (randomized up to twice as many). */
const GRADIENT_PROBE_WINDOWS = 1000;
/** The first probe comes early: the first windows' RTT was measured under whatever load the initial limit allowed. */
const GRADIENT_FIRST_PROBE_WINDOWS = 20;

class GradientLimit implements LimitEstimator {
  readonly #min: number;
  readonly #max: number;
  #estimate: number;
  #noLoadRtt = Infinity;
  #probeIn = GRADIENT_FIRST_PROBE_WINDOWS;
  /** Samples still to ignore after a probe: requests admitted under the old limit, finishing late. */
  #skip = 0;
  // the current window
  #samples = 0;
  #count = 0;
  #rttSum = 0;
  #maxInflight = 0;
  #dropped = false;
  cause: LimitCause = 'gradient';
  /** The last window's RTT (ms), for `explain`. */
  #lastRtt = 0;

  constructor(o: AdaptiveOptions) {
    this.#min = o.min;
    this.#max = o.max;
    this.#estimate = clamp(o.initial, o.min, o.max);
  }

  get limit(): number {
    return Math.floor(this.#estimate);
  }

  sample(latencyMs: number, dropped: boolean, inflight: number): void {
    if (this.#skip > 0) {
      this.#skip--;
      return;
    }
    if (dropped) this.#dropped = true;
    else {
      this.#rttSum += latencyMs;
      this.#count++;
    }
    if (inflight > this.#maxInflight) this.#maxInflight = inflight;
    if (++this.#samples < GRADIENT_WINDOW) return;
    const rtt = this.#count > 0 ? this.#rttSum / this.#count : 0;
    const didDrop = this.#dropped;
    const maxInflight = this.#maxInflight;
    this.#samples = 0;
    this.#count = 0;
    this.#rttSum = 0;
    this.#maxInflight = 0;
    this.#dropped = false;
    this.#update(rtt, didDrop, maxInflight, inflight);
  }

  #update(rtt: number, didDrop: boolean, maxInflight: number, inflight: number): void {
    const L = this.#estimate;
    const queue = Math.sqrt(L);
    // The no-load RTT is a minimum, which can only fall; from time to time drop the limit low,
    // let the requests admitted under the old limit finish unmeasured (the upstream's queue
    // drains), and measure it afresh. So a permanently slower upstream is not squeezed forever,
    // and an RTT first measured under load (a high initial limit) does not hold the limit high.
    if (--this.#probeIn <= 0) {
      this.#probeIn = nextProbe();
      this.#noLoadRtt = Infinity;
      this.#skip = inflight;
      this.cause = 'probe';
      this.#estimate = clamp(queue, this.#min, this.#max);
      return;
    }
    let next: number;
    this.#lastRtt = rtt;
    this.cause = didDrop ? 'drop' : 'gradient';
    if (didDrop) next = L / 2;
    else {
      if (rtt <= 0) return;
      if (rtt < this.#noLoadRtt) this.#noLoadRtt = rtt;
      if (maxInflight + queue < L) return; // app-limited: no evidence either way
      const gradient = Math.max(0.5, Math.min(1, this.#noLoadRtt / rtt));
      next = L * gradient + queue;
    }
    // Shrink smoothly (one slow window is noise), grow at once (√L per window is already gentle).
    if (next < L) next = L * (1 - GRADIENT_SMOOTHING) + next * GRADIENT_SMOOTHING;
    this.#estimate = clamp(next, this.#min, this.#max);
  }

  explain(): string {
    if (this.cause === 'probe') return 'probe: limit dropped to √limit to measure the no-load round trip afresh';
    if (this.cause === 'drop') return `requests were dropped (timed out, refused or overloaded) in the last ${GRADIENT_WINDOW}: limit halved`;
    return `round trip ${Math.round(this.#lastRtt)} ms over the last ${GRADIENT_WINDOW} requests against ${Math.round(this.#noLoadRtt)} ms with no load`;
  }
}

function nextProbe(): number {
  return GRADIENT_PROBE_WINDOWS + Math.floor(Math.random() * GRADIENT_PROBE_WINDOWS);
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

/** A queued request: the promise's settle functions, its deadline, and (as itself) its abort listener. */
class Waiter implements EventListenerObject {
  resolve: () => void = noop;
  reject: (err: unknown) => void = noop;
  /** Settled (admitted, timed out or aborted): skipped when it reaches the head. */
  done = false;
  constructor(
    readonly enqueuedAt: number,
    readonly deadline: number,
    public signal: AbortSignal | undefined,
    readonly onAbort: (w: Waiter) => void,
  ) {}
  handleEvent(): void {
    this.onAbort(this);
  }
}

/** FIFO ring buffer over an array: O(1) push and shift, grows by doubling, never shrinks. */
class Deque<T> {
  #buf: Array<T | undefined> = new Array(16);
  #head = 0;
  #length = 0;
  get length(): number {
    return this.#length;
  }
  push(v: T): void {
    if (this.#length === this.#buf.length) {
      const old = this.#buf;
      this.#buf = new Array(old.length * 2);
      for (let i = 0; i < this.#length; i++) this.#buf[i] = old[(this.#head + i) % old.length];
      this.#head = 0;
    }
    this.#buf[(this.#head + this.#length) % this.#buf.length] = v;
    this.#length++;
  }
  peek(): T | undefined {
    return this.#length === 0 ? undefined : this.#buf[this.#head];
  }
  shift(): T | undefined {
    if (this.#length === 0) return undefined;
    const v = this.#buf[this.#head];
    this.#buf[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.#buf.length;
    this.#length--;
    return v;
  }
}

const ADMITTED: Promise<void> = Promise.resolve();

/**
 * Per-cluster concurrency limit with a FIFO queue: the gateway's answer to an overloaded
 * upstream. Requests beyond the limit wait (briefly, bounded) instead of piling onto a server
 * that is already slow; beyond the queue they are refused at once with 503 + Retry-After rather
 * than timing out later as 502/504.
 *
 * The limit is `maxConcurrent`, or the adaptive estimate, or the lower of both.
 *
 * Costs: `tryAcquire` and `release` allocate nothing. A queued `acquire` allocates its promise
 * and one waiter object (which is also its abort listener: no closures). All waiters share one
 * queue timeout, so deadlines rise along the queue and a single timer, armed for the head,
 * serves the whole queue. An aborted waiter is marked and skipped when it reaches the head.
 * Time is `performance.now()` (monotonic).
 */
export class Admission {
  readonly #max: number;
  readonly #maxQueued: number;
  readonly #timeoutMs: number;
  readonly #estimator: LimitEstimator | undefined;
  readonly #cluster: string | undefined;
  readonly #queue = new Deque<Waiter>();
  #inflight = 0;
  #queued = 0;
  #limit: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #onTimer = (): void => this.#expire();

  constructor(opts: AdmissionOptions) {
    this.#max = opts.maxConcurrent ?? Infinity;
    this.#maxQueued = Math.max(0, opts.maxQueued);
    this.#timeoutMs = opts.queueTimeoutMs;
    this.#cluster = opts.cluster;
    if (opts.adaptive) this.#estimator = opts.adaptive.kind === 'aimd' ? new AimdLimit(opts.adaptive) : new GradientLimit(opts.adaptive);
    this.#limit = this.#computeLimit();
  }

  get inflight(): number {
    return this.#inflight;
  }
  get queued(): number {
    return this.#queued;
  }
  get limit(): number {
    return this.#limit;
  }

  /** Take a slot if one is free and nobody is waiting (no queue jumping). */
  tryAcquire(): boolean {
    if (this.#queued > 0 || this.#inflight >= this.#limit) return false;
    this.#inflight++;
    return true;
  }

  /**
   * A slot now (an already-resolved promise), a place in the queue (a promise that resolves when
   * a slot is handed over, or rejects with QueueTimeoutError / the signal's reason), or 'full'
   * synchronously when the queue is full. Once it resolves the caller owns a slot and must
   * `release` it.
   */
  acquire(signal?: AbortSignal): Promise<void> | 'full' {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.tryAcquire()) return ADMITTED;
    if (this.#queued >= this.#maxQueued) return 'full';
    const now = performance.now();
    const w = new Waiter(now, now + this.#timeoutMs, signal, this.#onAbort);
    const p = new Promise<void>((resolve, reject) => {
      w.resolve = resolve;
      w.reject = reject;
    });
    signal?.addEventListener('abort', w, { once: true });
    this.#queue.push(w);
    this.#queued++;
    if (this.#timer === undefined) this.#timer = setTimeout(this.#onTimer, this.#timeoutMs);
    return p;
  }

  /**
   * Give a slot back. `latencyMs` and `dropped` (timed out, refused, overloaded) feed the adaptive
   * limit; then the freed slot goes to the oldest waiter.
   */
  release(latencyMs: number, dropped: boolean): void {
    const before = this.#inflight;
    if (before > 0) this.#inflight = before - 1;
    if (this.#estimator !== undefined) {
      this.#estimator.sample(latencyMs, dropped, before);
      const previous = this.#limit;
      this.#limit = this.#computeLimit();
      if (this.#limit !== previous && limitChannel.hasSubscribers) {
        const est = this.#estimator;
        const e: LimitEvent = { limit: this.#limit, previous, inflight: this.#inflight, latencyMs, cause: est.cause, reason: est.explain(latencyMs) };
        if (this.#cluster !== undefined) e.cluster = this.#cluster;
        limitChannel.publish(e);
      }
    }
    this.#drain();
  }

  #drain(): void {
    while (this.#queued > 0 && this.#inflight < this.#limit) {
      const w = this.#queue.shift()!;
      if (w.done) continue;
      this.#settle(w);
      this.#inflight++;
      w.resolve();
    }
    if (this.#queued === 0) this.#clear();
  }

  /** Timer for the head's deadline: reject every waiter past its own, re-arm for the next. */
  #expire(): void {
    this.#timer = undefined;
    const now = performance.now();
    for (let w = this.#queue.peek(); w !== undefined; w = this.#queue.peek()) {
      if (!w.done && w.deadline > now) {
        this.#timer = setTimeout(this.#onTimer, Math.max(1, w.deadline - now));
        return;
      }
      this.#queue.shift();
      if (w.done) continue;
      this.#settle(w);
      w.reject(new QueueTimeoutError(now - w.enqueuedAt));
    }
  }

  /** A waiter leaves the queue count (admitted, timed out or aborted); its slot in the deque is skipped later. */
  #settle(w: Waiter): void {
    w.done = true;
    this.#queued--;
    w.signal?.removeEventListener('abort', w);
    w.signal = undefined;
  }

  /** Abort of a queued waiter; one function per Admission, shared by its waiters. */
  readonly #onAbort = (w: Waiter): void => {
    if (w.done) return;
    const reason = w.signal?.reason;
    this.#settle(w);
    if (this.#queued === 0) this.#clear();
    w.reject(reason);
  };

  #clear(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #computeLimit(): number {
    const a = this.#estimator?.limit ?? Infinity;
    return a < this.#max ? a : this.#max;
  }
}

function noop(): void {}

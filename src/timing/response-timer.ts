import type { Readable } from 'node:stream';
import { errors as undiciErrors } from 'undici';
import { DeadlineEntry, deadlines } from './deadlines.js';

/** What a response timer serves: an upstream request in flight. */
export interface ResponseTimerOwner {
  /** The request body while it is still being sent; undefined once sent, or without one. */
  uploading(): Readable | undefined;
  /** Request body bytes sent so far. */
  uploadedBytes(): number;
  /** Time is up: abort the upstream request with this error (undici's own timeout errors). */
  timedOut(err: Error): void;
}

/**
 * The two upstream waits of one request, on the process deadline list (./deadlines.ts):
 * `headers` (no response head within its timeout) and `body` (no body byte within the idle
 * timeout). Body chunks only stamp `progressAt`; the deadline checks the stamp when it is
 * reached and waits on for what is left, so a streaming response costs no timer work per
 * chunk. A client that does not take the response (`paused`, backpressure) is not the
 * upstream's delay and never times it out.
 *
 * undici's own `headersTimeout`/`bodyTimeout` are set to 0 where this is used: undici swaps
 * a FastTimer per phase per request, and cleared FastTimers live until its next 1 s tick,
 * reach the old generation and made RSS climb ~25 MB between major GCs under load.
 */
export class ResponseTimer extends DeadlineEntry {
  readonly #owner: ResponseTimerOwner;
  #phase: 'headers' | 'body' = 'headers';
  #ms = 0;
  /** Request body bytes sent at the last check of the wait for the head. */
  #sentAtCheck = 0;
  /** performance.now() of the last response body byte. */
  progressAt = 0;
  /** The client's buffer is full: the upstream is held back by us, not slow. */
  paused = false;

  constructor(owner: ResponseTimerOwner) {
    super();
    this.#owner = owner;
  }

  get armed(): boolean {
    return !Number.isNaN(this.deadlineAt);
  }

  get phase(): 'headers' | 'body' {
    return this.#phase;
  }

  /** Wait `ms` for the response head (0: no limit). */
  headers(ms: number, now: number): void {
    this.#sentAtCheck = this.#owner.uploadedBytes();
    this.#start('headers', ms, now);
  }

  /** The head came: wait at most `ms` between body bytes (0: no limit). */
  body(ms: number, now: number): void {
    this.progressAt = now;
    this.paused = false;
    this.#start('body', ms, now);
  }

  /** Start the current wait again in full (an interim response; the request body sent). */
  restart(now: number): void {
    if (this.armed) deadlines.add(this, now, this.#ms);
  }

  stop(): void {
    deadlines.remove(this);
  }

  #start(phase: 'headers' | 'body', ms: number, now: number): void {
    this.#phase = phase;
    this.#ms = ms;
    if (ms > 0) deadlines.add(this, now, ms);
    else deadlines.remove(this);
  }

  /**
   * The wait for the head ran out while the request body is still going up: the wait goes
   * on (it restarts once the body is sent) unless the upstream stopped taking the body
   * (nothing moved since the last check and the buffer towards it is full).
   */
  #stillSending(): boolean {
    const body = this.#owner.uploading();
    if (body === undefined) return false;
    const sent = this.#owner.uploadedBytes();
    const moved = sent !== this.#sentAtCheck;
    this.#sentAtCheck = sent;
    return moved || body.readableLength < body.readableHighWaterMark;
  }

  deadlineReached(now: number): void {
    const ms = this.#ms;
    if (this.#phase === 'headers') {
      if (this.#stillSending()) deadlines.add(this, now, ms);
      else this.#owner.timedOut(new undiciErrors.HeadersTimeoutError());
      return;
    }
    const idle = now - this.progressAt;
    if (this.paused || idle < ms) {
      deadlines.add(this, now, this.paused ? ms : ms - idle);
      return;
    }
    this.#owner.timedOut(new undiciErrors.BodyTimeoutError());
  }
}

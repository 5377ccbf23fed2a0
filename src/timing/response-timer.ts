import type { Readable } from 'node:stream';
import { errors as undiciErrors } from '../http/undici.js';
import { DeadlineEntry, deadlines } from './deadlines.js';

/**
 * The wait for the response head ran out while the upstream had stopped taking the request
 * body (nothing of it moved, the buffer towards it full): it never had the whole request, so
 * this is not a response timeout. The classifier names it `connection_write_timeout` by its code.
 */
export class UpstreamNotReadingError extends Error {
  readonly code = 'GATEWISE_UPSTREAM_NOT_READING';
  override readonly name = 'UpstreamNotReadingError';

  constructor() {
    super('the upstream stopped reading the request body');
  }
}

/** What a response timer serves: an upstream request in flight. */
export interface ResponseTimerOwner {
  /** The request body while it is still being sent; undefined once sent, or without one (absent: a request never has one). */
  uploading?(): Readable | undefined;
  /** Request body bytes sent so far (absent: a request never has a body). */
  uploadedBytes?(): number;
  /** Time is up: abort the upstream request with this error (undici's own timeout errors). */
  timedOut(err: Error): void;
  /** The client has not taken the response for the send timeout: cut it and the upstream request. */
  notReading(detail: string): void;
}

/**
 * The two upstream waits of one request, on the process deadline list (./deadlines.ts):
 * `headers` (no response head within its timeout) and `body` (no body byte within the idle
 * timeout). Body chunks only stamp `progressAt`; the deadline checks the stamp when it is
 * reached and waits on for what is left, so a streaming response costs no timer work per
 * chunk. A client that does not take the response (`paused`, backpressure) is not the
 * upstream's delay and never times it out; it has its own wait instead, the send timeout
 * (`sendMs`, nginx's `send_timeout`, HAProxy's `timeout client`): paused that long, the
 * owner is told (`notReading`) and cuts both sides, so a client that never reads does not
 * hold an upstream connection.
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
  /** When the client's buffer filled (performance.now()). */
  #pausedAt = 0;
  /** Longest wait for a client to take a full buffer (0: no limit); set before the body phase. */
  sendMs = 0;

  constructor(owner: ResponseTimerOwner, sendMs = 0) {
    super();
    this.#owner = owner;
    this.sendMs = sendMs;
  }

  get armed(): boolean {
    return !Number.isNaN(this.deadlineAt);
  }

  get phase(): 'headers' | 'body' {
    return this.#phase;
  }

  /** Wait `ms` for the response head (0: no limit). */
  headers(ms: number, now: number): void {
    this.#sentAtCheck = this.#owner.uploadedBytes?.() ?? 0;
    this.#start('headers', ms, now);
  }

  /** The head came: wait at most `ms` between body bytes (0: no limit). */
  body(ms: number, now: number): void {
    this.progressAt = now;
    this.paused = false;
    this.#start('body', ms, now);
  }

  /** Start the current wait again in full (the request body sent). */
  restart(now: number): void {
    if (this.armed) deadlines.add(this, now, this.#ms);
  }

  stop(): void {
    deadlines.remove(this);
  }

  /** The client's buffer is full: the upstream waits for it (the send timeout runs). */
  pause(now: number): void {
    this.paused = true;
    this.#pausedAt = now;
    const sendMs = this.sendMs;
    if (sendMs > 0 && this.#phase === 'body' && !(this.deadlineAt <= now + sendMs)) deadlines.add(this, now, sendMs);
  }

  /** The client took the buffer: body idleness counts from now. */
  resume(now: number): void {
    this.paused = false;
    this.progressAt = now;
  }

  #start(phase: 'headers' | 'body', ms: number, now: number): void {
    this.#phase = phase;
    this.#ms = ms;
    if (ms > 0) deadlines.add(this, now, ms);
    else deadlines.remove(this);
  }

  /**
   * The wait for the head ran out: is the request body still going up? `sent` (all of it, or
   * none), `moving` (the wait goes on; it restarts once the body is sent), or `stalled`: the
   * upstream stopped taking it (nothing moved since the last check and the buffer towards it
   * is full).
   */
  #upload(): 'sent' | 'moving' | 'stalled' {
    const body = this.#owner.uploading?.();
    if (body === undefined) return 'sent';
    const sent = this.#owner.uploadedBytes?.() ?? 0;
    const moved = sent !== this.#sentAtCheck;
    this.#sentAtCheck = sent;
    return moved || body.readableLength < body.readableHighWaterMark ? 'moving' : 'stalled';
  }

  deadlineReached(now: number): void {
    const ms = this.#ms;
    if (this.#phase === 'headers') {
      const upload = this.#upload();
      if (upload === 'moving') deadlines.add(this, now, ms);
      else this.#owner.timedOut(upload === 'stalled' ? new UpstreamNotReadingError() : new undiciErrors.HeadersTimeoutError());
      return;
    }
    if (this.paused) {
      const sendMs = this.sendMs;
      const waited = now - this.#pausedAt;
      if (sendMs > 0 && waited >= sendMs) {
        this.#owner.notReading(`the client did not read the response for ${Math.round(waited)} ms (send timeout ${sendMs} ms)`);
        return;
      }
      const left = sendMs > 0 ? sendMs - waited : Infinity;
      const wait = ms > 0 && ms < left ? ms : left;
      if (wait !== Infinity) deadlines.add(this, now, wait);
      return;
    }
    if (ms <= 0) return; // armed for the send timeout only
    const idle = now - this.progressAt;
    if (idle < ms) {
      deadlines.add(this, now, ms - idle);
      return;
    }
    this.#owner.timedOut(new undiciErrors.BodyTimeoutError());
  }
}

import { Failure } from '../failure/index.js';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { BodyTimer, type BodyTimerOwner, type ClientBodyLimits } from '../timing/body-timer.js';

/** Who is told when the client is too slow with the body, and the limits it set. */
export interface BodyWatch {
  readonly owner: BodyTimerOwner;
  readonly limits: ClientBodyLimits;
  /**
   * The client was not asked for the body yet (it waits for a 100 Continue, RFC 9110
   * §10.1.1): its time starts at `startTiming()` or with its first byte.
   */
  readonly bodyDeferred: boolean;
}

/**
 * The request body as undici reads it. A relay, not the request itself, because
 * undici destroys the body stream it was given when an attempt fails, and destroying
 * the IncomingMessage would kill the client connection before the gateway can answer.
 * It attaches to the request only when undici first reads, so an attempt that failed
 * before sending (connect, TLS) leaves the body untouched and a retry can send it.
 * For requests that may be retried it also keeps what it passed on, up to a limit,
 * so a retry can send the body again (`replay()`).
 *
 * While it reads the client it times the client (`BodyTimer`: the gap between body bytes
 * and the minimum rate); the time it holds the client back because the upstream does not
 * take the body is not counted.
 */
export class BodyRelay extends Readable {
  readonly #src: IncomingMessage;
  readonly #retainLimit: number;
  readonly #watch: BodyWatch | undefined;
  readonly #timer: BodyTimer | undefined;
  #timing = false;
  #retained: Buffer[] | undefined;
  #attached = false;
  /** Body bytes taken from the client so far. */
  bytes = 0;
  /** The try sending this body, told when all of it has been read ('end'). */
  sender: { bodySent(): void } | undefined;

  constructor(src: IncomingMessage, retainLimit = 0, prior?: readonly Buffer[], watch?: BodyWatch) {
    super({ highWaterMark: 64 * 1024 });
    this.#src = src;
    this.#retainLimit = retainLimit;
    this.#watch = watch;
    if (watch !== undefined && BodyTimer.active(watch.limits)) this.#timer = new BodyTimer(watch.owner, watch.limits);
    if (retainLimit > 0) this.#retained = [];
    if (prior) {
      for (const c of prior) {
        this.bytes += c.length;
        this.#retained?.push(c);
        this.push(c);
      }
    }
  }

  /** The client was asked for the body (a 100 Continue relayed): its time runs from now. */
  startTiming(): void {
    if (this.#timer === undefined || this.#timing || this.destroyed) return;
    this.#timing = true;
    this.#timer.start(performance.now());
  }

  /** Everything taken from the client can be sent again. */
  get replayable(): boolean {
    return this.bytes === 0 || this.#retained !== undefined;
  }

  /** A fresh relay that sends the body from its start (only when `replayable`). */
  replay(): BodyRelay {
    return new BodyRelay(this.#src, this.#retainLimit, this.#retained, this.#watch);
  }

  override _read(): void {
    const timer = this.#timer;
    if (!this.#attached) {
      this.#attached = true;
      const src = this.#src;
      if (src.readableEnded) {
        this.push(null);
        return;
      }
      src.on('data', this.#onData);
      src.once('end', this.#onEnd);
      src.once('error', this.#onError);
      src.once('aborted', this.#onAborted);
      if (this.#watch?.bodyDeferred !== true) this.startTiming();
    } else if (timer !== undefined && timer.held) {
      timer.release(performance.now());
    }
    this.#src.resume();
  }

  #onData = (chunk: Buffer): void => {
    this.bytes += chunk.length;
    const timer = this.#timer;
    if (timer !== undefined) {
      if (!this.#timing) this.startTiming();
      timer.progress(chunk.length, performance.now());
    }
    const kept = this.#retained;
    if (kept !== undefined) {
      if (this.bytes <= this.#retainLimit) kept.push(chunk);
      else this.#retained = undefined; // too large to keep: no replay
    }
    if (!this.push(chunk)) {
      this.#src.pause();
      timer?.hold(timer.lastAt);
    }
  };

  #onEnd = (): void => {
    this.#timer?.stop();
    this.push(null);
  };

  #onError = (err: Error): void => {
    this.destroy(err);
  };

  #onAborted = (): void => {
    this.destroy(clientAborted());
  };

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#timer?.stop();
    const src = this.#src;
    src.off('data', this.#onData);
    src.off('end', this.#onEnd);
    src.off('error', this.#onError);
    src.off('aborted', this.#onAborted);
    cb(err);
  }
}

/**
 * The client went away in the middle of its request body: its side, named as such (a
 * made-up ECONNRESET read as the upstream resetting the connection).
 */
function clientAborted(): Failure {
  return new Failure({ type: 'http_request_error', phase: 'send', detail: 'the client aborted the request body' });
}

import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { Failure } from '../failure/index.js';
import type { MeterSession } from '../tenants/index.js';
import { BodyTimer, type BodyTimerOwner, type ClientBodyLimits } from '../timing/body-timer.js';

/**
 * A client's request body as undici reads it (HTTP proxy): metered, and timed while it is
 * read (`BodyTimer`: the gap between body bytes and the minimum rate). Like the reverse
 * gateway's BodyRelay it attaches to the request only when first read, so the client's time
 * starts when the proxy wants the body (a dial through an egress pool, or a client waiting
 * for a 100 Continue, is not its delay), and time the destination holds the body back (a
 * full buffer towards undici) is not counted.
 *
 * With `Expect: 100-continue` the client's time starts when the destination's 100 was relayed
 * (`startTiming`) or with its first byte, whichever comes first: a client waiting for the 100
 * as RFC 9110 §10.1.1 asks is not slow.
 *
 * A client too slow destroys it with a `request_timeout` Failure, which undici reports back
 * to the relay: 408 before the response head, the connection cut after it; the destination
 * request is aborted either way (its connection is not reused). The client's request itself
 * is never destroyed here: its socket still has to carry the 408.
 */
export class ClientBody extends Readable implements BodyTimerOwner {
  readonly #src: IncomingMessage;
  readonly #session: MeterSession;
  readonly #timer: BodyTimer | undefined;
  readonly #deferred: boolean;
  #attached = false;
  #timing = false;

  constructor(req: IncomingMessage, session: MeterSession, limits: ClientBodyLimits, deferred = false) {
    super({ highWaterMark: 64 * 1024 });
    this.#src = req;
    this.#session = session;
    this.#deferred = deferred;
    if (BodyTimer.active(limits)) this.#timer = new BodyTimer(this, limits);
  }

  /** The client was asked for the body (a 100 Continue relayed): its time runs from now. */
  startTiming(): void {
    if (this.#timer === undefined || this.#timing || this.destroyed) return;
    this.#timing = true;
    this.#timer.start(performance.now());
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
      src.once('close', this.#onClose);
      if (!this.#deferred) this.startTiming();
    } else if (timer !== undefined && timer.held) {
      timer.release(performance.now());
    }
    this.#src.resume();
  }

  #onData = (chunk: Buffer): void => {
    this.#session.up(chunk.length);
    const timer = this.#timer;
    if (timer !== undefined) {
      if (!this.#timing) this.startTiming();
      timer.progress(chunk.length, performance.now());
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

  #onClose = (): void => {
    if (!this.#src.complete) this.destroy(clientAborted());
  };

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#timer?.stop();
    const src = this.#src;
    src.off('data', this.#onData);
    src.off('end', this.#onEnd);
    src.off('error', this.#onError);
    src.off('close', this.#onClose);
    cb(err);
  }

  bodyStalled(detail: string): void {
    this.destroy(new Failure({ type: 'http_request_error', phase: 'send', reason: 'request_timeout', detail }));
  }
}

/**
 * The client went away in the middle of its request body: its side, named as such (a
 * made-up ECONNRESET read as the upstream resetting the connection).
 */
function clientAborted(): Failure {
  return new Failure({ type: 'http_request_error', phase: 'send', detail: 'the client aborted the request body' });
}

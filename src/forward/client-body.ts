import type { IncomingMessage } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import { Failure } from '../failure/index.js';
import type { MeterSession } from '../tenants/index.js';
import { BodyTimer, type BodyTimerOwner, type ClientBodyLimits } from '../timing/body-timer.js';

/**
 * A client's request body on its way to the destination (HTTP proxy): metered, and timed
 * (`BodyTimer`: the gap between body bytes and the minimum rate). Time the destination holds
 * it back is not the client's: from a full buffer towards undici until undici reads again.
 * A client too slow destroys it with a `request_timeout` Failure, which undici reports back
 * to the relay: 408 before the response head, the connection cut after it; the destination
 * request is aborted either way (its connection is not reused).
 *
 * The request is piped in, not `pipeline()`d: an error here must not destroy the client's
 * request (its socket), which still has to carry the 408.
 */
export class ClientBody extends Transform implements BodyTimerOwner {
  readonly #session: MeterSession;
  readonly #timer: BodyTimer | undefined;

  constructor(req: IncomingMessage, session: MeterSession, limits: ClientBodyLimits) {
    super();
    this.#session = session;
    if (BodyTimer.active(limits)) {
      this.#timer = new BodyTimer(this, limits);
      this.#timer.start(performance.now());
    }
    req.once('error', (err) => this.destroy(err));
    req.once('close', () => {
      if (!req.complete) this.destroy(Object.assign(new Error('the client aborted the request body'), { code: 'ECONNRESET' }));
    });
    req.pipe(this);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#session.up(chunk.length);
    const timer = this.#timer;
    if (timer !== undefined) timer.progress(chunk.length, performance.now());
    if (!this.push(chunk) && timer !== undefined) timer.hold(timer.lastAt);
    cb();
  }

  override _read(size: number): void {
    const timer = this.#timer;
    if (timer !== undefined && timer.held) timer.release(performance.now());
    super._read(size);
  }

  override _flush(cb: TransformCallback): void {
    this.#timer?.stop();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#timer?.stop();
    cb(err);
  }

  bodyStalled(detail: string): void {
    this.destroy(new Failure({ type: 'http_request_error', phase: 'send', reason: 'request_timeout', detail }));
  }
}

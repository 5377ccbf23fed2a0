import type { IncomingMessage } from 'node:http';
import { Failure } from '../failure/index.js';
import { ClientBodyStream } from '../http/client-body.js';
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
 * The request body as undici reads it (the shared `ClientBodyStream`: attached on first
 * read, the client timed). For requests that may be retried it also keeps what it passed
 * on, up to a limit, so a retry can send the body again (`replay()`).
 *
 * Between a try's end and its retry's first read (the back-off, a 5xx drained, the new
 * connection made) the client may still be sending: its request is still flowing, and a
 * chunk it emits with no 'data' listener is gone. So a relay destroyed with the body
 * unfinished keeps taking the client's chunks into what it keeps (the gap), and the retry's
 * relay takes them over at its first read, in the same turn that it starts listening itself.
 * Found in session 33: a chunked PUT retried after an early 503 reached the upstream with the
 * chunks sent during the back-off missing, answered 200.
 */
export class BodyRelay extends ClientBodyStream {
  readonly #retainLimit: number;
  readonly #watch: BodyWatch | undefined;
  #retained: Buffer[] | undefined;
  /** Body bytes taken from the client so far (with those of the relay it replays, once taken over). */
  #bytes = 0;
  /** The relay this one replays, until its first read takes its chunks over. */
  #prev: BodyRelay | undefined;
  /** Taking the client's chunks after this relay was destroyed, for the retry (the gap). */
  #gapping = false;
  /** It has read from the client (its request flows from then on). */
  #reading = false;
  /** The try sending this body, told when all of it has been read ('end'). */
  sender: { bodySent(): void } | undefined;

  constructor(src: IncomingMessage, retainLimit = 0, prev?: BodyRelay, watch?: BodyWatch) {
    super(src, watch?.bodyDeferred === true);
    this.#retainLimit = retainLimit;
    this.#watch = watch;
    if (watch !== undefined && BodyTimer.active(watch.limits)) this.timer = new BodyTimer(watch.owner, watch.limits);
    if (retainLimit > 0) this.#retained = [];
    this.#prev = prev;
  }

  /** Body bytes taken from the client so far (a replay not yet read: those of the relay it replays). */
  get bytes(): number {
    return this.#prev !== undefined ? this.#prev.bytes : this.#bytes;
  }

  /** Everything taken from the client can be sent again. */
  get replayable(): boolean {
    if (this.#prev !== undefined) return this.#prev.replayable;
    return this.#bytes === 0 || this.#retained !== undefined;
  }

  /** A fresh relay that sends the body from its start (only when `replayable`). */
  replay(): BodyRelay {
    return new BodyRelay(this.src, this.#retainLimit, this, this.#watch);
  }

  /** The chunks kept for a replay, this relay letting go of the client (undefined: too many to keep). */
  #takeOver(): readonly Buffer[] | undefined {
    const prev = this.#prev;
    if (prev !== undefined) {
      this.#prev = undefined;
      return prev.#takeOver();
    }
    if (this.#gapping) {
      this.#gapping = false;
      this.src.off('data', this.#gap);
    }
    return this.#bytes === 0 ? [] : this.#retained;
  }

  protected override attaching(): void {
    this.#reading = true;
    if (this.#prev === undefined) return;
    const prior = this.#takeOver();
    if (prior === undefined) {
      // The client sent more during the gap than can be kept: the body cannot be sent whole.
      this.destroy(new Failure({ type: 'proxy_internal_error', phase: 'send', detail: 'the request body grew past what is kept for a retry before the retry could send it' }));
      return;
    }
    for (const c of prior) {
      this.#bytes += c.length;
      this.#retained?.push(c);
      this.push(c);
    }
  }

  protected taken(chunk: Buffer): void {
    this.#bytes += chunk.length;
    const kept = this.#retained;
    if (kept !== undefined) {
      if (this.#bytes <= this.#retainLimit) kept.push(chunk);
      else this.#retained = undefined; // too large to keep: no replay
    }
  }

  #gap = (chunk: Buffer): void => {
    this.taken(chunk);
    if (this.#retained === undefined) {
      // Past what is kept: no replay can use more; stop listening (the request flows on and drops the rest, as before).
      this.#gapping = false;
      this.src.off('data', this.#gap);
    }
  };

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // It read from the client (so the request flows) and not all of it: keep taking it for a retry.
    const src = this.src;
    if (this.#reading && this.#prev === undefined && this.#retained !== undefined && !src.readableEnded && !src.destroyed && !this.#gapping) {
      this.#gapping = true;
      src.on('data', this.#gap);
    }
    super._destroy(err, cb);
  }
}

/**
 * A body of unknown length (chunked, or HTTP/2 DATA without a Content-Length) can be kept whole
 * for a replay: all of it has come from the client (`complete`), and what is still buffered
 * there, with what an earlier try's relay took and kept (`prev`), is at most `limit` bytes.
 * Known only once the client has sent all of it, so mostly for a retry or a request that
 * waited for its slot: at a first try dispatched as its head arrives, the rest of the read it
 * came in is not parsed yet. `readableLength`: what node:http's request (a Readable) and the
 * net front's `NetRequest` hold unread. An HTTP/2 request says `complete` only once read to
 * its end or closed, so an unread HTTP/2 body of unknown length counts as not kept (a fresh
 * connection: the safe side).
 */
export function wholeBodyWithin(src: IncomingMessage, prev: BodyRelay | undefined, limit: number): boolean {
  if (!src.complete) return false;
  const taken = prev === undefined ? 0 : prev.replayable ? prev.bytes : Infinity;
  return taken + src.readableLength <= limit;
}

import type { IncomingMessage } from 'node:http';
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
 */
export class BodyRelay extends ClientBodyStream {
  readonly #retainLimit: number;
  readonly #watch: BodyWatch | undefined;
  #retained: Buffer[] | undefined;
  /** Body bytes taken from the client so far. */
  bytes = 0;
  /** The try sending this body, told when all of it has been read ('end'). */
  sender: { bodySent(): void } | undefined;

  constructor(src: IncomingMessage, retainLimit = 0, prior?: readonly Buffer[], watch?: BodyWatch) {
    super(src, watch?.bodyDeferred === true);
    this.#retainLimit = retainLimit;
    this.#watch = watch;
    if (watch !== undefined && BodyTimer.active(watch.limits)) this.timer = new BodyTimer(watch.owner, watch.limits);
    if (retainLimit > 0) this.#retained = [];
    if (prior) {
      for (const c of prior) {
        this.bytes += c.length;
        this.#retained?.push(c);
        this.push(c);
      }
    }
  }

  /** Everything taken from the client can be sent again. */
  get replayable(): boolean {
    return this.bytes === 0 || this.#retained !== undefined;
  }

  /** A fresh relay that sends the body from its start (only when `replayable`). */
  replay(): BodyRelay {
    return new BodyRelay(this.src, this.#retainLimit, this.#retained, this.#watch);
  }

  protected taken(chunk: Buffer): void {
    this.bytes += chunk.length;
    const kept = this.#retained;
    if (kept !== undefined) {
      if (this.bytes <= this.#retainLimit) kept.push(chunk);
      else this.#retained = undefined; // too large to keep: no replay
    }
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

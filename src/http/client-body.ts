import type { IncomingMessage } from 'node:http';
import { Readable, type Duplex } from 'node:stream';
import { Failure } from '../failure/index.js';
import type { BodyTimer } from '../timing/body-timer.js';

/**
 * A client's request body as undici reads it, for both faces: the reverse gateway's
 * `BodyRelay` (which also keeps what it passed on, for a retry) and the forward proxy's
 * `ClientBody` (which meters it) extend this.
 *
 * A stream of its own rather than the request itself: undici destroys the body stream it was
 * given when an attempt fails, and destroying the IncomingMessage would kill the client
 * connection before the gateway can answer. It attaches to the request only when undici first
 * reads, so an attempt that failed before sending (connect, TLS, a dial through an egress pool)
 * leaves the body untouched, and the client's time starts when the body is wanted.
 *
 * While it reads the client it times the client (`BodyTimer`: the gap between body bytes and
 * the minimum rate); time it holds the client back because the upstream does not take the
 * body (a full buffer towards undici) is not counted. With `Expect: 100-continue` (deferred)
 * the client's time starts when the upstream's 100 was relayed (`startTiming`) or with its
 * first byte, whichever comes first: a client waiting for the 100, as RFC 9110 §10.1.1 asks,
 * is not slow.
 */
export abstract class ClientBodyStream extends Readable {
  protected readonly src: IncomingMessage;
  #timer: BodyTimer | undefined;
  readonly #deferred: boolean;
  #attached = false;
  #timing = false;

  constructor(src: IncomingMessage, deferred: boolean) {
    super({ highWaterMark: 64 * 1024 });
    this.src = src;
    this.#deferred = deferred;
    // The count EventEmitter keeps on the prototype (0) as an own property from the start: the
    // first listener (undici's) then changes a value, not the map. With two maps per body
    // stream, Node's `readableEnded` getter (shared by every Readable in the process) met a
    // fifth map under POSTs and went megamorphic (docs/benchmarks.md §52).
    (this as unknown as { _eventsCount: number })._eventsCount = 0;
  }

  /** Set once, by the subclass's constructor (the timer's owner may be the subclass itself). */
  protected set timer(t: BodyTimer | undefined) {
    this.#timer = t;
  }

  /** A chunk taken from the client, before it is passed on (count, meter, keep). A subclass that destroys the stream here (a byte quota) stops the chunk: it is not passed on. */
  protected abstract taken(chunk: Buffer): void;

  /** All of the body was read. */
  protected ended(): void {}

  /** The stream is about to attach to the client's request (its first read): a subclass may push what it carries over first. */
  protected attaching(): void {}

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
      const src = this.src;
      this.attaching();
      if (this.destroyed) return;
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
    this.src.resume();
  }

  #onData = (chunk: Buffer): void => {
    this.taken(chunk);
    if (this.destroyed) return;
    const timer = this.#timer;
    if (timer !== undefined) {
      if (!this.#timing) this.startTiming();
      timer.progress(chunk.length, performance.now());
    }
    if (!this.push(chunk)) {
      this.src.pause();
      timer?.hold(timer.lastAt);
    }
  };

  #onEnd = (): void => {
    this.#timer?.stop();
    this.push(null);
    this.ended();
  };

  #onError = (err: Error): void => {
    this.destroy(err);
  };

  #onClose = (): void => {
    // The client went away in the middle of its body: its side, named as such (a made-up
    // ECONNRESET would read as the upstream resetting the connection).
    if (!this.src.complete) this.destroy(new Failure({ type: 'http_request_error', phase: 'send', detail: 'the client aborted the request body' }));
  };

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#timer?.stop();
    const src = this.src;
    src.off('data', this.#onData);
    src.off('end', this.#onEnd);
    // The 'error' listener stays: destroying a request emits its error a tick after it checked
    // for listeners (node:http's abortIncoming, a client gone mid-body), and an 'error' with
    // none left is an uncaught exception that ends the process. It only destroys this stream
    // again, which does nothing now.
    src.off('close', this.#onClose);
    cb(err);
  }
}

/**
 * Whether a node:http parser error is the client's EOF (a close or half-close) in the middle of
 * a request's body: the request (its head parsed, handed on) will never get the rest of it.
 * Node's parser, finishing the message at EOF, reports `HPE_INVALID_EOF_STATE` through
 * 'clientError' like a malformed request; it is the client leaving, which that request's own
 * record says (499, ended by the client), so no front answers or records it again. node:http
 * keeps the request it parses on the parser (`parser.incoming`, no public name for it); a
 * socket with no parser (the reverse gateway's net front, whose own parser sees no EOF) is
 * never one.
 */
export function bodyCutShortAtEof(code: string | undefined, socket: Duplex): boolean {
  if (code !== 'HPE_INVALID_EOF_STATE') return false;
  const incoming = (socket as unknown as { parser?: { incoming?: IncomingMessage | null } | null }).parser?.incoming;
  return incoming != null && !incoming.complete;
}

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { CLIENT_CLOSED_STATUS, Failure, classify, type EndedBy } from '../failure/index.js';
import { kSocketUser, unsentBytes, writeHandle, type SlottedSocket, type WriteHandle } from '../net/index.js';
import { nameIs } from '../http/token.js';
import { stripHopByHop, trailersCarried, transferCodingRefusal, viaValue, withoutUncarriedTrailer, fieldText, type RawField } from '../http/headers.js';
import type { MeterSession, PlanEnforcer } from '../tenants/index.js';
import { ResponseTimer, type ResponseTimerOwner } from '../timing/response-timer.js';
import { ClientBody } from './client-body.js';
import { headerBytes } from './forward-headers.js';
import { quotaOver } from './quota-gate.js';

/** How a relayed request ended, for the access log. */
export interface RelayOutcome {
  status: number;
  /** The failure to answer with, when no response head was sent yet. */
  failure?: Failure;
  /** Set when the response was cut short after its head (the client connection was aborted). */
  error?: Failure;
  /** With `failure`: some of the response had arrived (not the keep-alive race). */
  responseStarted?: true;
  /**
   * The whole answer had come and was queued behind an earlier answer of its connection
   * (pipelined), and the connection closed before it was written: the client never got it.
   */
  unanswered?: true;
  /**
   * The whole answer had come and was on its socket, and the connection closed with this many
   * of its bytes still unsent (in the socket's buffer): the client never got its tail.
   */
  unsent?: number;
  endedBy: EndedBy;
}

/**
 * One absolute-form request forwarded on a pooled connection (or an exit's), as an undici
 * dispatch handler writing straight into the client's response: raw header buffers,
 * no response stream object, no pipeline. (The same choice as the reverse gateway's
 * Exchange: measured here, `request()` + `pipeline()` ran at ~1,500 req/s where this
 * runs at ~2,400 on the forward-proxy benchmark.)
 *
 * Backpressure: onData returns false when the client's buffer is full and the
 * response's 'drain' resumes the upstream. A client that leaves aborts the request;
 * an upstream that fails after the head aborts the client connection, so a cut
 * body never looks complete.
 *
 * The waits for the response head and between body bytes are a ResponseTimer (the reverse
 * gateway's), so dispatch it with undici's `headersTimeout: 0, bodyTimeout: 0`.
 *
 * Byte quotas (`plans`, for `user`): checked before each response chunk is counted, as a
 * tunnel checks them. The chunk that crosses the limit still goes through; at the next one the
 * client connection is cut (Content-Length or chunked framing left short: an incomplete
 * response), the request aborted, and the record says `endedBy: "quota"`. A user already
 * held when the response head arrives (another request, tunnel or this upload crossed the
 * limit) is answered the quota's 429 instead. The upload is checked by `ClientBody`.
 *
 * A request with `Expect: 100-continue` (RFC 9110 §10.1.1; `through.expect`, the client's
 * request) is sent by an `ExpectClient` (undici cannot carry the expectation) driving this
 * same handler: the destination's `100 Continue` is passed to the client (`writeContinue`)
 * and starts the client's body time (`ClientBody.startTiming`); its final answer is passed on
 * whether or not it asked for the body, with `Connection: close` when the client may still
 * hold a body it was not asked for. The proxy never answers 100 itself. Until the 100, the
 * wait for the head runs whatever the client sends (the destination has not asked for the
 * body); after it, an upload still moving holds that wait as for any other request.
 */
export class ForwardRelay implements Dispatcher.DispatchHandler, ResponseTimerOwner {
  readonly #res: ServerResponse;
  readonly #session: MeterSession;
  readonly #via: string;
  readonly #done: (o: RelayOutcome) => void;
  readonly #body: Readable | null;
  readonly #timeouts: RelayTimeouts;
  readonly #timer: ResponseTimer;
  readonly #extra: readonly string[] | undefined;
  readonly #inspect: HeadInspector | undefined;
  readonly #debug: ((bytesUp: number) => string) | undefined;
  /** The client's request, when it expects 100-continue. */
  readonly #expect: IncomingMessage | undefined;
  /** Expecting: the destination has not asked for the body yet. */
  #awaiting: boolean;
  /** The client still held a body it was not asked for when the final head was passed on: its connection ends. */
  #closeClient = false;
  #abort: ((err?: Error) => void) | undefined;
  #resume: (() => void) | undefined;
  #headersSent = false;
  /** A response byte arrived. */
  #responseStarted = false;
  /** The response head passed on (kept, not copied: a parser error in a chunked body is a transfer-coding error). */
  #passedHead: string[] | undefined;
  #settled = false;
  /** Its answer is complete and queued behind an earlier answer of its connection (see `onComplete`). */
  #queued = false;
  /** Its answer is complete and on this socket, its tail still in the socket's buffer (see `onComplete`). */
  #tail: SlottedSocket | undefined;
  /** The socket's `bytesWritten` once the whole answer was written to it (its last byte's place). */
  #tailEnd = 0;
  /** The tail's socket's handle, kept to read libuv's queue in the socket's 'error' (the handle is gone from the socket then). */
  #tailHandle: WriteHandle | undefined;
  /** Bytes of the answer not yet in the kernel when its connection was cut: by the drain (`cutAtDrain`), or an error (a reset, `#onTailError`). */
  #unsentAtCut: number | undefined;
  readonly #plans: PlanEnforcer | undefined;
  readonly #user: string | null;

  constructor(res: ServerResponse, session: MeterSession, pseudonym: string, body: Readable | null, timeouts: RelayTimeouts, done: (o: RelayOutcome) => void, through?: RelayThrough, plans?: PlanEnforcer, user: string | null = null) {
    this.#plans = plans;
    this.#user = user;
    this.#extra = through?.extraHeaders;
    this.#inspect = through?.inspect;
    this.#debug = through?.debug;
    this.#expect = through?.expect;
    this.#awaiting = this.#expect !== undefined;
    this.#res = res;
    this.#session = session;
    this.#via = viaValue('1.1', pseudonym);
    this.#body = body;
    this.#timeouts = timeouts;
    this.#timer = new ResponseTimer(this, timeouts.sendMs);
    this.#done = done;
    res.once('close', this.#onResClose);
  }

  readonly #onResClose = (): void => {
    if (this.#settled) return;
    if (this.#queued) {
      // Its connection closed with its answer still queued: never written, not answered. (The
      // destination's request is complete: nothing to abort.) Nothing of it left: the bytes
      // counted as it came are taken back (before, its record counted them all).
      this.#session.undelivered(this.#session.bytesDown);
      this.#settle({ status: CLIENT_CLOSED_STATUS, endedBy: 'client', unanswered: true });
      return;
    }
    const tail = this.#tail;
    if (tail !== undefined) {
      // Its connection closed with the answer's tail still in the socket's buffer: cut short.
      // What was not handed to the kernel never left: taken back from the count. Measured at the
      // drain's cut, before the socket was destroyed, or in the socket's 'error' (the client's
      // reset), with libuv's queue still counted; otherwise (the socket closed without an
      // error) what Node's stream itself still held (libuv's queue no longer counts by now).
      const unsent = this.#unsentAtCut ?? Math.max(0, this.#tailEnd - tail.bytesWritten);
      this.#session.undelivered(unsent);
      this.#settle({ status: this.#res.statusCode, endedBy: 'client', unsent });
      return;
    }
    // The client left before the response was complete. Settled before the abort: undici
    // calls onError from inside abort(), and that error is ours, not the destination's.
    this.#settle({ status: this.#headersSent ? this.#res.statusCode : CLIENT_CLOSED_STATUS, endedBy: 'client' });
    this.#abort?.();
  };

  readonly #onDrain = (): void => {
    this.#timer.resume(performance.now());
    this.#resume?.();
  };

  #settle(o: RelayOutcome): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#timer.stop();
    this.#res.off('close', this.#onResClose);
    const tail = this.#tail;
    if (tail !== undefined) {
      if (tail[kSocketUser] === this) tail[kSocketUser] = undefined;
      tail.off('error', this.#onTailError);
    }
    this.#done(o);
  }

  /**
   * The drain cuts this answer's connection (forward-proxy.ts, just before it destroys the
   * socket): how much of the answer's tail has not reached the kernel is read now, while the
   * socket still says it. Bytes of a later answer of the connection sit behind it.
   */
  cutAtDrain(): void {
    const tail = this.#tail;
    if (tail === undefined || this.#settled) return;
    this.#unsentAtCut = this.#tailUnsent(tail);
  }

  /**
   * What of this answer's tail has not reached the kernel: the socket's unsent bytes less those
   * of later answers of the connection, which sit behind it. `handle` is the one kept from
   * before an error destroyed the socket (`#onTailError`).
   */
  #tailUnsent(tail: SlottedSocket, handle?: WriteHandle): number {
    return Math.max(0, unsentBytes(tail, handle) - (tail.bytesWritten - this.#tailEnd));
  }

  /**
   * The tail's socket failed (the client reset it): Node has destroyed it, and its 'close'
   * (then the response's, `#onResClose`) comes later, by when `bytesWritten` no longer counts
   * libuv's queue. Read here, with the handle kept from before: what libuv still held never
   * reached the kernel (before, read at the close, none of it was taken back).
   */
  readonly #onTailError = (): void => {
    const tail = this.#tail;
    if (tail === undefined || this.#settled || this.#unsentAtCut !== undefined) return;
    this.#unsentAtCut = this.#tailUnsent(tail, this.#tailHandle);
  };

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    if (this.#res.destroyed) {
      abort();
      return;
    }
    this.#timer.headers(this.#timeouts.headersMs, performance.now());
  }

  onResponseStarted(): void {
    this.#responseStarted = true;
  }

  /** Whether the head passed on framed its body without a length (chunked): read only when the body fails. */
  #passedChunked(): boolean {
    const head = this.#passedHead;
    if (head === undefined) return false;
    for (let i = 0; i < head.length; i += 2) if (nameIs(head[i]!, 'content-length')) return false;
    return true;
  }

  onHeaders(statusCode: number, rawHeaders: RawField[], resume: () => void, statusText: string): boolean {
    if (statusCode < 100 || statusCode > 599) {
      // RFC 9110 §15: a status outside 100–599 is not HTTP (fuzz finding F7): an invalid response, never passed on.
      this.#abort?.(new Failure({ type: 'http_protocol_error', phase: 'headers', nextHop: this.#session.destination ?? undefined, detail: `the destination answered status ${statusCode}, outside 100-599` }));
      return false;
    }
    if (statusCode < 200) {
      // 1xx interim responses are not passed on (but a 100 the client expects, whose body then
      // goes up: the wait starts again from it). Any other 1xx leaves the wait for the final
      // head as it was: restarting it at each let a destination that sends 102s more often
      // than the timeout hold the request for ever (as on the reverse gateway, attempt.ts).
      if (statusCode === 100 && this.#expect !== undefined) {
        this.#timer.restart(performance.now());
        this.#continue();
      }
      return true;
    }
    if (this.#settled) return false;
    const over = this.#overQuota();
    if (over !== undefined) {
      this.#abort?.(over);
      return false;
    }
    this.#timer.body(this.#timeouts.bodyIdleMs, performance.now());
    const list: string[] = new Array<string>(rawHeaders.length);
    for (let i = 0; i < rawHeaders.length; i++) list[i] = fieldText(rawHeaders[i]!);
    // A transfer coding that changes the bytes would reach the client still applied (http/headers.ts).
    for (let i = 0; i < list.length; i += 2) {
      if (!nameIs(list[i]!, 'transfer-encoding')) continue;
      const detail = transferCodingRefusal(list[i + 1]!);
      if (detail === undefined) continue;
      this.#abort?.(new Failure({ type: 'http_response_transfer_coding', phase: 'headers', nextHop: this.#session.destination ?? undefined, detail }));
      return false;
    }
    if (this.#inspect !== undefined) {
      const refused = this.#inspect(statusCode, list);
      if (refused) {
        this.#abort?.(refused);
        return false;
      }
    }
    const req = this.#res.req;
    // A Trailer field on an answer that cannot carry trailers (http/headers.ts): node:http would refuse the head.
    const out = withoutUncarriedTrailer(stripHopByHop(list, 'response'), trailersCarried(statusCode, req.method, req.httpVersion));
    // RFC 9110 §8.6: no Content-Length in a 204 (a 304's describes the selected representation and stays).
    if (statusCode === 204) dropField(out, 'content-length');
    out.push('via', this.#via);
    if (this.#extra !== undefined) out.push(...this.#extra);
    if (this.#debug !== undefined) out.push('gatewise-debug', this.#debug(this.#session.bytesUp));
    // The client may still hold the body it was not asked for: the connection ends after this answer.
    if (this.#expect !== undefined && !this.#expect.complete) {
      this.#closeClient = true;
      out.push('connection', 'close');
    }
    this.#headersSent = true;
    this.#session.down(headerBytes(out) + 17);
    try {
      // A reason phrase Node would refuse (control bytes, obs-text): the status's own phrase instead.
      this.#res.writeHead(statusCode, validReason(statusText), out);
    } catch (err) {
      // Whatever else Node refuses to write is the destination's malformed head, not ours.
      this.#headersSent = false;
      this.#abort?.(new Failure({ type: 'http_protocol_error', phase: 'headers', nextHop: this.#session.destination ?? undefined, detail: 'the response head cannot be passed on', cause: err }));
      return false;
    }
    this.#resume = resume;
    this.#passedHead = out;
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.#res.destroyed || this.#res.socket?.destroyed) {
      // The client is gone; its 'close' may not have been emitted yet.
      this.#onResClose();
      return false;
    }
    const over = this.#overQuota();
    if (over !== undefined) {
      // The chunk is neither passed on nor counted: cut the client connection (the response is
      // left short of its framing) and the destination's request. The head was counted when it
      // was passed on: it goes out first (Node holds a head back until the first body write).
      this.#res.flushHeaders();
      this.#res.destroy();
      this.#settle({ status: this.#res.statusCode, error: over, endedBy: 'gateway' });
      this.#abort?.(over);
      return false;
    }
    this.#timer.progressAt = performance.now();
    this.#session.down(chunk.length);
    if (this.#res.write(chunk)) return true;
    this.#timer.pause(this.#timer.progressAt);
    this.#res.once('drain', this.#onDrain);
    return false;
  }

  /** The refusal when the user is held at a byte quota (noted on the session for the record). */
  #overQuota(): Failure | undefined {
    const user = this.#user;
    if (user === null || this.#plans === undefined) return undefined;
    const over = quotaOver(this.#plans, user);
    if (over !== undefined) this.#session.quotaCut ??= over.detail;
    return over;
  }

  onComplete(): void {
    if (this.#settled) {
      this.#timer.stop();
      return;
    }
    const res = this.#res;
    res.end();
    if (this.#closeClient) this.#expect!.socket.end();
    const socket = res.socket as SlottedSocket | null;
    if (socket !== null && !res.writableFinished && socket.writableLength > 0) {
      // On its socket, and the kernel has not taken all of it: the tail waits in the socket's
      // buffer (a client that reads slowly, or not at all). It is answered once its last byte
      // is handed to the kernel ('finish'); until then it is in flight, so a drain waits for it
      // and its send timeout runs. Its connection closing first (close() cutting it at the drain
      // timeout, a client that left) leaves it cut short, recorded so with the bytes that left
      // (`#onResClose`), where before it was settled here `complete`, every byte counted, and
      // the drain did not wait for it (drain-tail.test.ts). The socket's slot names it, so the
      // drain's cut can ask it first how much is unsent (`cutAtDrain`).
      this.#tail = socket;
      this.#tailEnd = socket.bytesWritten;
      this.#tailHandle = writeHandle(socket);
      socket.once('error', this.#onTailError);
      if (socket[kSocketUser] === undefined) socket[kSocketUser] = this;
      this.#timer.pause(performance.now());
      res.once('finish', this.#onWritten);
      return;
    }
    this.#timer.stop();
    if (socket === null && !res.writableFinished) {
      // Pipelined behind an answer of its connection still under way: node:http keeps this one
      // (head and body) queued, off the socket, until that one is written. It is answered only
      // once its bytes are handed to the kernel: node:http emits the response's 'finish' from
      // the socket write's callback once it gets the socket. The connection closing first (a
      // client that left, close() cutting it at the drain timeout) leaves it unanswered, and
      // the record says so (`#onResClose`), where before it said 200 `complete` (drain.test.ts,
      // the pipelined case). A response on its socket is settled here as before: its bytes are
      // written now or sit in the socket's buffer, the client's to read.
      this.#queued = true;
      res.once('finish', this.#onWritten);
      return;
    }
    this.#settle({ status: res.statusCode, endedBy: 'complete' });
  }

  /**
   * The queued answer, or the tail of one on its socket, was written. Node emits 'finish' from
   * the write's callback even when that write failed because the socket was destroyed with it
   * still in its buffer (the callback is called with an error, which node:http does not read):
   * then it never reached the kernel, and it is the unanswered (or cut) case.
   */
  readonly #onWritten = (): void => {
    if (this.#settled) return;
    if (this.#res.req.socket.destroyed) this.#onResClose();
    else this.#settle({ status: this.#res.statusCode, endedBy: 'complete' });
  };

  /** The destination asked for the body the client holds back: tell the client, and time its body from now. */
  #continue(): void {
    this.#awaiting = false;
    if (this.#body instanceof ClientBody) this.#body.startTiming();
    if (!this.#res.headersSent && !this.#res.destroyed) this.#res.writeContinue();
  }

  onError(err: Error): void {
    this.#timer.stop();
    if (this.#settled) return;
    if (err instanceof Failure && !this.#headersSent) {
      this.#settle({ status: err.status, failure: err, endedBy: err.source });
      return;
    }
    if (this.#headersSent && (err as { code?: string }).code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' && BODILESS.has(this.#res.statusCode)) {
      // A 304 (or 204) whose Content-Length announces a body it never has (RFC 9110 §8.6,
      // §15.4.5): undici counts the missing bytes as a mismatch; the response is complete.
      this.onComplete();
      return;
    }
    if (!this.#headersSent) {
      const f = classify(err, { connected: true, responseStarted: this.#responseStarted, headersReceived: false, nextHop: this.#session.destination ?? undefined });
      this.#settle(this.#responseStarted ? { status: f.status, failure: f, endedBy: f.source, responseStarted: true } : { status: f.status, failure: f, endedBy: f.source });
      return;
    }
    if (this.#res.destroyed || this.#res.socket?.destroyed) {
      this.#settle({ status: this.#res.statusCode, endedBy: 'client' });
      return;
    }
    // The destination (or the client's body) failed mid-response: abort the client connection, never a body that looks complete.
    const f = classify(err, { connected: true, responseStarted: true, headersReceived: true, bodyChunked: this.#passedChunked(), nextHop: this.#session.destination ?? undefined });
    this.#res.destroy();
    this.#settle({ status: this.#res.statusCode, error: f, endedBy: f.source === 'client' ? 'client' : 'upstream' });
  }

  // ---- the response timer (ResponseTimerOwner) -------------------------------------------

  uploading(): Readable | undefined {
    const body = this.#body;
    return body !== null && !this.#awaiting && !body.readableEnded ? body : undefined;
  }

  uploadedBytes(): number {
    return this.#session.bytesUp;
  }

  timedOut(err: Error): void {
    if (!this.#settled) this.#abort?.(err);
  }

  /** The client left the response unread for the send timeout: cut it and the destination's request. */
  notReading(detail: string): void {
    if (this.#settled) return;
    const f = new Failure({ type: 'http_request_error', phase: 'body', detail });
    const tail = this.#tail;
    if (tail !== undefined) {
      // The whole answer had come; its tail never left: taken back, and nothing to abort upstream.
      this.#session.undelivered(this.#tailUnsent(tail));
      this.#res.destroy();
      this.#settle({ status: this.#res.statusCode, error: f, endedBy: 'client' });
      return;
    }
    this.#res.destroy();
    // Settled before the abort: the error undici reports back is ours.
    this.#settle({ status: this.#res.statusCode, error: f, endedBy: 'client' });
    this.#abort?.(f);
  }
}

/** Statuses whose responses never have a body, whatever their Content-Length says. */
const BODILESS = new Set([204, 304]);

/** A reason phrase Node will write: visible ASCII, spaces and tabs; anything else: the status's own phrase. */
export function validReason(text: string | undefined): string | undefined {
  return text && /^[\t\x20-\x7e]*$/.test(text) ? text : undefined;
}

function dropField(list: string[], name: string): void {
  for (let i = list.length - 2; i >= 0; i -= 2) if (list[i]!.toLowerCase() === name) list.splice(i, 2);
}

/**
 * Looks at a response head before it is passed on (an upstream proxy hop's answer): a
 * Failure aborts the request with it (the client gets the gateway's answer instead).
 */
export type HeadInspector = (status: number, headers: readonly string[]) => Failure | undefined;

/** What the relay is told about its request besides the destination: an exit's headers and hop check, or the client's expectation. */
export interface RelayThrough {
  /** Added to the response head (an exit's headers). */
  extraHeaders?: readonly string[];
  inspect?: HeadInspector;
  /** The client's request, which expects 100-continue (sent by an ExpectClient). */
  expect?: IncomingMessage;
  /** The Gatewise-Debug value, given the bytes sent up so far (only for users who asked: debug-header.ts). */
  debug?: ((bytesUp: number) => string) | undefined;
}

/** The relay's waits, in ms (0: none). */
export interface RelayTimeouts {
  headersMs: number;
  bodyIdleMs: number;
  /** Longest wait for the client to take a full buffer of the response (send timeout). */
  sendMs: number;
}

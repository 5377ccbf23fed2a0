import { request as httpRequest, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { CLIENT_CLOSED_STATUS, Failure, classify } from '../failure/index.js';
import { stripHopByHop, viaValue } from '../http/headers.js';
import type { MeterSession } from '../tenants/index.js';
import { Timeout } from '../timing/deadlines.js';
import { ClientBody } from './client-body.js';
import { headerBytes } from './forward-headers.js';
import { validReason, type RelayOutcome, type RelayTimeouts } from './forward-relay.js';

/**
 * A request with `Expect: 100-continue` (RFC 9110 §10.1.1), relayed over one connection
 * of its own with Node's HTTP client, because undici refuses the `expect` field and
 * treats a `100` as a broken response. The expectation goes upstream; the destination's
 * `100 Continue` is passed to the client (`writeContinue`), and its final answer too,
 * whether or not it asked for the body. The client's body is piped as the client sends
 * it: after our relayed 100, or when the client tires of waiting (as RFC 9110 lets it).
 * The proxy never answers 100 itself, so a destination that cannot be reached is
 * answered 502 before the client has uploaded anything.
 *
 * Timed like the ForwardRelay: the response head within `headersMs`, body bytes no
 * further apart than `bodyIdleMs` (one deadline entry on the process list, re-armed per
 * chunk; this path is for the rare uploads that ask). A client that leaves the answer
 * unread for `sendMs` is cut, the destination request with it (the send timeout); a
 * client too slow with its body (ClientBody) ends the destination request with its
 * `request_timeout` failure.
 */
export class ExpectContinueRelay {
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #session: MeterSession;
  readonly #via: string;
  readonly #extra: readonly string[] | undefined;
  readonly #timeouts: RelayTimeouts;
  #done: ((o: RelayOutcome) => void) | undefined;
  #upstream: ClientRequest | undefined;
  #timer: Timeout | undefined;
  /** Waiting for the client to take a full buffer (the send timeout). */
  #sendTimer: Timeout | undefined;
  #headersSent = false;

  constructor(req: IncomingMessage, res: ServerResponse, session: MeterSession, pseudonym: string, timeouts: RelayTimeouts, extraHeaders?: readonly string[]) {
    this.#req = req;
    this.#res = res;
    this.#session = session;
    this.#via = viaValue('1.1', pseudonym);
    this.#timeouts = timeouts;
    this.#extra = extraHeaders;
  }

  /** Send `method path` with `headers` (expect added) over `socket`; resolves once the exchange ended. */
  run(socket: Socket, path: string, headers: readonly string[], body: Readable | null): Promise<RelayOutcome> {
    return new Promise<RelayOutcome>((resolve) => {
      this.#done = resolve;
      const up = httpRequest({
        createConnection: () => socket,
        method: this.#req.method,
        path,
        headers: [...headers, 'expect', '100-continue'] as unknown as Record<string, string>,
        setHost: false,
        // The head timer below decides; no socket timeout of Node's.
        timeout: 0,
      });
      this.#upstream = up;
      up.on('continue', () => {
        this.#stamp(this.#timeouts.headersMs);
        if (body instanceof ClientBody) body.startTiming();
        if (!this.#res.headersSent && !this.#res.destroyed) this.#res.writeContinue();
      });
      up.on('response', (r) => this.#onResponse(r));
      up.on('error', (err) => this.#onError(err));
      this.#res.once('close', this.#onClientClose);
      if (body !== null) {
        // pipe() passes no errors on: a client too slow (or gone) ends the destination request.
        body.once('error', (err) => up.destroy(err));
        body.pipe(up);
      } else up.end();
      this.#stamp(this.#timeouts.headersMs);
    });
  }

  /** (Re)start the wait: head or body gap, `ms` from now (0: none). */
  #stamp(ms: number): void {
    if (ms <= 0) {
      this.#timer?.cancel();
      return;
    }
    if (this.#timer === undefined) this.#timer = new Timeout(this.#onTimeout, ms);
    else this.#timer.refresh();
  }

  readonly #onTimeout = (): void => {
    const type = this.#headersSent ? 'connection_read_timeout' : 'http_response_timeout';
    this.#upstream?.destroy(new Failure({ type, phase: this.#headersSent ? 'body' : 'headers', nextHop: this.#session.destination ?? undefined, detail: 'the destination did not answer in time' }));
  };

  readonly #onNotReading = (): void => {
    if (this.#done === undefined) return;
    const sendMs = this.#timeouts.sendMs;
    const f = new Failure({ type: 'http_request_error', phase: 'body', detail: `the client did not read the response for ${sendMs} ms (send timeout ${sendMs} ms)` });
    this.#res.destroy();
    this.#settle({ status: this.#res.statusCode, error: f, endedBy: 'client' });
    this.#upstream?.destroy();
  };

  readonly #onClientClose = (): void => {
    if (this.#done === undefined) return;
    this.#settle({ status: this.#headersSent ? this.#res.statusCode : CLIENT_CLOSED_STATUS, endedBy: 'client' });
    this.#upstream?.destroy();
  };

  #onResponse(r: IncomingMessage): void {
    const res = this.#res;
    if (this.#done === undefined || res.destroyed) {
      r.destroy();
      return;
    }
    this.#timer?.cancel();
    this.#timer = undefined;
    const status = r.statusCode!; // always set on a response
    const out = stripHopByHop(r.rawHeaders, 'response');
    out.push('via', this.#via);
    if (this.#extra !== undefined) out.push(...this.#extra);
    // The client may still hold the body it was not asked for: the connection ends after this answer.
    const bodyPending = !this.#req.complete;
    if (bodyPending) out.push('connection', 'close');
    try {
      res.writeHead(status, validReason(r.statusMessage), out);
    } catch (err) {
      r.destroy();
      this.#onError(new Failure({ type: 'http_protocol_error', phase: 'headers', nextHop: this.#session.destination ?? undefined, detail: 'the response head cannot be passed on', cause: err }));
      return;
    }
    this.#headersSent = true;
    this.#session.down(headerBytes(out) + 17);
    this.#timer = undefined;
    this.#stamp(this.#timeouts.bodyIdleMs);
    r.on('data', (chunk: Buffer) => {
      this.#stamp(this.#timeouts.bodyIdleMs);
      this.#session.down(chunk.length);
      if (!res.write(chunk)) {
        r.pause();
        const sendMs = this.#timeouts.sendMs;
        if (sendMs > 0) {
          // The client's delay, not the destination's: the send timeout instead of the gap.
          this.#timer?.cancel();
          if (this.#sendTimer === undefined) this.#sendTimer = new Timeout(this.#onNotReading, sendMs);
          else this.#sendTimer.refresh();
        }
        res.once('drain', () => {
          this.#sendTimer?.cancel();
          this.#stamp(this.#timeouts.bodyIdleMs);
          r.resume();
        });
      }
    });
    r.on('end', () => {
      this.#timer?.cancel();
      res.end();
      if (bodyPending) this.#req.socket.end();
      this.#settle({ status, endedBy: 'complete' });
      this.#upstream?.destroy();
    });
    r.on('error', (err) => this.#onError(err));
  }

  #onError(err: Error): void {
    this.#timer?.cancel();
    if (this.#done === undefined) return;
    if (!this.#headersSent) {
      const f = err instanceof Failure ? err : classify(err, { connected: true, responseStarted: false, headersReceived: false, nextHop: this.#session.destination ?? undefined });
      this.#settle({ status: f.status, failure: f, endedBy: f.source });
      return;
    }
    // Cut mid-body: abort the client connection, never a body that looks complete.
    const f = err instanceof Failure ? err : classify(err, { connected: true, responseStarted: true, headersReceived: true, nextHop: this.#session.destination ?? undefined });
    this.#res.destroy();
    this.#settle({ status: this.#res.statusCode, error: f, endedBy: f.source === 'client' ? 'client' : 'upstream' });
  }

  #settle(o: RelayOutcome): void {
    const done = this.#done;
    if (done === undefined) return;
    this.#done = undefined;
    this.#timer?.cancel();
    this.#sendTimer?.cancel();
    this.#res.off('close', this.#onClientClose);
    done(o);
  }
}

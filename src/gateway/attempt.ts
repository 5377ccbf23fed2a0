import type { Socket } from 'node:net';
import type { Dispatcher } from 'undici';
import { Failure, classify, h2StreamNotProcessed, withDetail } from '../failure/index.js';
import { ResponseTimer, type ResponseTimerOwner } from '../timing/response-timer.js';
import { timeout, type Timeout } from '../timing/deadlines.js';
import { ExpectClient } from '../http/expect-client.js';
import { H2NotProcessedError, lostKeepAliveRace, type CheckedDispatchOptions, type PoolConnection, type TimedExpectClient } from '../pool/index.js';
import type { Endpoint } from '../upstream/endpoint.js';
import type { BodyRelay } from './body-relay.js';
import type { AttemptRecord } from './events.js';
import type { Exchange } from './exchange.js';
import { retryKindOf, type RetryAgain } from './retry-policy.js';
import type { UpstreamTrailers } from './response-headers.js';
import { fieldText, type RawField } from '../http/headers.js';
import { nameIs } from '../http/token.js';
import { errors } from '../http/undici.js';

/**
 * An answer dropped for a retry (a 502/503/504, or a 304 the cache cannot use) is read to its
 * end so its connection can serve again, but only this much of it: past it the connection is
 * discarded (nginx and Envoy drop it at once). An error page is a few KiB.
 */
const DRAIN_MAX_BYTES = 64 * 1024;
/** The longest a dropped answer is drained, or the retry's own delay when that is longer (the wait costs nothing then). */
const DRAIN_MAX_MS = 100;

/**
 * One try of a request at one endpoint: the pooled connection, the body relay, the
 * response timer and how far the try got. It is the undici dispatch handler for that
 * try, so a retry is a new `Attempt` and nothing is reset by hand. It reports to its
 * `Exchange` (which owns the request and the client's response) at named steps.
 */
export class Attempt implements Dispatcher.DispatchHandler, ResponseTimerOwner {
  readonly endpoint: Endpoint;
  readonly record: AttemptRecord;
  readonly relay: BodyRelay | undefined;
  readonly #ex: Exchange;
  /** The waits for the response head and between body bytes. */
  readonly #timer = new ResponseTimer(this);
  /** A pooled connection, or a connection of its own for an `Expect: 100-continue` request. */
  #client: PoolConnection | TimedExpectClient | undefined;
  #abort: ((err?: Error) => void) | undefined;
  #resume: (() => void) | undefined;
  /** The connection was usable (request bytes may have left). */
  #connected = false;
  #responseStarted = false;
  /** The upstream reset the connection before any byte of the request was written on it: provably unread (retry-policy.ts). */
  #neverRead = false;
  /** The connection's socket when the request was handed to it (onConnect), and its bytesWritten then. */
  #socket: Socket | undefined;
  #writtenBefore = 0;
  /** Its response head was written to the client. */
  #passedOn = false;
  /** A 5xx is being drained (the connection is kept) before this retry. */
  #retry: RetryAgain | undefined;
  /** performance.now() when the retry was decided: its delay counts from then, the drain included. */
  #retryFrom = 0;
  /** Bytes of the dropped answer drained so far, and the bound on the drain's time. */
  #drained = 0;
  #drainLimit: Timeout | undefined;
  /** performance.now() when the wait for the response head began (0: not yet). */
  #headWaitFrom = 0;
  /** The exchange gave up on this try (the client's request was refused): errors only settle it. */
  #abandoned = false;
  /**
   * The client's response was completed at the head (a 304 has no body, whatever its
   * Content-Length says, RFC 9110 §8.6): what undici reports afterwards only settles the try.
   */
  #endedAtHead = false;
  /**
   * The request waits behind another one on a busy connection (the endpoint at its
   * `maxConnections`): nothing times it from onConnect, which comes only when the request
   * ahead ends (a long download or an event stream: for ever), so the wait is timed from
   * the dispatch, as long as the try's wait for its head (ConnectionPool.queuedOn: when, else 0).
   */
  #queuedAt = 0;
  /** The try gave up waiting in the connection's queue: it was answered; what the client reports later only settles it. */
  #gaveUp = false;
  /** The failure it gave up with (the one error that still reaches the exchange). */
  #gaveUpWith: Failure | undefined;
  /**
   * HTTP/2 only: the response's Content-Length (-1: none, or a response without a body) and
   * the body bytes that came. Node may end a stream's readable side when the upstream resets
   * it mid-body with CANCEL or NO_ERROR, which reads as complete, where an HTTP/1.1 client
   * reports the short body: so the length is checked here.
   */
  #h2Length = -1;
  #h2Received = 0;
  /** The HTTP/2 upstream did not process the request (RFC 9113 §8.7): safe to send again, any method. */
  #notProcessed = false;

  constructor(ex: Exchange, ep: Endpoint, client: PoolConnection | TimedExpectClient, relay: BodyRelay | undefined, startMs: number) {
    this.#ex = ex;
    this.#timer.sendMs = ex.clientLimits.sendMs;
    this.endpoint = ep;
    this.#client = client;
    this.relay = relay;
    this.record = { endpoint: ep.nextHop, phase: 'connect', connection: client.connected ? 'reused' : 'new', startMs };
    ep.inflight++;
  }

  get connected(): boolean {
    return this.#connected;
  }

  get neverRead(): boolean {
    return this.#neverRead;
  }

  get notProcessed(): boolean {
    return this.#notProcessed;
  }

  /** The try's connection speaks HTTP/2 (its ALPN result, or h2c). Read while the try has its connection. */
  get h2(): boolean {
    return this.#client?.timings.h2 === true;
  }

  get reused(): boolean {
    return this.record.connection === 'reused';
  }

  /** Its response is being drained for a retry already decided. */
  get draining(): boolean {
    return this.#retry !== undefined;
  }

  /** Send the request (once). `fieldsChecked`: every name and value of `headers` is known valid (pool/native-client.ts, CheckedDispatchOptions). */
  dispatch(path: string, method: string, headers: string[], fieldsChecked: boolean): void {
    const client = this.#client!;
    if (client instanceof ExpectClient) {
      client.dispatch({ path, method, headers, body: this.relay ?? null }, this);
      return;
    }
    if (this.endpoint.pool.queuedOn(client)) {
      const now = (this.#queuedAt = performance.now());
      this.#timer.headers(this.#ex.tryTimeoutMs(this, Date.now(), now), now);
    }
    client.dispatch(
      {
        path,
        method: method as Dispatcher.HttpMethod,
        headers,
        body: this.relay ?? null,
        // The attempt times itself (#timer): undici's own timers would swap a FastTimer per
        // phase per request, and those live until its next 1 s tick, reach the old
        // generation and made RSS climb ~25 MB between major GCs under load.
        headersTimeout: 0,
        bodyTimeout: 0,
        fieldsChecked,
      } as CheckedDispatchOptions,
      this,
    );
  }

  // ---- undici dispatch handler -----------------------------------------------------------

  onConnect(abort: (err?: Error) => void): void {
    if (this.#gaveUp) {
      // undici's Client kept the request queued after the try gave up (it cannot drop one): not sent.
      abort();
      return;
    }
    this.#queuedAt = 0;
    this.#abort = abort;
    this.#connected = true;
    const a = this.record;
    const ex = this.#ex;
    a.phase = 'send';
    this.#sentOn(a);
    const now = performance.now();
    a.connectedMs = Math.round(now - ex.t0);
    if (a.connection === 'new' && this.#client) {
      ex.route!.cluster.wait?.connected(this.endpoint);
      const t = this.#client.timings;
      a.dnsMs = t.dnsMs;
      a.tcpMs = t.connectMs;
      a.tlsMs = t.tlsMs;
    }
    // The client left while the request waited for its connection (cancel() had no abort to
    // call then). clientGone, not res.destroyed: an HTTP/2 response has no `destroyed`, and a
    // reset stream's request was written upstream after all (h2-rapid-reset.test finding).
    if (ex.clientGone) {
      abort();
      return;
    }
    this.#headWaitFrom = now;
    this.#timer.headers(ex.tryTimeoutMs(this, Date.now(), now), now);
    const relay = this.relay;
    // The response wait counts from when the whole request has been sent.
    if (relay !== undefined && !relay.readableEnded) {
      relay.sender = this;
      relay.once('end', onRelayEnd);
    }
  }

  /**
   * The request is about to be written on its connection's socket (both clients call
   * onConnect before writing any of it): note how much that socket carried so far. An HTTP/1.1
   * socket that carried bytes carried another request, so this one is sent on a reused
   * connection, whatever the connection was at `acquire` (at `maxConnections` a request waits
   * behind another on a connection that may still have been opening; undici may also have
   * reopened the socket of an idle connection). An HTTP/2 socket is shared: its label stays.
   */
  #sentOn(a: AttemptRecord): void {
    const client = this.#client;
    const socket = client instanceof ExpectClient ? undefined : client?.socket;
    if (socket === undefined) return;
    this.#socket = socket;
    this.#writtenBefore = socket.bytesWritten;
    if (client!.timings.h2 !== true) a.connection = this.#writtenBefore > 0 ? 'reused' : 'new';
  }

  /** The request body has been sent (BodyRelay 'end'). */
  bodySent(): void {
    if (this.record.endMs === undefined && this.#timer.phase === 'headers') this.#timer.restart(performance.now());
  }

  onResponseStarted(): void {
    this.#responseStarted = true;
    const a = this.record;
    a.phase = 'headers';
    a.firstByteMs = Math.round(performance.now() - this.#ex.t0);
  }

  onHeaders(statusCode: number, rawHeaders: RawField[], resume: () => void, _statusText: string): boolean {
    if (statusCode < 100 || statusCode > 599) {
      // RFC 9110 §15: a status outside 100–599 is not HTTP (fuzz finding F7): an invalid response, never passed on.
      this.abort(invalidStatus(statusCode, this.endpoint.nextHop));
      return false;
    }
    if (statusCode < 200) return this.#interim(statusCode, rawHeaders);
    this.#headersArrived(statusCode);
    if (this.h2 && statusCode !== 204 && statusCode !== 304 && this.#ex.method !== 'HEAD') this.#h2Length = contentLength(rawHeaders);
    if (this.#judge(statusCode, rawHeaders)) return true;
    this.#resume = resume;
    if (!this.#ex.writeResponseHead(this, statusCode, rawHeaders)) return false;
    if (this.#retry !== undefined) return true; // sendAgain: drained, then sent again
    this.#passedOn = true;
    if (this.#ex.complete) {
      // The cache answered instead (a 304 to its own validators, or a stale copy for a 5xx):
      // nothing more of this answer goes to the client; a body-carrying one is cut short.
      this.#endedAtHead = true;
      this.#timer.stop();
      if (statusCode !== 304) this.#abort?.();
      return true;
    }
    if (statusCode === 304) {
      // No body follows. undici would report a 304 that carries the Content-Length of the
      // representation as a length mismatch (it exempts only HEAD): end the answer here.
      this.#endedAtHead = true;
      this.#timer.stop();
      this.#ex.responseComplete(null);
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.#endedAtHead) return true;
    this.#timer.progressAt = performance.now();
    if (this.#h2Length >= 0) this.#h2Received += chunk.length;
    if (this.#retry !== undefined) {
      if ((this.#drained += chunk.length) > DRAIN_MAX_BYTES) this.#discard(`more than ${DRAIN_MAX_BYTES} bytes`);
      return true;
    }
    return this.#ex.writeBody(chunk);
  }

  onComplete(rawTrailers: UpstreamTrailers): void {
    if (this.#h2Length >= 0 && this.#h2Received !== this.#h2Length && this.#retry === undefined && !this.#endedAtHead) {
      this.onError(new errors.ResponseContentLengthMismatchError());
      return;
    }
    this.#timer.stop();
    this.#settle(true);
    if (this.#endedAtHead) return;
    if (this.#retry !== undefined) this.#retryAfterDrain();
    else this.#ex.responseComplete(rawTrailers);
  }

  onError(err: Error): void {
    this.#timer.stop();
    if (this.#abandoned || this.#endedAtHead || (this.#gaveUp && err !== this.#gaveUpWith)) {
      this.#settle(false);
      return;
    }
    const connected = this.#connected;
    // https: the dial's TCP connection opened and its TLS handshake did not finish (read before
    // #settle gives the connection back): a reset, close or timeout then is in phase `tls`.
    const tlsHandshake = !connected && this.#client !== undefined && this.#client.timings.handshaking === true;
    // HTTP/2: a stream that fails on a connection the upstream sent a GOAWAY on; the record says so.
    const goaway = this.#client instanceof ExpectClient ? undefined : this.#client?.goaway;
    this.#settle(false);
    const ex = this.#ex;
    if (ex.clientGone && !ex.complete) return; // the client left; our abort came back here
    // The answer dropped for a retry ended early (cut at its drain bound, reset, timed out):
    // nothing of it was passed on, so the retry decided goes on, on another connection.
    if (this.#retry !== undefined) {
      this.#retryAfterDrain();
      return;
    }
    // HTTP/2: a stream the upstream refused, or above its GOAWAY's last-stream-id, or never
    // opened, was not processed (pool/h2-client.ts says so with H2NotProcessedError).
    const unprocessed = !this.#responseStarted && err instanceof H2NotProcessedError ? err : undefined;
    let f = err instanceof Failure
      ? err
      : unprocessed !== undefined
        ? h2StreamNotProcessed(unprocessed.why, unprocessed.streamOnly, this.endpoint.nextHop, err)
        : classify(err, {
          connected,
          responseStarted: this.#responseStarted,
          headersReceived: this.#passedOn,
          bodyChunked: this.#passedOn && !ex.res.hasHeader('content-length'),
          tlsHandshake,
          nextHop: this.endpoint.nextHop,
        });
    if (goaway !== undefined && unprocessed === undefined && !(err instanceof Failure)) f = withDetail(f, `${f.detail}, after ${goaway} on its connection`);
    if (unprocessed !== undefined) this.#notProcessed = true;
    else if (connected && !this.#responseStarted && !(err instanceof Failure)) {
      const code = (err as { code?: unknown }).code;
      // A reset proves the request unread only while nothing of it was written: an upstream
      // that read the head, acted and died with the body unread resets the connection too.
      // bytesWritten counts what was handed to the socket, sent or not (so it errs toward "written").
      this.#neverRead = (code === 'ECONNRESET' || code === 'EPIPE') && this.#socket !== undefined && this.#socket.bytesWritten === this.#writtenBefore;
    }
    const a = this.record;
    a.phase = f.phase;
    a.error = f.type;
    a.detail = f.detail;
    if (!this.#responseStarted && this.#headWaitFrom > 0) ex.headWaitEnded(performance.now() - this.#headWaitFrom);
    // A reused connection closed before any response byte is the keep-alive race (the pool's
    // risk, retried on a fresh connection), not evidence against the endpoint.
    const race = lostKeepAliveRace(f, this.reused, this.#responseStarted);
    if (f.source === 'upstream' && !race) ex.route!.cluster.recordOutcome(this.endpoint, retryKindOf(f, connected) === 'timeout' ? 'timeout' : 'gateway-failure', Date.now());
    ex.tryFailed(this, f, this.#passedOn);
  }

  /**
   * The cache cannot use this answer (a 304 to its own validators naming none of its stored
   * responses): it is drained and the request goes again at once, like a retry but neither
   * the retry policy's nor the budget's (the gateway's own question was the cause).
   */
  sendAgain(detail: string): void {
    this.record.detail = detail;
    this.#draining({ action: 'retry', fresh: false, delayMs: 0, avoid: this.endpoint });
  }

  /**
   * Drop this answer for `retry`: drain it within its bounds (DRAIN_MAX_BYTES, and
   * DRAIN_MAX_MS or the retry's delay, never past the route's deadline), else discard it
   * with its connection. A slow or endless error body held the request for its whole length.
   */
  #draining(retry: RetryAgain): void {
    this.#retry = retry;
    const now = (this.#retryFrom = performance.now());
    const ex = this.#ex;
    const deadline = ex.route!.deadlineMs;
    const ms = Math.min(Math.max(DRAIN_MAX_MS, retry.delayMs), deadline === undefined ? Infinity : deadline - (now - ex.t0));
    if (ms <= 0) this.#discard('the deadline');
    else this.#drainLimit = timeout(() => this.#discard(`${Math.round(ms)} ms`), ms);
  }

  /** The dropped answer's drain went past a bound: cut it, and its connection (undici and NativeClient destroy the socket of an aborted request). */
  #discard(bound: string): void {
    if (this.record.endMs !== undefined) return;
    this.record.detail = `${this.record.detail ?? ''} (its body discarded after ${bound})`.trim();
    this.#abort?.();
  }

  /** The dropped answer is over (drained, or cut): the retry, after what is left of its delay. */
  #retryAfterDrain(): void {
    const retry = this.#retry!;
    this.#drainLimit?.cancel();
    this.#drainLimit = undefined;
    const left = Math.max(0, Math.round(this.#retryFrom + retry.delayMs - performance.now()));
    this.#ex.retry(left === retry.delayMs ? retry : { ...retry, delayMs: left });
  }

  // ---- the steps of a response head ------------------------------------------------------

  /**
   * 1xx: relay 100 Continue to a client that expects it, forward 103 Early Hints. The wait for
   * the final head goes on as it was: an interim answer is not the head the response timeout
   * waits for. Restarting it at each 1xx let an upstream that sends 103s or 102s more often
   * than the timeout, and never a final status, hold the request, its client, its upstream
   * connection and its admission slot for ever (the stall hunt of session 14,
   * test/gateway/stall-interim-forever.test.ts). After a 100 the body goes up, and the wait is
   * extended while it moves and restarted once it is sent (`bodySent`).
   */
  #interim(statusCode: number, rawHeaders: RawField[]): boolean {
    if (statusCode === 100) this.#ex.continueClient();
    else if (statusCode === 103 && this.#retry === undefined) this.#ex.earlyHints(rawHeaders);
    return true;
  }

  /** The final head came: time the body, record it, feed the latency-aware balancer. */
  #headersArrived(statusCode: number): void {
    const now = performance.now();
    const ex = this.#ex;
    const cluster = ex.route!.cluster;
    this.#timer.body(cluster.idleTimeoutMs, now);
    const a = this.record;
    a.phase = 'body';
    a.status = statusCode;
    ex.headersAt = now;
    a.headersMs = Math.round(now - ex.t0);
    cluster.observeLatency(this.endpoint, a.headersMs - a.startMs, Date.now());
  }

  /** Passive health from the status, and whether this answer is drained for a retry instead of passed on. */
  #judge(statusCode: number, rawHeaders: RawField[]): boolean {
    const cluster = this.#ex.route!.cluster;
    const wall = Date.now();
    if (statusCode < 500) {
      cluster.recordOutcome(this.endpoint, 'success', wall);
      return false;
    }
    cluster.recordOutcome(this.endpoint, 'upstream-5xx', wall);
    const d = this.#ex.decideOnStatus(this, statusCode, rawHeaders);
    if (d.action !== 'retry') return false;
    this.record.error = undefined;
    this.record.detail = `upstream answered ${statusCode}; retrying`;
    this.#draining(d);
    return true;
  }

  // ---- the exchange's controls -----------------------------------------------------------

  /** Stop this try with an error (a header the gateway cannot forward, a failing hook). */
  abort(f: Failure): void {
    this.#abort?.(f);
  }

  /** The client's request was refused mid-body: stop the try; its error only settles it. */
  abandon(f: Failure): void {
    this.#abandoned = true;
    this.relay?.destroy();
    this.#abort?.(f);
  }

  /** The client left before the response was complete: stop the upstream work. */
  cancel(): void {
    this.#timer.stop();
    const abort = this.#abort;
    if (abort !== undefined && this.record.endMs === undefined) abort();
    else {
      // Still queued behind another request: out of the queue where the client can (else aborted at its onConnect).
      if (this.#queuedAt > 0 && this.record.endMs === undefined) (this.#client as PoolConnection | undefined)?.drop?.(this);
      this.#settle(false);
    }
    this.relay?.destroy();
  }

  /** The client's buffer is full: the upstream waits, and that is not its delay. */
  pause(): void {
    this.#timer.pause(performance.now());
  }

  /** The client took the buffered body: let undici read from the upstream again. */
  resume(): void {
    this.#timer.resume(performance.now());
    this.#resume?.();
  }

  // ---- the response timer (ResponseTimerOwner) ---------------------------------------------

  uploading(): BodyRelay | undefined {
    // A client waiting for its 100 Continue sends nothing until the upstream answers, so its
    // body is not "still going up": counting it so extended the head wait for ever against a
    // silent upstream (the stall hunt of session 13, test/gateway/stall-expect-silent.test.ts).
    if (this.#ex.bodyDeferred) return undefined;
    const relay = this.relay;
    return relay !== undefined && !relay.readableEnded ? relay : undefined;
  }

  uploadedBytes(): number {
    return this.relay?.bytes ?? 0;
  }

  timedOut(err: Error): void {
    if (this.record.endMs !== undefined) return;
    if (this.#abort === undefined) {
      if (this.#queuedAt > 0) this.#queueTimedOut();
      return;
    }
    this.#abort(err);
  }

  /** The try waited its whole head timeout behind the request ahead on its connection: given up unsent (ConnectionPool.giveUpQueued). */
  #queueTimedOut(): void {
    const ep = this.endpoint;
    this.#gaveUp = true;
    this.onError((this.#gaveUpWith = ep.pool.giveUpQueued(this.#client as PoolConnection, this, ep.nextHop, this.#queuedAt, performance.now())));
  }

  /** The client did not take the response for the send timeout. */
  notReading(detail: string): void {
    if (this.record.endMs !== undefined) return;
    this.#ex.clientNotReading(detail);
  }

  /** The try is over: give back the connection and the endpoint slot (once). */
  #settle(ok: boolean): void {
    const a = this.record;
    if (a.endMs !== undefined) return;
    a.endMs = Math.round(performance.now() - this.#ex.t0);
    const ep = this.endpoint;
    ep.inflight--;
    const client = this.#client;
    if (client !== undefined) {
      this.#client = undefined;
      if (client instanceof ExpectClient) client.close();
      else ep.pool.release(client, Date.now(), ok);
    }
  }
}

/** The Content-Length of a response head, or -1 when it has none (or not one number). */
function contentLength(raw: readonly RawField[]): number {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (!nameIs(fieldText(name), 'content-length')) continue;
    const v = fieldText(raw[i + 1]!).trim();
    return /^\d{1,15}$/.test(v) ? Number(v) : -1;
  }
  return -1;
}

/** A module function, not a closure per request: the relay knows the try sending it. */
function onRelayEnd(this: BodyRelay): void {
  this.sender?.bodySent();
}

/** An upstream status that is not an HTTP status (outside 100–599). */
export function invalidStatus(statusCode: number, nextHop: string | undefined): Failure {
  return new Failure({ type: 'http_protocol_error', phase: 'headers', nextHop, detail: `the upstream answered status ${statusCode}, outside 100-599`, retrySafe: false });
}

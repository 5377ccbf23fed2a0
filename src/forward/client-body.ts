import type { IncomingMessage } from 'node:http';
import { ClientBodyStream } from '../http/client-body.js';
import { Failure } from '../failure/index.js';
import type { MeterSession } from '../tenants/index.js';
import { BodyTimer, type BodyTimerOwner, type ClientBodyLimits } from '../timing/body-timer.js';

/**
 * A client's request body as undici reads it (HTTP proxy): the shared `ClientBodyStream`
 * (attached on first read, the client timed), metered. A client too slow destroys it with a `request_timeout` Failure, which undici reports back
 * to the relay: 408 before the response head, the connection cut after it; the destination
 * request is aborted either way (its connection is not reused). The client's request itself
 * is never destroyed here: its socket still has to carry the 408.
 */
export class ClientBody extends ClientBodyStream implements BodyTimerOwner {
  readonly #session: MeterSession;

  constructor(req: IncomingMessage, session: MeterSession, limits: ClientBodyLimits, deferred = false) {
    super(req, deferred);
    this.#session = session;
    if (BodyTimer.active(limits)) this.timer = new BodyTimer(this, limits);
  }

  protected taken(chunk: Buffer): void {
    this.#session.up(chunk.length);
  }

  bodyStalled(detail: string): void {
    this.destroy(new Failure({ type: 'http_request_error', phase: 'send', reason: 'request_timeout', detail }));
  }
}

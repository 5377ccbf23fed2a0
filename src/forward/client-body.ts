import type { IncomingMessage } from 'node:http';
import { ClientBodyStream } from '../http/client-body.js';
import { Failure } from '../failure/index.js';
import type { MeterSession, PlanEnforcer } from '../tenants/index.js';
import { quotaOver } from './quota-gate.js';
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
  readonly #plans: PlanEnforcer;
  readonly #user: string | null;

  constructor(req: IncomingMessage, session: MeterSession, limits: ClientBodyLimits, deferred: boolean, plans: PlanEnforcer, user: string | null) {
    super(req, deferred);
    this.#session = session;
    this.#plans = plans;
    this.#user = user;
    if (BodyTimer.active(limits)) this.timer = new BodyTimer(this, limits);
  }

  /**
   * The byte quota is checked before a chunk is counted, as in a tunnel: the chunk that
   * crosses the limit still goes up, the next one is cut (not counted, not passed on). The
   * stream is destroyed with the quota's refusal, which undici reports back to the relay:
   * a 429 before the response head, the connection cut after it.
   */
  protected taken(chunk: Buffer): void {
    const user = this.#user;
    if (user !== null) {
      const over = quotaOver(this.#plans, user);
      if (over !== undefined) {
        this.#session.quotaCut ??= over.detail;
        this.destroy(over);
        return;
      }
    }
    this.#session.up(chunk.length);
  }

  bodyStalled(detail: string): void {
    this.destroy(new Failure({ type: 'http_request_error', phase: 'send', reason: 'request_timeout', detail }));
  }
}

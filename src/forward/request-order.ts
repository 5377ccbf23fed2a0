import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { MAX_PIPELINED_RUNNING } from '../http/pipelining.js';
import { SAFE_METHODS } from '../http/methods.js';

export function isSafeMethod(method: string | undefined): boolean {
  return method !== undefined && SAFE_METHODS.has(method);
}

const kOrder = Symbol('gatewise.requestOrder');
type OrderedSocket = Socket & { [kOrder]?: RequestOrder };
type OrderedResponse = ServerResponse & { [kOrder]?: RequestOrder; [kUnsafe]?: boolean };
const kUnsafe = Symbol('gatewise.unsafe');

/**
 * The order of pipelined requests on one client connection (RFC 9112 §9.3.2). Node's
 * http.Server emits every request of a pipeline as soon as it is parsed; forwarded as
 * they come, a POST behind a POST ran in parallel with it. Here a request is started only
 * when that is safe: an unsafe request (not GET, HEAD, OPTIONS, TRACE) waits until every
 * earlier request of the connection has finished, and any request waits while an
 * earlier unsafe one is in flight. Safe requests behind safe ones still run at once, at
 * most MAX_PIPELINED_RUNNING (http/pipelining.ts; Node writes their responses in order).
 *
 * One small object per connection (made at its first request), a counter bump and a
 * 'close' listener (a module function) per request.
 */
export class RequestOrder {
  #running = 0;
  #unsafeRunning = 0;
  readonly #waiting: Array<{ req: IncomingMessage; res: ServerResponse }> = [];
  readonly #start: (req: IncomingMessage, res: ServerResponse) => void;

  private constructor(start: (req: IncomingMessage, res: ServerResponse) => void) {
    this.#start = start;
  }

  /**
   * Start `req` now (through `start`) or when the requests before it allow. `start` must
   * be the same function for every request of a server (it is kept per connection).
   */
  static admit(req: IncomingMessage, res: ServerResponse, start: (req: IncomingMessage, res: ServerResponse) => void): void {
    const socket = req.socket as OrderedSocket;
    const order = (socket[kOrder] ??= new RequestOrder(start));
    order.#admit(req, res);
  }

  #admit(req: IncomingMessage, res: ServerResponse): void {
    if (this.#waiting.length > 0 || !this.#mayStart(req)) {
      this.#waiting.push({ req, res });
      return;
    }
    this.#run(req, res);
  }

  #mayStart(req: IncomingMessage): boolean {
    if (this.#unsafeRunning > 0) return false;
    return this.#running === 0 || (isSafeMethod(req.method) && this.#running < MAX_PIPELINED_RUNNING);
  }

  #run(req: IncomingMessage, res: ServerResponse): void {
    const r = res as OrderedResponse;
    this.#running++;
    if (!isSafeMethod(req.method)) {
      this.#unsafeRunning++;
      r[kUnsafe] = true;
    }
    r[kOrder] = this;
    res.once('close', onResponseClose);
    this.#start(req, res);
  }

  /** A response of this connection ended (finished or cut): start what may start now. */
  done(res: OrderedResponse): void {
    this.#running--;
    if (res[kUnsafe]) this.#unsafeRunning--;
    while (this.#waiting.length > 0) {
      const next = this.#waiting[0]!;
      if (next.res.destroyed) {
        this.#waiting.shift();
        continue;
      }
      if (!this.#mayStart(next.req)) return;
      this.#waiting.shift();
      this.#run(next.req, next.res);
    }
  }
}

function onResponseClose(this: OrderedResponse): void {
  const order = this[kOrder];
  this[kOrder] = undefined;
  order?.done(this);
}

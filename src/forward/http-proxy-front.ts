import type { IncomingMessage, ServerResponse } from 'node:http';
import { Failure } from '../failure/index.js';
import { viaContains } from '../http/headers.js';
import type { FinishFields, MeterSession } from '../tenants/index.js';
import { newRequestId, clientAddressFor, hostPort } from './context.js';
import { sendFailure } from './http-failure.js';
import { HttpRelay } from './http-relay.js';
import { parseAbsoluteTarget } from './http-target.js';
import { ForwardRequest, type ForwardPipeline, type ForwardResponder } from './pipeline.js';
import { parseBasicCredentials } from './proxy-auth.js';

/** One absolute-form request's answers: a refusal is a full response with Proxy-Status. */
class HttpResponder implements ForwardResponder {
  readonly okFields: FinishFields;
  readonly #pipeline: ForwardPipeline;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #session: MeterSession;

  constructor(pipeline: ForwardPipeline, req: IncomingMessage, res: ServerResponse, session: MeterSession) {
    this.#pipeline = pipeline;
    this.#req = req;
    this.#res = res;
    this.#session = session;
    this.okFields = { method: req.method };
  }

  refuse(f: Failure): FinishFields {
    this.#req.resume();
    sendFailure(this.#pipeline.ctx, this.#req, this.#res, f, this.#session.requestId);
    return { status: f.status, method: this.#req.method };
  }

  gone(): FinishFields {
    return { method: this.#req.method };
  }
}

/**
 * The HTTP proxy front for absolute-form requests (`GET http://host/path`): parses the
 * target and credentials, refuses loops (its own name in `Via`), and hands the request to
 * the pipeline with the HTTP relay, which forwards it and streams the response back.
 */
export class HttpProxyFront {
  readonly #pipeline: ForwardPipeline;

  constructor(pipeline: ForwardPipeline) {
    this.#pipeline = pipeline;
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const pipeline = this.#pipeline;
    const ctx = pipeline.ctx;
    const session = ctx.meter.open({ protocol: 'http', requestId: newRequestId(), user: null, clientAddress: clientAddressFor(ctx, req.socket) });
    const responder = new HttpResponder(pipeline, req, res, session);
    const authHeader = req.headers['proxy-authorization'];
    const creds = parseBasicCredentials(authHeader) ?? (authHeader !== undefined ? 'malformed' : undefined);
    const target = parseAbsoluteTarget(req.url);
    const freq = new ForwardRequest({ kind: 'request', target: target instanceof Failure ? { host: '', port: 0 } : target, method: req.method, session, client: req.socket });
    if (target instanceof Failure) return pipeline.refuseAfterAuth(freq, creds, responder, target);
    const via = req.headers.via;
    if (via && viaContains([via], ctx.settings.name)) {
      session.destination = hostPort(target.host, target.port);
      const loop = new Failure({ type: 'proxy_loop_detected', phase: 'accept', nextHop: session.destination, detail: 'the request already passed through this proxy' });
      return pipeline.refuseAfterAuth(freq, creds, responder, loop);
    }
    void pipeline.run(freq, creds, responder, new HttpRelay(req, res, target, responder));
  }
}

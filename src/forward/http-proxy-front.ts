import type { IncomingMessage, ServerResponse } from 'node:http';
import { Failure } from '../failure/index.js';
import { viaContains } from '../http/headers.js';
import { newRequestId, clientAddressFor, hostPort } from './context.js';
import { HttpExchange } from './http-relay.js';
import { parseAbsoluteTarget } from './http-target.js';
import { ForwardRequest, type ForwardPipeline } from './pipeline.js';
import { headCredentials } from './proxy-auth.js';

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
    const session = ctx.meter.open({ protocol: 'http', requestId: newRequestId, user: null, clientAddress: clientAddressFor(ctx, req.socket) });
    const exchange = new HttpExchange(ctx, req, res, session.requestId);
    const creds = headCredentials(req.headers['proxy-authorization'], req.rawHeaders);
    const target = parseAbsoluteTarget(req.url);
    const freq = new ForwardRequest({ kind: 'request', target: target instanceof Failure ? { host: '', port: 0 } : target, method: req.method, session, client: req.socket });
    if (target instanceof Failure) return pipeline.refuseAfterAuth(freq, creds, exchange, target);
    exchange.target = target;
    const via = req.headers.via;
    if (via && viaContains([via], ctx.settings.name)) {
      session.destination = hostPort(target.host, target.port);
      const loop = new Failure({ type: 'proxy_loop_detected', phase: 'accept', nextHop: session.destination, detail: 'the request already passed through this proxy' });
      return pipeline.refuseAfterAuth(freq, creds, exchange, loop);
    }
    void pipeline.run(freq, creds, exchange, exchange);
  }
}

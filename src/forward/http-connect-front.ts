import type { Socket } from 'node:net';
import { CLIENT_CLOSED_STATUS, Failure } from '../failure/index.js';
import type { ExitChoice } from '../egress/index.js';
import type { FinishFields } from '../tenants/index.js';
import type { ConnectRequest } from './connect-head.js';
import { newRequestId, clientAddressFor } from './context.js';
import { exitHeaders } from './egress-admission.js';
import { debugValue, wantsDebug } from './debug-header.js';
import { writeRawFailure } from './http-failure.js';
import { parseAuthorityTarget } from './http-target.js';
import { ForwardRequest, type ForwardPipeline, type ForwardResponder } from './pipeline.js';
import { headCredentials } from './proxy-auth.js';

const OK: FinishFields = { status: 200, method: 'CONNECT' };
const GONE: FinishFields = { status: CLIENT_CLOSED_STATUS, method: 'CONNECT' };

/**
 * The CONNECT front: parses the request-target and credentials, hands the tunnel to the
 * pipeline, and answers in HTTP: a refusal is a full response with Proxy-Status, an open
 * tunnel is `200 Connection Established` (with the exit's headers through a pool).
 */
export class HttpConnectFront {
  readonly #pipeline: ForwardPipeline;
  /** The answer to a direct tunnel, encoded once. */
  readonly #established: Buffer;

  constructor(pipeline: ForwardPipeline) {
    this.#pipeline = pipeline;
    this.#established = Buffer.from(`HTTP/1.1 200 Connection Established\r\nvia: 1.1 ${pipeline.ctx.settings.name}\r\n\r\n`, 'latin1');
  }

  handle(head: ConnectRequest, socket: Socket, early: Buffer): void {
    // Bytes the client sends before the tunnel opens (a TLS ClientHello right behind the
    // CONNECT) wait in the socket's buffer until the tunnel reads them; flowing with no
    // listener, they would be dropped.
    socket.pause();
    // No 'error' listener here: the listener put one on every connection it hands on.
    const ctx = this.#pipeline.ctx;
    const session = ctx.meter.open({ protocol: 'connect', requestId: newRequestId, user: null, clientAddress: clientAddressFor(ctx, socket) });
    const target = parseAuthorityTarget(head.url);
    const req = new ForwardRequest({ kind: 'tunnel', target: target instanceof Failure ? { host: '', port: 0 } : target, method: 'CONNECT', session, client: socket });
    const responder = new ConnectResponder(this, req, head, early);
    const creds = headCredentials(head.headers['proxy-authorization'], head.rawHeaders);
    if (target instanceof Failure) return this.#pipeline.refuseAfterAuth(req, creds, responder, target);
    void this.#pipeline.run(req, creds, responder, undefined);
  }

  /** The 200 for a tunnel through `choice` (or the pre-encoded direct one); with Gatewise-Debug when `debug` (a user who asked). */
  established(choice: ExitChoice | undefined, debug?: string): Buffer | string {
    if (choice === undefined && debug === undefined) return this.#established;
    let extra = '';
    for (const [k, v] of Object.entries(exitHeaders(choice))) extra += `${k}: ${v}\r\n`;
    if (debug !== undefined) extra += `gatewise-debug: ${debug}\r\n`;
    return `HTTP/1.1 200 Connection Established\r\nvia: 1.1 ${this.#pipeline.ctx.settings.name}\r\n${extra}\r\n`;
  }

  get pipeline(): ForwardPipeline {
    return this.#pipeline;
  }
}

/** One CONNECT's answers. */
class ConnectResponder implements ForwardResponder {
  readonly okFields = OK;
  readonly req: ForwardRequest;
  readonly #front: HttpConnectFront;
  readonly #head: ConnectRequest;
  readonly #early: Buffer;

  constructor(front: HttpConnectFront, req: ForwardRequest, head: ConnectRequest, early: Buffer) {
    this.#front = front;
    this.req = req;
    this.#head = head;
    this.#early = early;
  }

  refuse(f: Failure, debug?: string): FinishFields {
    const socket = this.req.client;
    socket.resume(); // read (and drop) what follows, so the client's close is seen
    writeRawFailure(this.#front.pipeline.ctx, socket, f, this.req.requestId, this.#head.headers.accept, debug);
    return { status: f.status, method: 'CONNECT' };
  }

  opened(_upstream: Socket, choice: ExitChoice | undefined): Buffer {
    const ctx = this.#front.pipeline.ctx;
    this.req.client.write(this.#front.established(choice, wantsDebug(ctx, this.req) ? debugValue(ctx, this.req, choice, undefined) : undefined));
    return this.#early;
  }

  gone(): FinishFields {
    return GONE;
  }
}

import type { Socket } from 'node:net';
import { classify, connectionCut, type Failure } from '../../failure/index.js';
import type { FinishFields } from '../../tenants/index.js';
import { destroyAfter } from '../../timing/deadlines.js';
import { handshakeLeft } from '../../http/connection-gate.js';
import { newRequestId, clientAddressFor } from '../context.js';
import { ForwardRequest, type ForwardPipeline, type ForwardResponder } from '../pipeline.js';
import { ByteReader, HandshakeEnded } from './byte-reader.js';
import { handshakeFailure } from './socks-refusal.js';

/**
 * What the SOCKS4 and SOCKS5 fronts share: a meter session and a byte reader per
 * connection, a request value the handshake fills in, and one ending for a handshake the
 * client abandons (closed or stalled: no answer is due, the record says so) or overflows
 * (answered with the protocol's refusal).
 */
export abstract class SocksFront<R extends ForwardResponder> {
  protected readonly pipeline: ForwardPipeline;
  readonly #protocol: 'socks4' | 'socks5';
  readonly #Responder: new (socket: Socket, reader: ByteReader) => R;

  /** `Responder`: the class of one connection's responder. */
  constructor(pipeline: ForwardPipeline, protocol: 'socks4' | 'socks5', Responder: new (socket: Socket, reader: ByteReader) => R) {
    this.pipeline = pipeline;
    this.#protocol = protocol;
    this.#Responder = Responder;
  }

  /** Read the handshake and hand the request to the pipeline. */
  protected abstract run(socket: Socket, reader: ByteReader, req: ForwardRequest, responder: R): Promise<void>;

  /** This protocol's answer to a connection refused at a listener limit, from its first bytes. */
  protected abstract atLimit(first: Buffer): { bytes: Buffer; fields: FinishFields };

  /** A connection refused at a listener limit: answered in this protocol, recorded, closed. */
  refuseConnection(socket: Socket, first: Buffer, f: Failure): void {
    const ctx = this.pipeline.ctx;
    const session = ctx.meter.open({ protocol: this.#protocol, requestId: newRequestId(), user: null, clientAddress: clientAddressFor(ctx, socket) });
    const { bytes, fields } = this.atLimit(first);
    socket.on('error', ignore);
    if (socket.writable) socket.end(bytes);
    destroyAfter(socket, REFUSAL_LINGER_MS);
    session.finish({ ...fields, error: f.type, reason: f.reason, phase: f.phase, refused: true, endedBy: f.source });
  }

  accept(socket: Socket, first: Buffer): void {
    const ctx = this.pipeline.ctx;
    const protocol = this.#protocol;
    const session = ctx.meter.open({ protocol, requestId: newRequestId, user: null, clientAddress: clientAddressFor(ctx, socket) });
    // The handshake time counts from the connection's accept (shorter under pressure: connection-gate.ts).
    const reader = new ByteReader(socket, first, { timeoutMs: handshakeLeft(socket, ctx.settings.handshakeTimeoutMs) });
    const responder = new this.#Responder(socket, reader);
    const req = new ForwardRequest({ kind: 'tunnel', target: { host: '', port: 0 }, session, client: socket });
    this.run(socket, reader, req, responder).catch((err: unknown) => {
      reader.detach();
      const what = protocol === 'socks4' ? 'SOCKS4' : 'SOCKS5';
      if (err instanceof HandshakeEnded && err.reason === 'overflow') return this.pipeline.refuse(req, responder, handshakeFailure(err, what));
      // A handshake whose connection close() cut at the drain timeout (the client had not left first) is the proxy's, with the drain's failure.
      const cut = err instanceof HandshakeEnded && err.reason === 'closed' ? connectionCut(ctx.cut, socket, 'accept') : undefined;
      const f = cut ?? (err instanceof HandshakeEnded ? handshakeFailure(err, what) : classify(err, { connected: false, responseStarted: false, headersReceived: false }));
      socket.destroy();
      // A handshake the client left or stalled is the client's; one whose deadline passed during the proxy's own check is the proxy's.
      const endedBy = cut !== undefined ? 'gateway' : err instanceof HandshakeEnded ? (err.duringProxyWork ? 'gateway' : 'client') : f.source;
      session.finish({ error: f.type, reason: f.reason, phase: f.phase, detail: f.detail, refused: true, endedBy });
    });
  }
}

function ignore(): void {}

/** How long a refused SOCKS client has to read its reply before the socket is destroyed. */
const REFUSAL_LINGER_MS = 2000;

/**
 * A SOCKS connection's answers, shared shape: the reader stops at any answer; a refusal
 * writes its bytes (if any), ends and lingers; a granted tunnel writes the protocol's
 * success reply and hands the early bytes on.
 */
export abstract class SocksResponder implements ForwardResponder {
  abstract readonly okFields: FinishFields;
  readonly socket: Socket;
  readonly reader: ByteReader;

  constructor(socket: Socket, reader: ByteReader) {
    this.socket = socket;
    this.reader = reader;
  }

  /** The refusal's bytes in this protocol (undefined: none) and its record fields. */
  protected abstract refusal(f: Failure): { bytes: Buffer | undefined; fields: FinishFields };

  /** The success reply for a tunnel to `upstream`. */
  protected abstract granted(upstream: Socket): Buffer;

  refuse(f: Failure): FinishFields {
    this.reader.detach();
    const { bytes, fields } = this.refusal(f);
    const socket = this.socket;
    if (bytes && socket.writable) socket.end(bytes);
    else socket.end();
    destroyAfter(socket, REFUSAL_LINGER_MS);
    return fields;
  }

  opened(upstream: Socket): Buffer {
    const early = this.reader.detach();
    this.socket.write(this.granted(upstream));
    return early;
  }

  gone(): FinishFields {
    this.reader.detach();
    return {};
  }
}

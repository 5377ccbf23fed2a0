import type { Socket } from 'node:net';
import { Failure, classify } from '../../failure/index.js';
import type { FinishFields, MeterSession } from '../../tenants/index.js';
import { newRequestId, clientAddressFor } from '../context.js';
import { ForwardRequest, type ForwardPipeline, type ForwardResponder } from '../pipeline.js';
import type { EgressRoute } from '../../egress/index.js';
import { ByteReader, HandshakeEnded } from './byte-reader.js';
import { AUTH_STATUS, SOCKS5_REPLY, socks5ReplyFor } from './reply-codes.js';
import { AddressTypeError, encodeAddress, readAddress, type SocksTarget } from './socks-address.js';
import { handshakeFailure, protocolError } from './socks-refusal.js';
import { UdpAssociation } from './socks5-udp-relay.js';
import { destroyAfter } from '../../timing/deadlines.js';

const VERSION = 0x05;
const METHOD = { none: 0x00, userPass: 0x02, noAcceptable: 0xff } as const;
const CMD = { connect: 0x01, bind: 0x02, udpAssociate: 0x03 } as const;
const GONE: FinishFields = {};

/** A SOCKS5 reply: VER REP RSV ATYP BND.ADDR BND.PORT. */
export function socks5Reply(code: number, address?: string, port = 0): Buffer {
  return Buffer.concat([Buffer.from([VERSION, code, 0x00]), encodeAddress(address, port)]);
}

/** Where in the handshake a refusal comes: each stage answers with its own bytes. */
type Stage = 'greeting' | 'method' | 'auth' | 'request';

/**
 * One SOCKS5 connection's answers. Refusals answer the bytes of the stage they come in
 * (nothing, `VER 0xFF`, the RFC 1929 failure status, or a reply with the code mapped
 * from the failure type) and end the connection.
 */
class Socks5Responder implements ForwardResponder {
  readonly okFields: FinishFields = { reply: SOCKS5_REPLY.succeeded };
  stage: Stage = 'greeting';
  /** A reply code chosen by the front (protocol errors), instead of the failure type's. */
  code: number | undefined;
  readonly #socket: Socket;
  readonly #reader: ByteReader;

  constructor(socket: Socket, reader: ByteReader) {
    this.#socket = socket;
    this.#reader = reader;
  }

  refuse(f: Failure): FinishFields {
    this.#reader.detach();
    let bytes: Buffer | undefined;
    let reply: number | undefined;
    if (this.stage === 'method') bytes = Buffer.from([VERSION, METHOD.noAcceptable]);
    else if (this.stage === 'auth') bytes = Buffer.from([0x01, AUTH_STATUS.failure]);
    else if (this.stage === 'request') {
      reply = this.code ?? socks5ReplyFor(f);
      bytes = socks5Reply(reply);
    }
    const socket = this.#socket;
    if (bytes && socket.writable) socket.end(bytes);
    else socket.end();
    destroyAfter(socket, 2000);
    return reply === undefined ? {} : { reply };
  }

  opened(upstream: Socket): Buffer {
    const early = this.#reader.detach();
    this.#socket.write(socks5Reply(SOCKS5_REPLY.succeeded, upstream.localAddress, upstream.localPort ?? 0));
    return early;
  }

  gone(): FinishFields {
    this.#reader.detach();
    return GONE;
  }
}

/**
 * The SOCKS5 front (RFC 1928, RFC 1929 auth): greeting → method → (user/password) →
 * request. It only reads and answers SOCKS5; authentication, rules, plans, admission,
 * egress and relay are the pipeline's, for CONNECT tunnels and UDP associations alike.
 */
export class Socks5Front {
  readonly #pipeline: ForwardPipeline;

  constructor(pipeline: ForwardPipeline) {
    this.#pipeline = pipeline;
  }

  readonly handle = (socket: Socket, first: Buffer): void => {
    const ctx = this.#pipeline.ctx;
    const session = ctx.meter.open({ protocol: 'socks5', requestId: newRequestId(), user: null, clientAddress: clientAddressFor(ctx, socket) });
    const reader = new ByteReader(socket, first, { timeoutMs: ctx.settings.handshakeTimeoutMs });
    const responder = new Socks5Responder(socket, reader);
    const req = new ForwardRequest({ kind: 'tunnel', target: { host: '', port: 0 }, session, client: socket });
    this.#run(socket, reader, req, responder).catch((err: unknown) => {
      // The client closed, stalled or overflowed the handshake: no answer is due.
      const f = err instanceof HandshakeEnded ? handshakeFailure(err, 'SOCKS5') : classify(err, { connected: false, responseStarted: false, headersReceived: false });
      reader.detach();
      socket.destroy();
      session.finish({ error: f.type, refused: true, endedBy: err instanceof HandshakeEnded ? 'client' : 'proxy' });
    });
  };

  async #run(socket: Socket, r: ByteReader, req: ForwardRequest, responder: Socks5Responder): Promise<void> {
    const pipeline = this.#pipeline;
    const ctx = pipeline.ctx;
    const refuse = (f: Failure, code?: number): void => {
      responder.code = code;
      pipeline.refuse(req, responder, f);
    };
    // --- greeting: VER NMETHODS METHODS
    const [ver, nMethods] = await r.read(2);
    if (ver !== VERSION) return refuse(protocolError('not SOCKS5'));
    responder.stage = 'method';
    if (nMethods === 0) return refuse(protocolError('SOCKS5 greeting offers no methods'));
    const methods = await r.read(nMethods!);
    let method: number = METHOD.noAcceptable;
    if (!ctx.settings.authRequired && methods.includes(METHOD.none)) method = METHOD.none;
    else if (methods.includes(METHOD.userPass)) method = METHOD.userPass;
    if (method === METHOD.noAcceptable) {
      return refuse(new Failure({ type: 'http_request_denied', phase: 'accept', reason: 'proxy_auth_required', detail: 'client offers no acceptable authentication method' }));
    }
    socket.write(Buffer.from([VERSION, method]));

    // --- RFC 1929: VER ULEN UNAME PLEN PASSWD
    let route: EgressRoute = { user: null };
    if (method === METHOD.userPass) {
      responder.stage = 'auth';
      const authVer = await r.byte();
      if (authVer !== 0x01) return refuse(protocolError('bad username/password sub-negotiation version'));
      const name = (await r.read(await r.byte())).toString('utf8');
      const password = (await r.read(await r.byte())).toString('utf8');
      const found = name.length > 0 ? await pipeline.authenticateName(name, password) : undefined;
      if (found === undefined) {
        return refuse(new Failure({ type: 'http_request_denied', phase: 'accept', reason: 'proxy_auth_required', detail: 'wrong user name or password' }));
      }
      socket.write(Buffer.from([0x01, AUTH_STATUS.success]));
      route = found;
    }
    req.session.user = route.user;

    // --- request: VER CMD RSV ATYP DST.ADDR DST.PORT
    responder.stage = 'request';
    const [ver2, cmd] = await r.read(3);
    if (ver2 !== VERSION) return refuse(protocolError('bad SOCKS5 request version'), SOCKS5_REPLY.generalFailure);
    let target: SocksTarget;
    try {
      target = await readAddress(r);
    } catch (err) {
      if (err instanceof HandshakeEnded) throw err;
      return refuse(protocolError((err as Error).message), err instanceof AddressTypeError ? SOCKS5_REPLY.addressTypeNotSupported : SOCKS5_REPLY.generalFailure);
    }
    if (cmd === CMD.connect) {
      req.target = target;
      if (target.port === 0) {
        req.session.destination = req.nextHop;
        return refuse(protocolError('destination port 0'));
      }
      return pipeline.serve(req, route, responder, undefined);
    }
    if (cmd === CMD.udpAssociate) {
      req.session.protocol = 'socks5-udp';
      req.kind = 'datagram';
      req.target = target;
      return pipeline.serve(req, route, responder, new UdpAssociation(socket, r, target, socks5Reply));
    }
    return refuse(protocolError(`SOCKS5 command ${cmd} not supported`, 'not_implemented'), SOCKS5_REPLY.commandNotSupported);
  }
}

export type { MeterSession };

import type { Socket } from 'node:net';
import { Failure } from '../../failure/index.js';
import type { FinishFields } from '../../tenants/index.js';
import type { ForwardPipeline, ForwardRequest, ForwardResponder } from '../pipeline.js';
import { SocksFront, SocksResponder } from './socks-front.js';
import type { EgressRoute } from '../../egress/index.js';
import { HandshakeEnded, type ByteReader } from './byte-reader.js';
import { AUTH_STATUS, SOCKS5_REPLY, socks5ReplyFor } from './reply-codes.js';
import { AddressTypeError, encodeAddress, readAddress, type SocksTarget } from './socks-address.js';
import { protocolError } from './socks-refusal.js';
import { allowlistRoute, userOfRefusal, wrongCredentials } from '../proxy-auth.js';
import { UdpAssociation, type ControlConnection } from './socks5-udp-relay.js';
import { destroyAfter } from '../../timing/deadlines.js';

const VERSION = 0x05;
const METHOD = { none: 0x00, userPass: 0x02, noAcceptable: 0xff } as const;
const CMD = { connect: 0x01, bind: 0x02, udpAssociate: 0x03 } as const;

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
class Socks5Responder extends SocksResponder implements ControlConnection {
  readonly okFields: FinishFields = { reply: SOCKS5_REPLY.succeeded };
  stage: Stage = 'greeting';
  /** A reply code chosen by the front (protocol errors), instead of the failure type's. */
  code: number | undefined;

  reply(code: number, address?: string, port = 0): Buffer {
    return socks5Reply(code, address, port);
  }

  protected refusal(f: Failure): { bytes: Buffer | undefined; fields: FinishFields } {
    if (this.stage === 'method') return { bytes: Buffer.from([VERSION, METHOD.noAcceptable]), fields: {} };
    if (this.stage === 'auth') return { bytes: Buffer.from([0x01, AUTH_STATUS.failure]), fields: {} };
    if (this.stage === 'greeting') return { bytes: undefined, fields: {} };
    const reply = this.code ?? socks5ReplyFor(f);
    return { bytes: socks5Reply(reply), fields: { reply } };
  }

  protected granted(upstream: Socket): Buffer {
    return socks5Reply(SOCKS5_REPLY.succeeded, upstream.localAddress, upstream.localPort ?? 0);
  }
}

/**
 * The SOCKS5 front (RFC 1928, RFC 1929 auth): greeting → method → (user/password) →
 * request. It only reads and answers SOCKS5; authentication, rules, plans, admission,
 * egress and relay are the pipeline's, for CONNECT tunnels and UDP associations alike.
 */
export class Socks5Front extends SocksFront<Socks5Responder> {
  constructor(pipeline: ForwardPipeline) {
    super(pipeline, 'socks5', Socks5Responder);
  }

  /**
   * At a limit: SOCKS5 has no refusal before the request, so when the greeting offers
   * "no authentication" the method is chosen and the request answered general failure
   * (0x01) in the same write; a client that offers only other methods is told `0xFF`
   * (no acceptable method), the only refusal the method stage has.
   */
  protected atLimit(first: Buffer): { bytes: Buffer; fields: FinishFields } {
    const n = first[1] ?? 0;
    const offersNone = first.length >= 2 + n && first.subarray(2, 2 + n).includes(METHOD.none);
    if (!offersNone) return { bytes: Buffer.from([VERSION, METHOD.noAcceptable]), fields: {} };
    return { bytes: Buffer.concat([Buffer.from([VERSION, METHOD.none]), socks5Reply(SOCKS5_REPLY.generalFailure)]), fields: { reply: SOCKS5_REPLY.generalFailure } };
  }

  protected async run(socket: Socket, r: ByteReader, req: ForwardRequest, responder: Socks5Responder): Promise<void> {
    const pipeline = this.pipeline;
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
    // Credentials offered win, as on the HTTP face (even where auth is optional: a client that
    // offers both gets its user's plan, and a wrong password is refused; finding, session 29:
    // "no authentication" was chosen first, so any password passed and no plan applied); else
    // "no authentication" where auth is optional, or for an allowlisted address (users[].allowFrom).
    let listed: EgressRoute | Failure | undefined;
    if (methods.includes(METHOD.userPass)) method = METHOD.userPass;
    else if (!ctx.settings.authRequired && methods.includes(METHOD.none)) method = METHOD.none;
    else if (ctx.allowlist !== undefined && methods.includes(METHOD.none) && (listed = allowlistRoute(ctx, socket)) !== undefined) method = METHOD.none;
    if (method === METHOD.none && listed === undefined && ctx.allowlist !== undefined) listed = allowlistRoute(ctx, socket);
    if (method === METHOD.noAcceptable) {
      return refuse(new Failure({ type: 'http_request_denied', phase: 'accept', reason: 'proxy_auth_required', detail: 'client offers no acceptable authentication method' }));
    }
    if (listed instanceof Failure) return refuse(listed);
    socket.write(Buffer.from([VERSION, method]));

    // --- RFC 1929: VER ULEN UNAME PLEN PASSWD
    let route: EgressRoute = { user: null };
    if (listed !== undefined && !(listed instanceof Failure)) route = listed;
    if (method === METHOD.userPass) {
      responder.stage = 'auth';
      const authVer = await r.byte();
      if (authVer !== 0x01) return refuse(protocolError('bad username/password sub-negotiation version'));
      const name = (await r.read(await r.byte())).toString('utf8');
      const password = (await r.read(await r.byte())).toString('utf8');
      const check = name.length > 0 ? pipeline.authenticateName(name, password, socket) : undefined;
      // Under way (a promise): a cut by close() at the drain timeout records the request then (`ForwardPipeline.hold`).
      const found = check instanceof Promise ? await r.during(pipeline.hold(req, responder, check, 'its password check', 'accept')) : check;
      // A check that outlasted the handshake time: the connection is closed already, the answer leads nowhere.
      r.throwIfTimedOut();
      // Recorded meanwhile (close() cut the connection during the check): so does the answer.
      if (req.session.finished) return void r.detach();
      if (found instanceof Failure) {
        // Refused after the password was verified (a username parameter): the record names the user.
        req.session.user = userOfRefusal(found) ?? null;
        return refuse(found);
      }
      if (found === undefined) {
        const f = wrongCredentials(ctx, name);
        // The account the password was tried on (proxy-auth.ts: never a name that is no user's).
        req.session.user = userOfRefusal(f) ?? null;
        return refuse(f);
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
      r.handshakeRead();
      return pipeline.serve(req, route, responder, undefined);
    }
    if (cmd === CMD.udpAssociate) {
      req.session.protocol = 'socks5-udp';
      req.kind = 'datagram';
      req.target = target;
      r.handshakeRead();
      return pipeline.serve(req, route, responder, new UdpAssociation(responder, target));
    }
    return refuse(protocolError(`SOCKS5 command ${cmd} not supported`, 'not_implemented'), SOCKS5_REPLY.commandNotSupported);
  }
}


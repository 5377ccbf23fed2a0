import type { Socket } from 'node:net';
import { Failure, classify } from '../../failure/index.js';
import type { MeterSession } from '../../tenants/index.js';
import { admit } from '../admission.js';
import { hostPort, newRequestId, type ForwardContext, clientAddressFor } from '../context.js';
import { admitPlan, spliceMetered, dialOptions, noteExit } from '../egress-admission.js';
import { authenticateName } from '../proxy-auth.js';
import type { EgressRoute } from '../../egress/index.js';
import { ByteReader, HandshakeEnded } from './byte-reader.js';
import { AUTH_STATUS, SOCKS5_REPLY, socks5ReplyFor } from './reply-codes.js';
import { AddressTypeError, encodeAddress, readAddress, type SocksTarget } from './socks-address.js';
import { handshakeFailure, protocolError } from './socks-refusal.js';
import { runUdpAssociation } from './socks5-udp-relay.js';
import { Cancel } from '../../egress/cancel.js';

const VERSION = 0x05;
const METHOD = { none: 0x00, userPass: 0x02, noAcceptable: 0xff } as const;
const CMD = { connect: 0x01, bind: 0x02, udpAssociate: 0x03 } as const;

/** A SOCKS5 reply: VER REP RSV ATYP BND.ADDR BND.PORT. */
export function socks5Reply(code: number, address?: string, port = 0): Buffer {
  return Buffer.concat([Buffer.from([VERSION, code, 0x00]), encodeAddress(address, port)]);
}

/**
 * The SOCKS5 Handler (RFC 1928, RFC 1929 auth): greeting → method → (user/password) →
 * request → CONNECT tunnel or UDP ASSOCIATE. Every refusal answers its reply code
 * (see reply-codes.ts) and is logged with its failure type.
 */
export class Socks5Handler {
  readonly #ctx: ForwardContext;

  constructor(ctx: ForwardContext) {
    this.#ctx = ctx;
  }

  readonly handle = (socket: Socket, first: Buffer): void => {
    const session = this.#ctx.meter.open({ protocol: 'socks5', requestId: newRequestId(), user: null, clientAddress: clientAddressFor(this.#ctx, socket) });
    const reader = new ByteReader(socket, first, { timeoutMs: this.#ctx.settings.handshakeTimeoutMs });
    this.#run(socket, reader, session).catch((err: unknown) => {
      const f = err instanceof HandshakeEnded ? handshakeFailure(err, 'SOCKS5') : classify(err, { connected: false, responseStarted: false, headersReceived: false });
      reader.detach();
      socket.destroy();
      session.finish({ error: f.type, refused: true, endedBy: err instanceof HandshakeEnded ? 'client' : 'proxy' });
    });
  };

  #refuse(socket: Socket, session: MeterSession, f: Failure, reply: number | undefined, bytes?: Buffer): void {
    if (bytes && socket.writable) socket.end(bytes);
    else socket.end();
    setTimeout(() => socket.destroy(), 2000).unref();
    session.finish({ error: f.type, reply, refused: true, endedBy: 'proxy' });
  }

  async #run(socket: Socket, r: ByteReader, session: MeterSession): Promise<void> {
    const ctx = this.#ctx;
    // --- greeting: VER NMETHODS METHODS
    const [ver, nMethods] = await r.read(2);
    if (ver !== VERSION) return this.#refuse(socket, session, protocolError('not SOCKS5'), undefined);
    if (nMethods === 0) {
      return this.#refuse(socket, session, protocolError('SOCKS5 greeting offers no methods'), undefined, Buffer.from([VERSION, METHOD.noAcceptable]));
    }
    const methods = await r.read(nMethods!);
    let method: number = METHOD.noAcceptable;
    if (!ctx.settings.authRequired && methods.includes(METHOD.none)) method = METHOD.none;
    else if (methods.includes(METHOD.userPass)) method = METHOD.userPass;
    if (method === METHOD.noAcceptable) {
      const f = new Failure({ type: 'http_request_denied', phase: 'accept', reason: 'proxy_auth_required', detail: 'client offers no acceptable authentication method' });
      return this.#refuse(socket, session, f, undefined, Buffer.from([VERSION, METHOD.noAcceptable]));
    }
    socket.write(Buffer.from([VERSION, method]));

    // --- RFC 1929: VER ULEN UNAME PLEN PASSWD
    let user: string | null = null;
    let route: EgressRoute = { user: null };
    if (method === METHOD.userPass) {
      const authVer = await r.byte();
      if (authVer !== 0x01) {
        return this.#refuse(socket, session, protocolError('bad username/password sub-negotiation version'), undefined, Buffer.from([0x01, AUTH_STATUS.failure]));
      }
      const name = (await r.read(await r.byte())).toString('utf8');
      const password = (await r.read(await r.byte())).toString('utf8');
      const found = name.length > 0 ? await authenticateName(ctx, name, password) : undefined;
      if (found === undefined) {
        session.user = null;
        const f = new Failure({ type: 'http_request_denied', phase: 'accept', reason: 'proxy_auth_required', detail: 'wrong user name or password' });
        return this.#refuse(socket, session, f, undefined, Buffer.from([0x01, AUTH_STATUS.failure]));
      }
      socket.write(Buffer.from([0x01, AUTH_STATUS.success]));
      route = found;
      user = found.user;
    }
    session.user = user;

    // --- request: VER CMD RSV ATYP DST.ADDR DST.PORT
    const [ver2, cmd] = await r.read(3);
    if (ver2 !== VERSION) {
      return this.#refuse(socket, session, protocolError('bad SOCKS5 request version'), SOCKS5_REPLY.generalFailure, socks5Reply(SOCKS5_REPLY.generalFailure));
    }
    let target: SocksTarget;
    try {
      target = await readAddress(r);
    } catch (err) {
      if (err instanceof HandshakeEnded) throw err;
      const code = err instanceof AddressTypeError ? SOCKS5_REPLY.addressTypeNotSupported : SOCKS5_REPLY.generalFailure;
      return this.#refuse(socket, session, protocolError((err as Error).message), code, socks5Reply(code));
    }
    if (cmd === CMD.connect) return this.#connect(socket, r, session, route, target);
    if (cmd === CMD.udpAssociate) {
      session.destination = null;
      return runUdpAssociation(ctx, socket, r, session, route, target, (code, addr, port) => socks5Reply(code, addr, port));
    }
    const code = SOCKS5_REPLY.commandNotSupported;
    return this.#refuse(socket, session, protocolError(`SOCKS5 command ${cmd} not supported`, 'not_implemented'), code, socks5Reply(code));
  }

  async #connect(socket: Socket, r: ByteReader, session: MeterSession, route: EgressRoute, target: SocksTarget): Promise<void> {
    const ctx = this.#ctx;
    const user = route.user;
    const nextHop = hostPort(target.host, target.port);
    session.destination = nextHop;
    const refuse = (f: Failure): void => {
      const code = socks5ReplyFor(f);
      r.detach();
      this.#refuse(socket, session, f, code, socks5Reply(code));
    };
    if (target.port === 0) return refuse(protocolError('destination port 0'));
    const denied = ctx.rules.checkName(user, target.host, target.port);
    if (denied) return refuse(denied);
    const planRefusal = await admitPlan(ctx, route, target.host, session);
    if (planRefusal) return refuse(planRefusal);
    const release = admit(ctx, user, 'tunnel', nextHop);
    if (release instanceof Failure) return refuse(release);
    try {
      const ac = new Cancel();
      const onGone = (): void => ac.abort();
      socket.once('close', onGone);
      let upstream: Socket;
      try {
        const d = await ctx.egress.dial(target, dialOptions(ctx, user, ac), route);
        upstream = d.socket;
        noteExit(session, d.choice);
      } catch (err) {
        socket.off('close', onGone);
        if (ac.aborted) {
          r.detach();
          session.finish({ error: null, endedBy: 'client' });
          return;
        }
        return refuse(err instanceof Failure ? err : classify(err, { connected: false, responseStarted: false, headersReceived: false, nextHop }));
      }
      socket.off('close', onGone);
      const address = upstream.remoteAddress ?? null;
      const untrack = ctx.tracker.track(upstream);
      const early = r.detach();
      if (socket.destroyed) {
        upstream.destroy();
        untrack();
        session.finish({ error: null, endedBy: 'client', address, reply: SOCKS5_REPLY.succeeded });
        return;
      }
      socket.write(socks5Reply(SOCKS5_REPLY.succeeded, upstream.localAddress, upstream.localPort ?? 0));
      const endedBy = await spliceMetered(ctx, session, user, socket, upstream, early);
      untrack();
      session.finish({ error: null, reply: SOCKS5_REPLY.succeeded, endedBy, address });
    } finally {
      release();
    }
  }
}

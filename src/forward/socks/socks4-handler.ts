import type { Socket } from 'node:net';
import { Failure, classify } from '../../failure/index.js';
import type { MeterSession } from '../../tenants/index.js';
import { admit } from '../admission.js';
import { hostPort, newRequestId, type ForwardContext, clientAddressFor } from '../context.js';
import { admitPlan, spliceMetered, dialOptions, noteExit } from '../egress-admission.js';
import { authenticateName } from '../proxy-auth.js';
import type { EgressRoute } from '../../egress/index.js';
import { ByteReader, HandshakeEnded, type ReadEnd } from './byte-reader.js';
import { SOCKS4_REPLY } from './reply-codes.js';
import { checkDomain } from './socks-address.js';
import { handshakeFailure, protocolError } from './socks-refusal.js';
import { Cancel } from '../../egress/cancel.js';

const MAX_FIELD = 255;

/** VN=0 CD DSTPORT DSTIP. */
function socks4Reply(code: number, port = 0, ip = '0.0.0.0'): Buffer {
  const b = Buffer.alloc(8);
  b[1] = code;
  b.writeUInt16BE(port & 0xffff, 2);
  const parts = ip.split('.').map(Number);
  if (parts.length === 4 && parts.every((x) => x >= 0 && x <= 255)) parts.forEach((x, i) => (b[4 + i] = x));
  return b;
}

async function readNulTerminated(r: ByteReader): Promise<Buffer> {
  const bytes: number[] = [];
  for (let i = 0; i <= MAX_FIELD; i++) {
    const c = await r.byte();
    if (c === 0) return Buffer.from(bytes);
    bytes.push(c);
  }
  throw new HandshakeEnded('overflow' satisfies ReadEnd);
}

/**
 * The SOCKS4 / SOCKS4a Handler: CONNECT only. SOCKS4 carries no password, so when
 * authentication is required the USERID field must be `name:password`.
 */
export class Socks4Handler {
  readonly #ctx: ForwardContext;

  constructor(ctx: ForwardContext) {
    this.#ctx = ctx;
  }

  readonly handle = (socket: Socket, first: Buffer): void => {
    const session = this.#ctx.meter.open({ protocol: 'socks4', requestId: newRequestId(), user: null, clientAddress: clientAddressFor(this.#ctx, socket) });
    const reader = new ByteReader(socket, first, { timeoutMs: this.#ctx.settings.handshakeTimeoutMs });
    this.#run(socket, reader, session).catch((err: unknown) => {
      reader.detach();
      if (err instanceof HandshakeEnded && err.reason === 'overflow') {
        this.#refuse(socket, session, handshakeFailure(err, 'SOCKS4'));
        return;
      }
      const f = err instanceof HandshakeEnded ? handshakeFailure(err, 'SOCKS4') : classify(err, { connected: false, responseStarted: false, headersReceived: false });
      socket.destroy();
      session.finish({ error: f.type, refused: true, endedBy: err instanceof HandshakeEnded ? 'client' : 'proxy' });
    });
  };

  #refuse(socket: Socket, session: MeterSession, f: Failure): void {
    if (socket.writable) socket.end(socks4Reply(SOCKS4_REPLY.rejected));
    setTimeout(() => socket.destroy(), 2000).unref();
    session.finish({ error: f.type, reply: SOCKS4_REPLY.rejected, refused: true, endedBy: 'proxy' });
  }

  async #run(socket: Socket, r: ByteReader, session: MeterSession): Promise<void> {
    const ctx = this.#ctx;
    const head = await r.read(8);
    const [vn, cd] = head;
    if (vn !== 0x04) return this.#refuse(socket, session, protocolError('not SOCKS4'));
    const port = head.readUInt16BE(2);
    const ip = `${head[4]}.${head[5]}.${head[6]}.${head[7]}`;
    const userId = (await readNulTerminated(r)).toString('utf8');
    let host = ip;
    // SOCKS4a: DSTIP 0.0.0.x (x ≠ 0) means a host name follows the USERID.
    if (head[4] === 0 && head[5] === 0 && head[6] === 0 && head[7] !== 0) {
      try {
        host = checkDomain(await readNulTerminated(r));
      } catch (err) {
        if (err instanceof HandshakeEnded) throw err;
        return this.#refuse(socket, session, protocolError((err as Error).message));
      }
    }
    if (cd !== 0x01) return this.#refuse(socket, session, protocolError(`SOCKS4 command ${cd} not supported`, 'not_implemented'));

    let user: string | null = null;
    let route: EgressRoute = { user: null };
    const colon = userId.indexOf(':');
    if (colon > 0) {
      const found = await authenticateName(ctx, userId.slice(0, colon), userId.slice(colon + 1));
      if (found) route = found;
      user = found?.user ?? null;
      if (user === null) return this.#refuse(socket, session, new Failure({ type: 'http_request_denied', phase: 'accept', reason: 'proxy_auth_required', detail: 'wrong user name or password' }));
    } else if (ctx.settings.authRequired) {
      return this.#refuse(socket, session, new Failure({ type: 'http_request_denied', phase: 'accept', reason: 'proxy_auth_required', detail: 'SOCKS4 needs USERID name:password when authentication is required' }));
    }
    session.user = user;
    const nextHop = hostPort(host, port);
    session.destination = nextHop;
    if (port === 0) return this.#refuse(socket, session, protocolError('destination port 0'));
    const denied = ctx.rules.checkName(user, host, port);
    if (denied) return this.#refuse(socket, session, denied);
    const planRefusal = await admitPlan(ctx, route, host, session);
    if (planRefusal) return this.#refuse(socket, session, planRefusal);
    const release = admit(ctx, user, 'tunnel', nextHop);
    if (release instanceof Failure) return this.#refuse(socket, session, release);
    try {
      const ac = new Cancel();
      const onGone = (): void => ac.abort();
      socket.once('close', onGone);
      let upstream: Socket;
      try {
        const d = await ctx.egress.dial({ host, port }, dialOptions(ctx, user, ac), route);
        upstream = d.socket;
        noteExit(session, d.choice);
      } catch (err) {
        socket.off('close', onGone);
        if (ac.aborted) {
          r.detach();
          session.finish({ error: null, endedBy: 'client' });
          return;
        }
        r.detach();
        return this.#refuse(socket, session, err instanceof Failure ? err : classify(err, { connected: false, responseStarted: false, headersReceived: false, nextHop }));
      }
      socket.off('close', onGone);
      const address = upstream.remoteAddress ?? null;
      const untrack = ctx.tracker.track(upstream);
      const early = r.detach();
      const bndIp = upstream.localAddress && !upstream.localAddress.includes(':') ? upstream.localAddress : '0.0.0.0';
      socket.write(socks4Reply(SOCKS4_REPLY.granted, upstream.localPort ?? 0, bndIp));
      const endedBy = await spliceMetered(ctx, session, user, socket, upstream, early);
      untrack();
      session.finish({ error: null, reply: SOCKS4_REPLY.granted, endedBy, address });
    } finally {
      release();
    }
  }
}

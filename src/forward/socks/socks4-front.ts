import type { Socket } from 'node:net';
import { Failure } from '../../failure/index.js';
import type { FinishFields } from '../../tenants/index.js';
import type { ForwardPipeline, ForwardRequest, ForwardResponder } from '../pipeline.js';
import { SocksFront, SocksResponder } from './socks-front.js';
import { ByteReader, HandshakeEnded, type ReadEnd } from './byte-reader.js';
import { SOCKS4_REPLY } from './reply-codes.js';
import { checkDomain } from './socks-address.js';
import { allowlistRoute, userOfRefusal, wrongCredentials } from '../proxy-auth.js';
import { protocolError } from './socks-refusal.js';
import { destroyAfter } from '../../timing/deadlines.js';

const MAX_FIELD = 255;
const OK: FinishFields = { reply: SOCKS4_REPLY.granted };
const REJECTED: FinishFields = { reply: SOCKS4_REPLY.rejected };

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

/** One SOCKS4 connection's answers: every refusal is `rejected` (SOCKS4 has one code). */
class Socks4Responder extends SocksResponder {
  readonly okFields = OK;

  protected refusal(): { bytes: Buffer; fields: FinishFields } {
    return { bytes: socks4Reply(SOCKS4_REPLY.rejected), fields: REJECTED };
  }

  protected granted(upstream: Socket): Buffer {
    const bndIp = upstream.localAddress && !upstream.localAddress.includes(':') ? upstream.localAddress : '0.0.0.0';
    return socks4Reply(SOCKS4_REPLY.granted, upstream.localPort ?? 0, bndIp);
  }
}

/**
 * The SOCKS4 / SOCKS4a front: CONNECT only. SOCKS4 carries no password, so when
 * authentication is required the USERID field must be `name:password`. Everything after
 * the parse is the pipeline's.
 */
export class Socks4Front extends SocksFront<Socks4Responder> {
  constructor(pipeline: ForwardPipeline) {
    super(pipeline, 'socks4', Socks4Responder);
  }

  protected atLimit(): { bytes: Buffer; fields: FinishFields } {
    return { bytes: socks4Reply(SOCKS4_REPLY.rejected), fields: REJECTED };
  }

  protected async run(socket: Socket, r: ByteReader, req: ForwardRequest, responder: Socks4Responder): Promise<void> {
    const pipeline = this.pipeline;
    const refuse = (f: Failure): void => pipeline.refuse(req, responder, f);
    const head = await r.read(8);
    const [vn, cd] = head;
    if (vn !== 0x04) return refuse(protocolError('not SOCKS4'));
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
        return refuse(protocolError((err as Error).message));
      }
    }
    if (cd !== 0x01) return refuse(protocolError(`SOCKS4 command ${cd} not supported`, 'not_implemented'));

    const colon = userId.indexOf(':');
    if (colon > 0) {
      const check = pipeline.authenticateName(userId.slice(0, colon), userId.slice(colon + 1), socket);
      // Under way (a promise): a cut by close() at the drain timeout records the request then (`ForwardPipeline.hold`).
      const found = check instanceof Promise ? await r.during(pipeline.hold(req, responder, check, 'its password check', 'accept')) : check;
      // A check that outlasted the handshake time: the connection is closed already, the answer leads nowhere.
      r.handshakeRead();
      // Recorded meanwhile (close() cut the connection during the check): so does the answer.
      if (req.session.finished) return void r.detach();
      if (found instanceof Failure) {
        // Refused after the password was verified (a username parameter): the record names the user.
        req.session.user = userOfRefusal(found) ?? null;
        return refuse(found);
      }
      if (found === undefined) {
        const f = wrongCredentials(pipeline.ctx, userId.slice(0, colon));
        // The account the password was tried on (proxy-auth.ts: never a name that is no user's).
        req.session.user = userOfRefusal(f) ?? null;
        return refuse(f);
      }
      req.target = { host, port };
      if (port === 0) return this.#portZero(req, responder, found.user);
      return pipeline.serve(req, found, responder, undefined);
    }
    // No credentials: the client's address may be a user's (IP allowlist; one field test when none is configured).
    const listed = pipeline.ctx.allowlist !== undefined ? allowlistRoute(pipeline.ctx, socket) : undefined;
    if (listed instanceof Failure) return refuse(listed);
    r.handshakeRead();
    if (listed !== undefined) {
      req.target = { host, port };
      if (port === 0) return this.#portZero(req, responder, listed.user);
      return pipeline.serve(req, listed, responder, undefined);
    }
    if (pipeline.ctx.settings.authRequired) {
      return refuse(new Failure({ type: 'http_request_denied', phase: 'accept', reason: 'proxy_auth_required', detail: 'SOCKS4 needs USERID name:password when authentication is required' }));
    }
    req.target = { host, port };
    if (port === 0) return this.#portZero(req, responder, null);
    return pipeline.serve(req, { user: null }, responder, undefined);
  }

  #portZero(req: ForwardRequest, responder: Socks4Responder, user: string | null): void {
    req.session.user = user;
    req.session.destination = req.nextHop;
    this.pipeline.refuse(req, responder, protocolError('destination port 0'));
  }
}

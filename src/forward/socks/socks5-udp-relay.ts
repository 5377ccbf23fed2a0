import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import type { Socket } from 'node:net';
import { Failure, connectionCut, type ConnectionsCut, type EndedBy } from '../../failure/index.js';
import type { UdpEgress, UdpSource } from '../../egress/index.js';
import type { FinishFields } from '../../tenants/index.js';
import { noteExit } from '../egress-admission.js';
import { hostPort } from '../context.js';
import type { ForwardPipeline, ForwardRequest, Relay } from '../pipeline.js';
import { canonicalAddress } from '../../net/ip-canonical.js';
import { cutFields } from '../record-fields.js';
import { quotaOver } from '../quota-gate.js';
import type { ByteReader } from './byte-reader.js';
import { SOCKS5_REPLY } from './reply-codes.js';
import { encodeAddress, parseAddress, type SocksTarget } from './socks-address.js';
import { destroyAfter, Timeout } from '../../timing/deadlines.js';
import { ClientWatch, clientLeft, leftFields } from '../client-fin.js';

/** Most destinations an egress socket of an association remembers as allowed to answer. */
const MAX_PEERS = 1024;
/** Most datagrams waiting for name resolution at once, per association. */
const MAX_IN_FLIGHT = 256;

/** The SOCKS5 control connection an association is asked for on, as its front holds it. */
export interface ControlConnection {
  readonly socket: Socket;
  readonly reader: ByteReader;
  /** A SOCKS5 reply with this code and bound address. */
  reply(code: number, address?: string, port?: number): Buffer;
}

function bindUdp(address: string, family: 4 | 6): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    const s = createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6 });
    s.once('error', reject);
    s.bind(0, address, () => {
      s.off('error', reject);
      resolve(s);
    });
  });
}

/**
 * SOCKS5 UDP ASSOCIATE (RFC 1928 §7), the relay of a `datagram` request: the pipeline
 * has authorised, planned and admitted the association; this opens a relay socket on the
 * address the client reached us on and the egress, answers the reply, and relays.
 * Datagrams are accepted only from the client's IP (the control connection's) and the port it
 * announced, or else the port of the first well-formed one it sends (`clientSource`); fragments
 * (FRAG ≠ 0) are dropped; each destination is checked like a TCP one; replies are accepted on
 * each egress socket only from destinations the client has sent to through that socket. A byte
 * quota the user is over, in either direction, ends the association as it ends a tunnel.
 * The association ends when its TCP control connection closes or nothing moves for
 * `udpIdle`. A failure before the reply is thrown (the pipeline refuses with it).
 */
export class UdpAssociation implements Relay {
  readonly #front: ControlConnection;
  readonly #requested: SocksTarget;

  constructor(front: ControlConnection, requested: SocksTarget) {
    this.#front = front;
    this.#requested = requested;
  }

  async run(req: ForwardRequest, pipeline: ForwardPipeline): Promise<FinishFields> {
    const ctx = pipeline.ctx;
    const control = this.#front.socket;
    const session = req.session;
    const route = req.route;
    const user = route.user;
    const local = canonicalAddress(control.localAddress ?? '');
    const clientIp = canonicalAddress(control.remoteAddress ?? '');
    if (!local || !clientIp) throw new Failure({ type: 'proxy_internal_error', phase: 'accept', detail: 'control connection has no addresses' });
    let relay: UdpSocket;
    let egress: UdpEgress;
    try {
      relay = await bindUdp(local.address, local.family);
    } catch (err) {
      throw new Failure({ type: 'proxy_internal_error', phase: 'accept', detail: 'could not open the UDP relay socket', cause: err });
    }
    // onDropped: an answer the egress dropped itself (an upstream SOCKS5 relay's fragment) counts as the relay's own drops do.
    const udpOpts = { guard: ctx.rules.guardFor(user), dnsTimeoutMs: ctx.settings.dnsTimeoutMs, connectTimeoutMs: ctx.settings.connectTimeoutMs, onDropped: () => session.dropped() };
    // The client may leave (close, reset or FIN of its control connection) while the egress
    // opens: an upstream SOCKS5 exit's own UDP ASSOCIATE handshake stops then, as a tunnel's
    // dial does (TunnelRun.clientLeftEarly), and the association is recorded as the client's.
    // Before, the hop ran to its own time (test/forward/client-left-during-socks5-udp-exit.test.ts).
    if (clientLeft(control)) {
      relay.close();
      return this.#gone(ctx.cut, control);
    }
    const watch = new ClientWatch(control);
    try {
      const opened = await ctx.egress.openUdp({ ...udpOpts, signal: watch }, route);
      egress = opened.egress;
      noteExit(session, opened.choice);
    } catch (err) {
      relay.close();
      if (watch.aborted) return this.#gone(ctx.cut, control);
      throw err instanceof Failure ? err : new Failure({ type: 'proxy_internal_error', phase: 'connect', detail: 'could not open the UDP egress', cause: err });
    } finally {
      watch.stop();
    }

    const bound = relay.address();
    this.#front.reader.detach();
    if (watch.left) {
      relay.close();
      egress.close();
      return this.#gone(ctx.cut, control);
    }
    control.write(this.#front.reply(SOCKS5_REPLY.succeeded, bound.address, bound.port));
    // Nothing more is expected on the control connection; read and discard so it can close.
    control.on('data', () => {});
    control.resume();
    const requested = this.#requested;

    // The association's egress is its route's pool for any host (`openUdp`). A routing rule
    // that names hosts sends the datagrams to those hosts through its own pool, as it would a
    // TCP connection: a serious user's rule "*.bank.example leaves through resi" must hold
    // for QUIC and DNS too (review finding: rules with hosts never applied to datagrams).
    // Each other pool gets one egress for the association, opened by its first datagram; one
    // that fails to open (no exit carries UDP, the upstream refused) drops that pool's
    // datagrams for the rest of the association rather than retrying per datagram. At most
    // one egress per configured pool, plus direct.
    const basePool = ctx.egress.poolName(route, '*');
    // Each egress socket with the destinations it alone accepts answers from (Peers).
    type Out = { egress: UdpEgress; peers: Peers };
    const base: Out = { egress, peers: new Peers() };
    const others = new Map<string | undefined, Promise<Out>>();
    let ended = false;
    const through = (pool: string | undefined): Promise<Out> => {
      let opening = others.get(pool);
      if (opening === undefined) {
        opening = ctx.egress.openUdpThrough(pool, udpOpts, route).then(({ egress: other }) => {
          if (ended) {
            other.close();
            throw new Failure({ type: 'proxy_internal_error', phase: 'connect', detail: 'UDP association ended' });
          }
          const out: Out = { egress: other, peers: new Peers() };
          other.onMessage((payload, from) => onReply(out.peers, payload, from));
          return out;
        });
        opening.catch(ignore);
        others.set(pool, opening);
      }
      return opening;
    };

    let clientPort = announcedPort(requested, clientIp.address);
    let inFlight = 0;
    let done!: (endedBy: EndedBy) => void;
    const finished = new Promise<EndedBy>((resolve) => {
      done = resolve;
    });
    const idle = new Timeout(() => done('idle'), ctx.settings.udpIdleMs);
    // A byte quota, over in either direction, ends the association as it ends a tunnel
    // (TunnelRun's #cutByQuota: checked before a datagram is counted, so the one that crosses
    // the limit goes through and the next one, either way, is dropped and ends it; the record
    // says endedBy "quota" and its `quota`). Before (probe of session 38), each direction checked
    // only its own quota and dropped datagrams, and the record had no `quota`
    // (test/forward/socks5-udp-quota.test.ts).
    let cut = false;
    const cutByQuota = (): boolean => {
      if (cut) return true;
      if (user === null) return false;
      const over = quotaOver(ctx.plans, user);
      if (over === undefined) return false;
      cut = true;
      session.quotaCut ??= over.detail;
      done('gateway');
      return true;
    };

    relay.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      const from = canonicalAddress(rinfo.address);
      if (!from || from.address !== clientIp.address) return; // not the associated client: ignore silently
      if (clientPort !== undefined && rinfo.port !== clientPort) return;
      idle.refresh();
      // RSV(2) FRAG(1) ATYP DST.ADDR DST.PORT DATA
      if (msg.length < 4 || msg[2] !== 0) {
        session.dropped();
        return;
      }
      let target: SocksTarget;
      let payload: Buffer;
      try {
        const p = parseAddress(msg, 3);
        target = p.target;
        payload = msg.subarray(p.next);
      } catch {
        session.dropped();
        return;
      }
      if (target.port === 0) {
        session.dropped();
        return;
      }
      // Only a well-formed datagram fixes the client's port (probe of session 38: the first one
      // did, even cut short, a fragment or of an unknown ATYP, and the client's real datagrams
      // from another port were dropped; test/forward/socks5-udp-client-source.test.ts).
      clientPort ??= rinfo.port;
      if (inFlight >= MAX_IN_FLIGHT || cutByQuota()) {
        session.dropped();
        return;
      }
      const label = hostPort(target.host, target.port);
      if (ctx.rules.checkName(user, target.host, target.port)) {
        session.dropped();
        return;
      }
      // The routing rules decide per datagram, as for a TCP connection to the same host: a
      // host a rule sends to another pool goes through that pool (a pool the plan leaves out
      // drops it, as it refuses a tunnel).
      const pool = ctx.egress.poolName(route, target.host);
      if (pool instanceof Failure || ctx.plans.checkPool(user, pool) !== undefined) {
        session.dropped();
        return;
      }
      inFlight++;
      const to = { host: target.host, port: target.port };
      const sendThrough = (o: Out): Promise<void> => o.egress.send(to, payload).then((sent) => o.peers.sent(sent, label));
      (pool === basePool ? sendThrough(base) : through(pool).then(sendThrough)).then(
        () => {
          inFlight--;
          session.datagram('up', payload.length, label);
        },
        () => {
          inFlight--;
          session.dropped();
        },
      );
    });
    relay.on('error', () => {});

    const onReply = (peers: Peers, payload: Buffer, from: UdpSource): void => {
      const label = peers.label(from);
      if (label === undefined || clientPort === undefined) return; // unsolicited here: drop
      const addr = canonicalAddress(from.address)?.address ?? from.address;
      idle.refresh();
      if (cutByQuota()) {
        session.dropped();
        return;
      }
      const header = Buffer.concat([Buffer.from([0, 0, 0]), encodeAddress(addr, from.port)]);
      // A send that fails (EMSGSIZE: an answer the destination could send but that, behind its
      // header, is past the most a UDP datagram to the client holds) is a datagram dropped, and
      // counted so. Before, its error was ignored: lost without a trace in the record
      // (test/forward/socks5-udp-oversized.test.ts).
      relay.send(Buffer.concat([header, payload]), clientPort, clientIp.address, (err) => {
        if (err) session.dropped();
        else session.datagram('down', payload.length, label);
      });
    };
    egress.onMessage((payload, from) => onReply(base.peers, payload, from));

    const untrack = ctx.tracker.track({ destroy: () => done('gateway') });
    // close() cut the control connection at the drain timeout (its client had not left first): the proxy's, with the drain's failure.
    let drainCut: Failure | undefined;
    control.once('end', () => done('client'));
    control.once('close', () => {
      drainCut = connectionCut(ctx.cut, control, 'body');
      done(drainCut === undefined ? 'client' : 'gateway');
    });
    control.on('error', () => done('client'));
    // A FIN that came before the reply (the handshake's reader took its 'end') is not emitted again.
    if (control.readableEnded) done('client');

    const endedBy = await finished;
    idle.cancel();
    untrack();
    try {
      relay.close();
    } catch {
      // already closed
    }
    egress.close();
    ended = true;
    for (const opening of others.values()) opening.then((other) => other.egress.close(), ignore);
    control.end();
    destroyAfter(control, 1000);
    const fields: FinishFields = { error: null, reply: SOCKS5_REPLY.succeeded, endedBy, address: null };
    return drainCut !== undefined && endedBy === 'gateway' ? cutFields(drainCut, fields) : fields;
  }

  /**
   * The record of an association whose client left before it was answered (no reply): the
   * client's, or the drain's cut when close() cut its control connection (as a tunnel's,
   * TunnelRun's `#goneFields`). The control connection is closed (a FIN left it half open).
   */
  #gone(cut: ConnectionsCut | undefined, control: Socket): FinishFields {
    this.#front.reader.detach();
    const fields = leftFields(cut, control, { error: null, endedBy: 'client', address: null });
    control.destroy();
    return fields;
  }
}

function ignore(): void {}

/**
 * The client's UDP port as its ASSOCIATE announced it (RFC 1928 §7: DST.ADDR and DST.PORT, the
 * source it expects to send from), or undefined: taken from its first well-formed datagram.
 * The announcement counts only when its address is all zeros (not known) or the control
 * connection's IP (`clientIp`, canonical): datagrams are taken from that IP alone. Another
 * address — a client behind a NAT names its own LAN address, or a name — says nothing of the
 * source the relay will see, so the port is set aside with it (probe of session 38: the port was
 * kept and the client's datagrams from its real one dropped after a success reply). Accepting
 * from the announced address instead would let a client point the relay's answers at another
 * host; gost takes the control connection's IP and ignores the announcement too.
 */
function announcedPort(requested: SocksTarget, clientIp: string): number | undefined {
  if (requested.port === 0) return undefined;
  const a = canonicalAddress(requested.host)?.address;
  return a === '0.0.0.0' || a === '0:0:0:0:0:0:0:0' || a === clientIp ? requested.port : undefined;
}

/**
 * The destinations one egress socket of an association has sent to, which alone may answer
 * on it ("addr|port" → the destination as the client named it; the oldest forgotten past
 * MAX_PEERS). One per egress socket, never shared: a destination reached through one pool
 * is not let in through another pool's socket (review finding: one set for the association).
 */
class Peers {
  readonly #labels = new Map<string, string>();

  sent(to: UdpSource, label: string): void {
    const key = peerKey(to);
    const labels = this.#labels;
    if (!labels.has(key) && labels.size >= MAX_PEERS) {
      const oldest = labels.keys().next();
      if (!oldest.done) labels.delete(oldest.value);
    }
    labels.set(key, label);
  }

  /** The destination's label when `from` may answer here. */
  label(from: UdpSource): string | undefined {
    return this.#labels.get(peerKey(from));
  }
}

function peerKey(a: UdpSource): string {
  return `${canonicalAddress(a.address)?.address ?? a.address}|${a.port}`;
}

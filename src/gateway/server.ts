import { createServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Config, ListenerConfig } from '../config/schema.js';
import { Failure, expectationFailed, headerListTooLarge, parserRefusal } from '../failure/index.js';
import { ConnectionGate, handshakeLeft, type GateStats } from '../http/connection-gate.js';
import { refusalAccept, refusalHead, viaValue, withholdKeepAliveHint, type ParserRefusalError } from '../http/headers.js';
import { CLOSE_LINGER_MS, Timeout, destroyAfter } from '../timing/deadlines.js';
import { plainAddress } from '../http/trust.js';
import { heldHead } from '../http/read-hold.js';
import { bodyCutShortAtEof } from '../http/client-body.js';
import { clientLimits, type ClientLimits } from './client-limits.js';
import { buildContext, ms, type GatewayContext, type GatewayOptions } from './context.js';
import { gatewayLifecycle, requestEnd, requestRecord, type LifecycleRecord } from './events.js';
import { Exchange, exchangeOf, newRequestId } from './exchange.js';
import { respondWithFailure } from './responder.js';
import { UpgradeExchange } from './upgrade.js';
import { listenerFront, type ListenerFront } from './front.js';
import { H2Front } from './h2.js';
import { sniffPreface } from './h2c.js';
import { NetFrontServer } from './net-front.js';
import { ConnectionsCut } from '../failure/index.js';
import { reserveOwnListener } from '../net/own-listeners.js';
// The listener's marks on an accepted socket are slots of `shapeHttpSocket`, so that every accepted socket keeps one map.
import {
  installAccept,
  kRevAcceptedAt as kAcceptedAt,
  kRevH2 as kH2,
  kRevHeadDeadline as kHeadDeadline,
  kRevPeer as kPeer,
  kRevRefusal as kRefusal,
  kRevRefused as kRefused,
  kRevServed as kServed,
  kRevTls as kTls,
  shapeHttpSocket,
} from '../net/index.js';
import type { ServerHttp2Session } from 'node:http2';
import { AcmeManager, CertificateStore, checkClientCertificate, classifyClientTlsError, namelessClient, type ClientTlsFailure } from '../tls/index.js';
import { acmeHostsOfRoutes } from '../config/schema.js';
import { closingAfterAnswer } from '../http/connection-order.js';

export interface ListeningAddress {
  address: string;
  port: number;
  url: string;
}

/** One listener's server and the settings its handlers read (changed in place by a reload). */
interface ListenerEntry {
  server: Server;
  cfg: ListenerConfig;
  name: string;
  gate: ConnectionGate;
  limits: ClientLimits;
  maxHeaderCount: number;
  headMs: number;
  /** A TLS listener's certificates by server name. */
  certs: CertificateStore | undefined;
  /** A TLS listener's HTTP/2 side (ALPN h2). */
  h2: H2Front | undefined;
  /** A TLS listener with acme: its certificate's orders and renewals (started once the listeners are bound). */
  acme: AcmeManager | undefined;
}

/** What a reload changed in the reverse gateway (names; `restart`: settings that only a restart applies). */
export interface GatewayReloadSummary {
  listeners: { added: string[]; removed: string[]; changed: string[] };
  clusters: { added: string[]; removed: string[]; changed: string[]; kept: string[] };
  routes: number;
  restart: string[];
}

/** The key a listener is matched by across a reload: its configured address and port. */
function listenerKey(l: ListenerConfig): string {
  return `${l.address}:${l.port}`;
}

/**
 * The reverse gateway: one HTTP server per listener, all sharing one compiled context.
 * A reload (`reload`) compiles a new context and swaps the reference: requests in flight
 * keep the context they started with (an `Exchange` holds its own), new ones get the new.
 */
export class Gateway {
  ctx: GatewayContext;
  config: Config;
  readonly #options: GatewayOptions;
  readonly #servers: ListenerEntry[] = [];
  /** Contexts replaced by a reload whose requests are still in flight (close waits for them). */
  readonly #retired = new Set<GatewayContext>();
  readonly #retiring = new Set<Promise<void>>();
  /** TLS listeners: TCP connections still in their handshake (the HTTP server does not track them yet). */
  readonly #handshaking = new Set<Socket>();
  /** Client sockets handed over by 'upgrade' (WebSocket tunnels): the HTTP server no longer tracks them. */
  readonly #tunnels = new Set<Duplex>();
  /** Our Via values; a reload that changes the identity (name, or the listeners under the default name) changes them. */
  #via11: string;
  #via10: string;
  #closing: Promise<void> | undefined;

  constructor(config: Config, options: GatewayOptions = {}) {
    this.config = config;
    this.#options = options;
    this.ctx = buildContext(config, options);
    this.#via11 = viaValue('1.1', this.ctx.identity);
    this.#via10 = viaValue('1.0', this.ctx.identity);
    for (const l of config.listeners) this.#servers.push(this.#openListener(l));
  }

  #openListener(l: ListenerConfig, index = this.config.listeners.indexOf(l), routes: Config['routes'] = this.config.routes): ListenerEntry {
    const name = `${l.address}:${l.port}`;
    const entry: ListenerEntry = {
      server: undefined as unknown as Server,
      cfg: l,
      name,
      gate: undefined as unknown as ConnectionGate,
      limits: clientLimits(l),
      maxHeaderCount: l.maxHeaderCount,
      headMs: ms(l.requestHeaderTimeout),
      // A TLS listener: certificates by server name (a ConfigError names a file that cannot be used).
      certs: l.tls !== undefined ? new CertificateStore(l.tls, name, `listeners[${index}].tls`) : undefined,
      h2: undefined,
      acme: undefined,
    };
    if (entry.certs !== undefined && l.tls!.acme !== undefined) {
      // A stored certificate that is not due is served from the start; otherwise one is ordered once the listeners are bound.
      entry.acme = new AcmeManager(l.tls!.acme, l.tls!.acme.hosts ?? acmeHostsOfRoutes(routes), entry.certs, this.ctx.acme!, `listeners[${index}].tls.acme`);
    }
    const httpOptions: ServerOptions = {
      maxHeaderSize: l.maxHeaderSize,
      headersTimeout: ms(l.requestHeaderTimeout),
      // Node checks headersTimeout only every connectionsCheckingInterval (30 s by default),
      // so a 10 s timeout fired after 10–40 s: check often enough to answer on time.
      connectionsCheckingInterval: headerCheckInterval(ms(l.requestHeaderTimeout)),
      requestTimeout: 0,
      keepAliveTimeout: ms(l.keepAliveTimeout),
      // Host is checked by the gateway (request-target.ts), so a missing one gets its named 400.
      requireHostHeader: false,
      insecureHTTPParser: false,
      joinDuplicateHeaders: false,
    };
    const certs = entry.certs;
    // HTTP/2 is negotiated by ALPN on the same TLS listener (./h2.ts); HTTP/1.1 stays as it is.
    const alpn = l.http2 !== undefined ? { ALPNProtocols: ['h2', 'http/1.1'] } : {};
    // front: net (./net-front.ts) emits the same events as an http.Server, with requests and
    // responses that have the part of IncomingMessage / ServerResponse the exchange uses.
    const server =
      l.front === 'net'
        ? (new NetFrontServer({ maxHeaderSize: l.maxHeaderSize, maxHeadersCount: l.maxHeaderCount + 1, headersTimeout: ms(l.requestHeaderTimeout), keepAliveTimeout: ms(l.keepAliveTimeout) }) as unknown as Server)
        : certs === undefined
          ? createServer(httpOptions)
          : (createHttpsServer({ ...httpOptions, ...certs.serverOptions(ms(l.requestHeaderTimeout)), ...alpn }) as unknown as Server);
    const front = listenerFront(l);
    const tls = certs !== undefined;
    // Requests arrive on the TLS socket; the gate's marks are on the TCP socket under it.
    const first = tls ? firstTlsRequest : firstRequest;
    // Node keeps at most this many header fields and drops the rest silently (Content-Length
    // too): one more than the limit lets the exchange see the excess and refuse it with 431.
    server.maxHeadersCount = l.maxHeaderCount + 1;
    // Connection admission: the listener's cap and a cap per client address, answered
    // with a named 503 (never a silent reset); under pressure a shorter first-head time.
    entry.gate = gateFor(l);
    if (!tls && l.http2?.h2c === true) {
      // h2c with prior knowledge (./h2c.ts): the first bytes tell an HTTP/2 client (its
      // connection preface) from an HTTP/1.1 one; Node's own HTTP/1.1 connection listener
      // is called only for the latter.
      const h2 = this.#h2Front(l, entry, { ...(front ?? { scheme: 'http', hsts: undefined, redirect: undefined }), h2: true }, first);
      entry.h2 = h2;
      const http1 = server.listeners('connection') as Array<(s: Socket) => void>;
      server.removeAllListeners('connection');
      server.on('connection', (socket: Socket) => {
        this.#admit(entry.gate, socket, entry.name, entry.headMs, false);
        const s = socket as GatedSocket;
        if (socket.destroyed) return;
        if (s[kRefused]) {
          for (const fn of http1) fn.call(server, socket);
          return;
        }
        sniffPreface(socket, entry.headMs, {
          h2: () => {
            (socket as GatedSocket)[kH2] = h2;
            h2.take(socket);
          },
          http1: () => {
            for (const fn of http1) fn.call(server, socket);
          },
          silent: () => {
            // A client that left (its FIN ended our side too) has nobody to read a 408: let it go
            // (writing one threw ERR_STREAM_WRITE_AFTER_END, uncaught: h2c.test finding).
            if (socket.destroyed || !socket.writable) socket.destroy();
            else this.#refuseRaw(socket, parserRefusal('HPE_HEADERS_TIMEOUT'), entry.name);
          },
        });
      });
    } else if (tls && l.tls!.acme?.challenges.includes('tls-alpn-01') === true) {
      // TLS-ALPN-01 (RFC 8737) on this listener: while a validation is pending, a connection's
      // ClientHello is read before the handshake, and one offering only acme-tls/1 for a name
      // being validated gets the challenge certificate (tls/acme/alpn.ts); every other connection
      // goes to the HTTPS server with its bytes put back. Nothing pending: one field test.
      const challenges = this.ctx.acme!;
      const toTls = server.listeners('connection') as Array<(s: Socket) => void>;
      server.removeAllListeners('connection');
      server.on('connection', (socket: Socket) => {
        this.#admit(entry.gate, socket, entry.name, entry.headMs, true);
        if (socket.destroyed) return;
        challenges.route(socket, entry.headMs, () => {
          for (const fn of toTls) fn.call(server, socket);
        });
      });
    } else server.on('connection', (socket: Socket) => this.#admit(entry.gate, socket, entry.name, entry.headMs, tls));
    // node:http writes its own Keep-Alive hint, none wanted under a second (http/headers.ts); the net front writes ours.
    const nodeHint = l.front !== 'net';
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      if (nodeHint) withholdKeepAliveHint(res, server.keepAliveTimeout);
      if (first(req.socket)) return refusedRequest(res);
      new Exchange(this.ctx, req, res, entry.name, req.httpVersion === '1.0' ? this.#via10 : this.#via11, entry.limits, front).start(entry.maxHeaderCount);
    });
    // Expect: 100-continue is forwarded, and the upstream's 100 (or final answer) relayed:
    // Node would otherwise answer 100 itself and read a body the upstream may refuse.
    server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
      if (nodeHint) withholdKeepAliveHint(res, server.keepAliveTimeout);
      if (first(req.socket)) return refusedRequest(res);
      new Exchange(this.ctx, req, res, entry.name, this.#via11, entry.limits, front).start(entry.maxHeaderCount, true);
    });
    // Any Expect but 100-continue: the gateway's own 417 with Proxy-Status and a record (Node would answer a bare one).
    server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
      if (nodeHint) withholdKeepAliveHint(res, server.keepAliveTimeout);
      if (first(req.socket)) return refusedRequest(res);
      const x = new Exchange(this.ctx, req, res, entry.name, req.httpVersion === '1.0' ? this.#via10 : this.#via11, entry.limits, front);
      x.fail(expectationFailed(req.headers.expect));
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (first(socket as Socket)) {
        socket.destroy();
        return;
      }
      this.#tunnels.add(socket);
      socket.once('close', () => this.#tunnels.delete(socket));
      new UpgradeExchange(this.ctx, req, socket, head, entry.name, this.#via11, entry.limits.sendMs, front?.hsts).start(entry.maxHeaderCount);
    });
    server.on('connect', (req: IncomingMessage, socket: Duplex) => {
      this.#refuseRaw(socket, connectRefused(this.ctx.router.serverAllow), entry.name, req);
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#onClientError(err, socket, entry.name));
    if (certs !== undefined) {
      const mode = l.tls!.clientAuth?.mode;
      const strictSni = l.tls!.strictSni;
      server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
        this.#tlsFailed(classifyClientTlsError(err, socket), socket, entry.name);
        // Node leaves a timed-out handshake open once someone listens for this event.
        socket.destroy();
      });
      if (l.http2 === undefined) {
        server.prependListener('secureConnection', (socket: TLSSocket) => this.#secured(socket, entry.name, mode, strictSni));
      } else {
        const h2 = this.#h2Front(l, entry, { ...front!, h2: true }, first);
        entry.h2 = h2;
        // One dispatcher after the handshake: h2 to the HTTP/2 server, the rest to HTTP/1.1.
        const http1 = server.listeners('secureConnection') as Array<(s: TLSSocket) => void>;
        server.removeAllListeners('secureConnection');
        server.on('secureConnection', (socket: TLSSocket) => {
          if (!this.#secured(socket, entry.name, mode, strictSni)) return;
          if (socket.alpnProtocol === 'h2') {
            rawOf(socket)[kH2] = h2;
            h2.take(socket);
          }
          else for (const fn of http1) fn.call(server, socket);
        });
      }
      certs.attach(server as unknown as import('node:tls').Server);
    }
    entry.server = server;
    return entry;
  }

  /**
   * Apply a new, validated config in place: a new compiled context for new requests (clusters
   * whose settings did not change are kept, with their health, outlier and pool state);
   * listeners added, removed (stop accepting; their connections finish) or changed (the
   * settings Node lets change on a running server; `maxHeaderSize` needs a restart, said in
   * `restart`). Requests in flight finish on the context they started with; the clusters only
   * the old context used are closed once its requests have finished (or after the drain time).
   * Throws (nothing changed) when the new context cannot be compiled or a new listener cannot bind.
   */
  async reload(next: Config): Promise<GatewayReloadSummary> {
    if (this.#closing) throw new Error('the gateway is closing');
    const prev = { config: this.config, ctx: this.ctx };
    const ctx = buildContext(next, this.#options, prev);
    const summary: GatewayReloadSummary = { listeners: { added: [], removed: [], changed: [] }, clusters: { added: [], removed: [], changed: [], kept: [] }, routes: next.routes.length, restart: [] };
    for (const name of Object.keys(next.clusters)) {
      if (!prev.config.clusters[name]) summary.clusters.added.push(name);
      else if (ctx.clusters.get(name) === prev.ctx.clusters.get(name)) summary.clusters.kept.push(name);
      else summary.clusters.changed.push(name);
    }
    for (const name of Object.keys(prev.config.clusters)) if (!next.clusters[name]) summary.clusters.removed.push(name);
    // Listeners: bind the new ones first, so a port that cannot be bound refuses the whole reload.
    const wanted = new Map<string, ListenerConfig[]>();
    for (const l of next.listeners) (wanted.get(listenerKey(l)) ?? wanted.set(listenerKey(l), []).get(listenerKey(l))!).push(l);
    const keep: Array<{ entry: ListenerEntry; cfg: ListenerConfig }> = [];
    const drop: ListenerEntry[] = [];
    for (const e of this.#servers) {
      // A listener configured with port 0 is the same listener when the new config names the port it got.
      const bound = e.server.address() as AddressInfo | null;
      const cfg = (bound ? wanted.get(`${e.cfg.address}:${bound.port}`)?.shift() : undefined) ?? wanted.get(listenerKey(e.cfg))?.shift();
      if (cfg) keep.push({ entry: e, cfg });
      else drop.push(e);
    }
    const added: ListenerEntry[] = [];
    for (const list of wanted.values()) for (const l of list) added.push(this.#openListener(l, next.listeners.indexOf(l), next.routes));
    try {
      await listenAll(added);
    } catch (err) {
      // Refused: nothing of the new context may outlive it. Its new clusters already run
      // health checks and outlier sweeps (finding, session 29: each refused reload left a set
      // of them probing for ever).
      for (const [name, c] of ctx.clusters) if (prev.ctx.clusters.get(name) !== c) void c.close();
      throw err;
    }
    // From here on nothing fails: swap.
    this.ctx = ctx;
    this.#via11 = viaValue('1.1', ctx.identity);
    this.#via10 = viaValue('1.0', ctx.identity);
    this.config = next;
    for (const { entry, cfg } of keep) {
      // ACME names taken from the routes: new route hosts need a new certificate, ordered at the next start.
      if (entry.acme !== undefined && cfg.tls?.acme !== undefined && cfg.tls.acme.hosts === undefined && JSON.stringify(acmeHostsOfRoutes(next.routes)) !== JSON.stringify(entry.acme.names)) {
        summary.restart.push(`listeners ${entry.name}: tls.acme host names (from the routes)`);
      }
      if (JSON.stringify(entry.cfg) === JSON.stringify(cfg)) continue;
      summary.listeners.changed.push(entry.name);
      if (cfg.maxHeaderSize !== entry.cfg.maxHeaderSize) summary.restart.push(`listeners ${entry.name}: maxHeaderSize`);
      if (cfg.front !== entry.cfg.front) summary.restart.push(`listeners ${entry.name}: front`);
      // TLS and HTTP/2 settings of a running listener (certificate files reload on their own when they change).
      if (JSON.stringify([cfg.tls, cfg.http2, cfg.redirectToHttps]) !== JSON.stringify([entry.cfg.tls, entry.cfg.http2, entry.cfg.redirectToHttps])) summary.restart.push(`listeners ${entry.name}: tls, http2, redirectToHttps`);
      entry.limits = clientLimits(cfg);
      entry.maxHeaderCount = cfg.maxHeaderCount;
      entry.headMs = ms(cfg.requestHeaderTimeout);
      entry.server.maxHeadersCount = cfg.maxHeaderCount + 1;
      entry.server.headersTimeout = ms(cfg.requestHeaderTimeout);
      entry.server.keepAliveTimeout = ms(cfg.keepAliveTimeout);
      const gateBefore = JSON.stringify([entry.cfg.maxConnections, entry.cfg.maxConnectionsPerSource, entry.cfg.requestHeaderTimeout, entry.cfg.handshakeFloor]);
      const gateAfter = JSON.stringify([cfg.maxConnections, cfg.maxConnectionsPerSource, cfg.requestHeaderTimeout, cfg.handshakeFloor]);
      // A new gate counts connections from now on; those open keep their place in the old one.
      if (gateBefore !== gateAfter) entry.gate = gateFor(cfg);
      entry.cfg = cfg;
    }
    for (const e of drop) {
      summary.listeners.removed.push(e.name);
      e.certs?.close();
      e.acme?.close();
      e.h2?.close();
      e.server.close();
      e.server.closeIdleConnections();
      this.#servers.splice(this.#servers.indexOf(e), 1);
    }
    for (const e of added) {
      const a = e.server.address() as AddressInfo;
      e.name = `${a.address}:${a.port}`;
      summary.listeners.added.push(e.name);
      this.#servers.push(e);
      if (e.certs !== undefined) e.certs.listener = e.name;
      e.acme?.start();
    }
    this.#retire(prev.ctx);
    lifecycle({ event: 'reloaded', detail: `clusters +${summary.clusters.added.length} -${summary.clusters.removed.length} ~${summary.clusters.changed.length}; listeners +${summary.listeners.added.length} -${summary.listeners.removed.length} ~${summary.listeners.changed.length}` });
    return summary;
  }

  /** The old context's clusters that the new one does not use close once its requests have finished. */
  #retire(old: GatewayContext): void {
    const stale = [...old.clusters.values()].filter((c) => ![...this.ctx.clusters.values()].includes(c));
    this.#retired.add(old);
    const done = (async () => {
      const deadline = Date.now() + ms(this.config.shutdown.drainTimeout);
      while (old.inflight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      this.#retired.delete(old);
      await Promise.all(stale.map((c) => c.close()));
    })();
    this.#retiring.add(done);
    void done.finally(() => this.#retiring.delete(done));
  }

  /** Requests in flight on the current context and on contexts a reload replaced. */
  #inflight(): number {
    let n = this.ctx.inflight;
    for (const c of this.#retired) n += c.inflight;
    return n;
  }

  /** The HTTP/2 side of a TLS listener: streams become exchanges with an h2 front. */
  #h2Front(l: ListenerConfig, entry: ListenerEntry, front: ListenerFront, first: (s: Socket) => boolean): H2Front {
    const via2 = viaValue('2', this.ctx.identity);
    // The client limits and maxHeaderCount are read from the entry at each stream, as the
    // HTTP/1.1 handlers do: a reload replaces them there (h2-reload-limits.test finding: the
    // HTTP/2 side kept the ones it was built with).
    const start = (req: IncomingMessage, res: ServerResponse, expect: boolean): void => {
      if (first(req.socket)) {
        res.destroy();
        return;
      }
      const x = new Exchange(this.ctx, req, res, entry.name, via2, entry.limits, front);
      if (req.method === 'CONNECT') {
        x.fail(connectRefused(this.ctx.router.serverAllow));
        return;
      }
      x.start(entry.maxHeaderCount, expect);
    };
    return new H2Front(l.http2!, { maxHeaderSize: l.maxHeaderSize, keepAliveMs: ms(l.keepAliveTimeout) }, {
      request: (req, res) => start(req, res, false),
      checkContinue: (req, res) => start(req, res, true),
      expectation: (req, res) => {
        if (first(req.socket)) {
          res.destroy();
          return;
        }
        new Exchange(this.ctx, req, res, entry.name, via2, entry.limits, front).fail(expectationFailed(req.headers.expect));
      },
      tooLarge: (req, res, size) => {
        if (first(req.socket)) {
          res.destroy();
          return;
        }
        new Exchange(this.ctx, req, res, entry.name, via2, entry.limits, front).fail(headerListTooLarge(size, l.maxHeaderSize));
      },
      abuse: (session, detail) => this.#h2Abuse(session, detail, entry.name),
    });
  }

  /** A client that resets streams as fast as it opens them: its connection was closed; the record names it. */
  #h2Abuse(session: ServerHttp2Session, detail: string, listener: string): void {
    if (!requestEnd.hasSubscribers) return;
    const socket = session.socket as TLSSocket | undefined;
    requestEnd.publish(
      requestRecord(newRequestId(this.ctx), listener, plainAddress(socket?.remoteAddress), { method: undefined, url: '', httpVersion: '2.0', headers: {} }, {
        route: undefined,
        cluster: undefined,
        status: undefined,
        error: 'http_request_error',
        reason: 'h2_rapid_reset',
        phase: 'accept',
        endedBy: 'client',
        detail,
        attempts: [],
        bytesUp: socket?.bytesRead ?? 0,
        bytesDown: socket?.bytesWritten ?? 0,
        durationMs: 0,
        upgrade: false,
      }),
    );
  }

  /** The ACME managers of the TLS listeners with acme (admin, tests). */
  acmeManagers(): AcmeManager[] {
    return this.#servers.flatMap((s) => (s.acme !== undefined ? [s.acme] : []));
  }

  /** The certificate stores of the TLS listeners (for reloads, the admin API and metrics). */
  certificateStores(): CertificateStore[] {
    return this.#servers.flatMap((s) => (s.certs !== undefined ? [s.certs] : []));
  }

  /**
   * A TLS handshake finished: a connection refused at the gate gets its 503 now (over TLS),
   * and a client certificate the listener asks for is checked (a failure closes the connection, named).
   */
  #secured(socket: TLSSocket, listener: string, clientAuth: 'require' | 'optional' | undefined, strictSni: boolean): boolean {
    const raw = rawOf(socket);
    raw[kTls] = socket;
    this.#handshaking.delete(raw);
    const refused = raw[kRefusal];
    if (refused !== undefined) {
      if (socket.alpnProtocol === 'h2') {
        // An HTTP/1.1 answer cannot be read on an h2 connection: closed, recorded.
        this.#tlsFailed({ type: refused.type, reason: 'connection_limit', detail: refused.detail }, socket, listener);
        socket.destroy();
      } else this.#refuseRaw(socket, refused, listener);
      return false;
    }
    const nameless = namelessClient(socket, strictSni);
    if (nameless !== undefined) {
      this.#tlsFailed(nameless, socket, listener);
      socket.destroy();
      return false;
    }
    if (clientAuth === undefined) return true;
    const f = checkClientCertificate(socket, clientAuth);
    if (f === undefined) return true;
    this.#tlsFailed(f, socket, listener);
    socket.destroy();
    return false;
  }

  /** A TLS failure on the client's side: no HTTP answer is possible; the record names it. */
  #tlsFailed(f: ClientTlsFailure, socket: TLSSocket, listener: string): void {
    if (!requestEnd.hasSubscribers) return;
    const raw = rawOf(socket);
    const accepted = raw[kAcceptedAt];
    requestEnd.publish(
      requestRecord(newRequestId(this.ctx), listener, plainAddress(raw.remoteAddress ?? raw[kPeer]), undefined, {
        route: undefined,
        cluster: undefined,
        status: undefined,
        error: f.type,
        reason: f.reason,
        phase: 'tls',
        endedBy: 'client',
        detail: f.detail,
        attempts: [],
        bytesUp: raw.bytesRead,
        bytesDown: raw.bytesWritten,
        durationMs: accepted === undefined ? 0 : Math.round((performance.now() - accepted) * 1000) / 1000,
        upgrade: false,
      }),
    );
  }

  /** Client connections per listener, as the connection gate counts them. */
  connectionStats(): GateStats[] {
    return this.#servers.map((s) => s.gate.stats);
  }

  /** A new client connection: admitted (with a first-head deadline under pressure), or refused by name. */
  #admit(gate: ConnectionGate, socket: Socket, listener: string, headMs: number, tls: boolean): void {
    const now = performance.now();
    if (tls) {
      const g = socket as GatedSocket;
      g[kAcceptedAt] = now;
      // Kept for the record of a handshake that fails after the socket is gone.
      g[kPeer] = socket.remoteAddress;
      this.#handshaking.add(socket);
      socket.once('close', () => this.#handshaking.delete(socket));
    }
    const decision = gate.admit(socket, now);
    if (decision === 'shed') {
      // The refused connections waiting are at their bound (a flood): no answer is owed.
      socket.destroy();
      return;
    }
    socket.once('close', () => gate.release(socket));
    const s = socket as GatedSocket;
    if (decision === 'refused') {
      s[kRefused] = true;
      // On a TLS listener the 503 can only be read after the handshake (#secured).
      if (tls) s[kRefusal] = gate.refusal(socket);
      else this.#refuseRaw(socket, gate.refusal(socket), listener);
      return;
    }
    // Node's headersTimeout is the listener's; a connection admitted under pressure gets less.
    const left = handshakeLeft(socket, 0, now);
    if (left > 0 && left < headMs) {
      const t = new Timeout(() => {
        if (s[kServed] || socket.destroyed) return;
        // An HTTP/2 connection with no stream yet: closed as HTTP/2 closes (GOAWAY), never answered in HTTP/1.1.
        const h2 = s[kH2];
        if (h2 !== undefined) h2.closeIdle(tls ? s[kTls]! : socket);
        else if (!tls) this.#refuseRaw(socket, parserRefusal('HPE_HEADERS_TIMEOUT'), listener);
        else if (s[kTls] !== undefined) this.#refuseRaw(s[kTls], parserRefusal('HPE_HEADERS_TIMEOUT'), listener);
        else {
          // Still in the handshake: no HTTP answer can be read; named as a handshake timeout.
          this.#tlsFailed(classifyClientTlsError(Object.assign(new Error('handshake timeout'), { code: 'ERR_TLS_HANDSHAKE_TIMEOUT' }), undefined), socket as unknown as TLSSocket, listener);
          socket.destroy();
        }
      }, left);
      s[kHeadDeadline] = t;
      socket.once('close', () => t.cancel());
    }
  }

  /** Its listeners were bound (`listen` succeeded): only then does its close say draining and closed. */
  #listened = false;

  /**
   * Bind every listener. The `listening` lifecycle event (the log's `listening http://…` line)
   * is published at once, or, with `announce: false`, left to `announce()`: a caller that binds
   * more (the runtime: forward proxy, admin) says it only once its whole start succeeded.
   */
  async listen(opts: { announce?: boolean } = {}): Promise<ListeningAddress[]> {
    await listenAll(this.#servers);
    this.#listened = true;
    const addrs = this.addresses();
    addrs.forEach((a, i) => {
      const s = this.#servers[i]!;
      s.name = `${a.address}:${a.port}`;
      if (s.certs !== undefined) s.certs.listener = s.name;
    });
    // ACME orders need the plain listeners bound: their HTTP-01 validations come there.
    for (const s of this.#servers) s.acme?.start();
    if (opts.announce !== false) this.announce();
    return addrs;
  }

  /** Publish the `listening` lifecycle event with the listeners' URLs (see `listen`). */
  announce(): void {
    lifecycle({ event: 'listening', detail: this.addresses().map((a) => a.url).join(' ') });
  }

  addresses(): ListeningAddress[] {
    return this.#servers.map(({ server, certs }) => {
      const a = server.address() as AddressInfo;
      const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      return { address: a.address, port: a.port, url: `${certs !== undefined ? 'https' : 'http'}://${host}:${a.port}` };
    });
  }

  /** HTTP/2 connections open now, over every listener (a session lives until its connection closes). */
  h2Sessions(): number {
    let n = 0;
    for (const { h2 } of this.#servers) n += h2?.sessions ?? 0;
    return n;
  }

  /**
   * Stop accepting, let in-flight requests finish (idle keep-alive connections are
   * closed at once; busy ones get `Connection: close`), then cut what is left after
   * `drainMs` and close the upstream pools.
   */
  close(drainMs = ms(this.config.shutdown.drainTimeout)): Promise<void> {
    this.#closing ??= this.#close(drainMs);
    return this.#closing;
  }

  async #close(drainMs: number): Promise<void> {
    this.ctx.draining = true;
    for (const c of this.#retired) c.draining = true;
    for (const { certs, h2, acme } of this.#servers) {
      certs?.close();
      acme?.close();
      h2?.close();
    }
    // A gateway that never listened (its start or a reload's failed to bind) drains nothing: no
    // "draining 0 requests in flight" / "closed" as if it had run (finding, probe session 37).
    const said = this.#listened;
    if (said) lifecycle({ event: 'draining', detail: `${this.#inflight()} requests in flight` });
    const closed = this.#servers.map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve())));
    for (const { server } of this.#servers) server.closeIdleConnections();
    const deadline = Date.now() + drainMs;
    while ((this.#inflight() > 0 || this.#tunnels.size > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25));
      for (const { server } of this.#servers) server.closeIdleConnections();
    }
    // What is still open is cut by the gateway: its requests are recorded as its doing, with
    // the drain timeout's failure (failure/connections-cut.ts), not as clients that left.
    const cut = new ConnectionsCut('GATEWISE_DRAIN_TIMEOUT', 'the gateway closed the connection at shutdown: the drain timeout passed');
    this.ctx.cut = cut;
    for (const c of this.#retired) c.cut = cut;
    for (const { server } of this.#servers) server.closeAllConnections();
    for (const s of this.#handshaking) s.destroy();
    for (const { h2 } of this.#servers) h2?.destroy();
    for (const t of this.#tunnels) t.destroy();
    await Promise.all(closed);
    await Promise.all([...this.ctx.clusters.values()].map((c) => c.close()));
    await Promise.all([...this.#retiring]);
    if (said) lifecycle({ event: 'closed', detail: '' });
  }

  #onClientError(err: ParserRefusalError, socket: Duplex, listener: string): void {
    const code = err.code;
    // Bytes after a message that ends the connection (Connection: close, HTTP/1.0) are not a
    // request: nothing is answered or recorded, and the response in flight still goes out
    // (Node closes the connection after it). Fuzz finding F8: a phantom 400 record.
    if (code === 'HPE_CLOSED_CONNECTION') return;
    if (code === 'ECONNRESET' || code === 'EPIPE' || !socket.writable) {
      socket.destroy();
      return;
    }
    // The client closed or half-closed in the middle of a request's body (its FIN read while
    // the body was being read: before the upstream's 100 was relayed, right after it, or
    // during the body). That request is already on its way, and its exchange records the
    // client's leaving when the connection closes (499, ended by the client). Taken for a
    // malformed body, it was refused through that exchange: a 400 `http_request_error` written
    // to a client that had left, recorded instead of the 499 the net front records (whose
    // parser sees no EOF: the socket just closes).
    if (bodyCutShortAtEof(code, socket)) {
      socket.destroy();
      return;
    }
    // A head the gateway itself stopped reading (too many pipelined requests wait): not late.
    if (code === 'ERR_HTTP_REQUEST_TIMEOUT' && heldHead(socket)) return;
    // Bytes behind a request refused with a close (its framing faulty: HTTP/1.0 with
    // Transfer-Encoding, http/framing.ts) are not a request: no second answer or record; the
    // refusal goes out and Node closes the connection after it.
    if (closingAfterAnswer(socket as Socket)) return;
    // No request object: the refusal's format comes from the Accept field in the bytes read.
    this.#refuseRaw(socket, parserRefusal(code), listener, undefined, refusalAccept(err), refusalHead(err));
  }

  /** Answer on a raw socket (parser errors, CONNECT) and close it. */
  #refuseRaw(socket: Duplex, f: Failure, listener: string, req?: IncomingMessage, accept: string | undefined = req?.headers.accept, head = req?.method === 'HEAD'): void {
    // Answered and ended already (a refusal or a parser error, then the head deadline of a
    // connection admitted under pressure): a second answer would be a write after end, an
    // uncaught error on a socket Node no longer watches (found by the half-close stall test).
    if (socket.destroyed || socket.writableEnded) return;
    const sock = socket as Socket & { _httpMessage?: ServerResponse };
    const pending = sock._httpMessage;
    if (pending && !pending.writableFinished && !pending.req.complete) {
      // The body of the request being answered is malformed (bad chunking): refuse that request.
      const ex = exchangeOf(pending);
      if (ex) {
        ex.refuse(f);
        return;
      }
    }
    if (pending && !pending.writableFinished) {
      // A pipelined request failed to parse while the previous one is still being answered:
      // the refusal must not overtake that response. Answer once it is finished.
      pending.once('finish', () => this.#refuseRaw(socket, f, listener, req, accept, head));
      pending.once('close', () => {
        if (!pending.writableFinished) socket.destroy();
      });
      return;
    }
    const requestId = newRequestId(this.ctx);
    // A rare path: the listener's HSTS found by its name.
    const entry = this.#servers.find((e) => e.name === listener);
    const hsts = entry === undefined ? undefined : listenerFront(entry.cfg)?.hsts;
    const answered = respondWithFailure(socket, f, { ctx: this.ctx, requestId, accept, head, clientAddress: sock.remoteAddress, clientSocket: sock, close: true, rawForm: 'parser', hsts });
    // The answer ends our side; a client that never closes its own (a half-open socket, or a
    // CONNECT's socket, which nothing reads any more) is let go of after a linger, as the
    // forward proxy's refusals are (the stall hunt of session 13: held for ever before).
    socket.resume();
    destroyAfter(socket, CLOSE_LINGER_MS);
    if (requestEnd.hasSubscribers) {
      const record = requestRecord(requestId, listener, plainAddress(sock.remoteAddress), req, {
        route: undefined,
        cluster: undefined,
        status: answered.status,
        error: answered.type,
        reason: answered.reason,
        phase: answered.phase,
        endedBy: 'client',
        detail: answered.detail,
        attempts: [],
        bytesUp: 0,
        bytesDown: 0,
        durationMs: 0,
        upgrade: false,
      });
      requestEnd.publish(record);
    }
  }
}

function gateFor(l: ListenerConfig): ConnectionGate {
  return new ConnectionGate({ maxConnections: l.maxConnections, maxPerSource: l.maxConnectionsPerSource, handshakeMs: ms(l.requestHeaderTimeout), handshakeFloorMs: ms(l.handshakeFloor) });
}

/**
 * Bind every listener, or none: when one cannot bind, the ones that did are closed before the
 * error goes on (finding, session 29: a start with one port in use left the others bound and
 * serving, and the process never exited).
 */
async function listenAll(entries: readonly ListenerEntry[]): Promise<void> {
  const results = await Promise.allSettled(entries.map((e) => listenOn(e)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed === undefined) return;
  await Promise.all(entries.map((e) => new Promise<void>((resolve) => (e.server.listening ? e.server.close(() => resolve()) : resolve()))));
  throw failed.reason;
}

function listenOn(e: ListenerEntry): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    e.server.once('error', onError);
    e.server.listen(e.cfg.port, e.cfg.address, () => {
      e.server.off('error', onError);
      installAccept(e.server, shapeHttpSocket);
      // This process's forward proxy marks its connections to this listener: they carry a
      // forward user, whom no trust keyed on a loopback address covers (net/own-listeners.ts).
      const a = e.server.address() as AddressInfo;
      e.server.once('close', reserveOwnListener(a.address, a.port, 'gateway'));
      resolve();
    });
  });
}

/** How often Node looks for slow request heads: a twentieth of the timeout, 50–500 ms (the 408 comes at most that late). */
export function headerCheckInterval(timeoutMs: number): number {
  return Math.max(50, Math.min(500, Math.floor(timeoutMs / 20)));
}

function lifecycle(r: LifecycleRecord): void {
  if (gatewayLifecycle.hasSubscribers) gatewayLifecycle.publish(r);
}

/** Build and start a gateway from a validated config, with optional hooks and custom balancers. */
export async function startGateway(config: Config, options: GatewayOptions = {}): Promise<Gateway> {
  const gw = new Gateway(config, options);
  await gw.listen();
  return gw;
}

/** CONNECT on the reverse gateway (either protocol): refused by method, with the `Allow` of the gateway as a whole (router.ts `serverAllow`). */
function connectRefused(allow: string): Failure {
  return new Failure({ type: 'http_request_error', phase: 'accept', reason: 'method_not_allowed', allow, detail: 'CONNECT is not served by the reverse gateway (use the forward proxy)' });
}

type GatedSocket = Socket & { [kRefused]?: boolean; [kServed]?: boolean; [kHeadDeadline]?: Timeout; [kRefusal]?: Failure; [kTls]?: TLSSocket; [kAcceptedAt]?: number; [kPeer]?: string; [kH2]?: H2Front };

/**
 * The TCP socket under a server-side TLS socket. Node's tls.Server wraps each accepted
 * socket and keeps it as `_parent` (not public API, stable since Node 0.11; checked by
 * test/gateway/tls-listener.test.ts): the connection gate's marks are on it.
 */
function rawOf(socket: TLSSocket): GatedSocket {
  return ((socket as TLSSocket & { _parent?: Socket })._parent ?? socket) as GatedSocket;
}

/** firstRequest for a request on a TLS socket. */
function firstTlsRequest(socket: Socket): boolean {
  return firstRequest(rawOf(socket as TLSSocket));
}

/**
 * A request head arrived on `socket`: true when the connection was refused at the gate
 * (its 503 is written; the request is not served). Stops a first-head deadline.
 */
function firstRequest(socket: Socket): boolean {
  const s = socket as GatedSocket;
  if (s[kRefused]) return true;
  if (!s[kServed]) {
    s[kServed] = true;
    s[kHeadDeadline]?.cancel();
  }
  return false;
}

/**
 * A request on a connection already answered 503 at the gate: nothing more is written. On
 * a TLS socket the 503 may still be in the socket's queue (written after the handshake,
 * ended): the socket closes when it is out, and destroying it now would lose it.
 */
function refusedRequest(res: ServerResponse): void {
  if (res.socket !== null && res.socket.writableEnded) return;
  res.destroy();
}

import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { loadLabCerts } from './certs.js';
import { LabStatsRecorder, type LabStats } from './lab-stats.js';
import { LabParamError } from './query.js';
import { rawBytes } from './raw.js';
import { sendText, type LabRuntime } from './route.js';
import { KeepAliveCloser, type KeepAliveCloserOptions } from './keep-alive-closer.js';
import { findRoute } from './router.js';
import { SocketTracker } from './socket-tracker.js';
import { TimerSet } from './timer-set.js';
import { WorkQueue } from './work-queue.js';
import { WsEcho } from './ws-echo.js';

export interface LabOptions extends KeepAliveCloserOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 (default) = ephemeral. The TLS listeners always use ephemeral ports. */
  port?: number;
  /** Also start two TLS listeners: one with an untrusted self-signed cert, one signed by the lab CA. */
  tls?: boolean;
  /** Concurrent /work requests served, default 4. */
  capacity?: number;
  /** /work requests waiting beyond capacity, default 16; beyond that: 503. */
  queue?: number;
  /** Server keep-alive timeout, default 5000. Idle connections are closed after exactly this long. */
  keepAliveTimeoutMs?: number;
  /**
   * What `Keep-Alive: timeout=N` says. Default: Node's own, floor(keepAliveTimeoutMs / 1000)
   * seconds. A number advertises that many seconds whatever the real timeout (a server that
   * closes earlier than it says); false sends no Keep-Alive header at all.
   */
  advertiseKeepAlive?: number | false;
  /**
   * Serve every request as if its path were this one (for example '/close' or
   * '/status/503'), so one lab can play a broken endpoint beside healthy ones.
   */
  fault?: string;
}

export interface Lab {
  /** http://HOST:PORT */
  readonly url: string;
  readonly port: number;
  /** https://HOST:PORT2 with a self-signed (untrusted) certificate. */
  readonly tlsSelfSignedUrl?: string;
  /** https://localhost:PORT3 with a certificate for localhost, 127.0.0.1 and ::1 signed by the lab CA. */
  readonly tlsCaUrl?: string;
  /** The lab CA certificate (PEM) to trust `tlsCaUrl`. */
  readonly caPem?: string;
  /** A port that was bound then closed: connecting is refused. */
  readonly refusedPort: number;
  readonly stats: LabStats;
  close(): Promise<void>;
}

/** Options the lab cannot run with. */
export class LabOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LabOptionsError';
  }
}

const BAD_UPGRADE = rawBytes('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 38\r\n\r\nlab: only /ws accepts an upgrade (ws)\n');
const NO_WS = rawBytes('HTTP/1.1 501 Not Implemented\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 36\r\n\r\nlab: the ws package is not installed');

function wholeNumber(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min) throw new LabOptionsError(`${name} must be an integer >= ${min}`);
  return value;
}

function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Bind an ephemeral port and release it: connecting there is then refused. */
async function refusedPortOn(host: string): Promise<number> {
  const probe = createNetServer();
  const port = await listen(probe as unknown as Server, 0, host);
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/**
 * A 'finish' listener for responses. Node arms the idle timer at keepAliveTimeout + 1 s
 * (a safety buffer); this brings it back to exactly keepAliveTimeout so the lab closes idle
 * connections when it says it does. It runs after Node's own 'finish' listener, which armed
 * the timer; a socket that is not idle (or has no keep-alive timer) is left alone.
 */
function idleShortener(keepAliveMs: number): (this: ServerResponse) => void {
  return function shortenIdle(this: ServerResponse): void {
    const socket = this.req.socket;
    const armed = socket.timeout;
    if (!socket.destroyed && armed !== undefined && armed > keepAliveMs) socket.setTimeout(keepAliveMs);
  };
}

function ignoreSocketError(): void {
  // The peer went away; the socket is destroyed anyway.
}

class RunningLab implements Lab, LabRuntime {
  readonly timers = new TimerSet();
  readonly work: WorkQueue;
  readonly sockets = new SocketTracker();
  readonly stats: LabStatsRecorder;
  url = '';
  port = 0;
  tlsSelfSignedUrl?: string;
  tlsCaUrl?: string;
  caPem?: string;
  refusedPort = 0;

  readonly #keepAliveMs: number;
  readonly #shortenIdle: (this: ServerResponse) => void;
  readonly #advertise: string | false | undefined;
  readonly #servers: Server[] = [];
  #ws: WsEcho | undefined;
  #closing: Promise<void> | undefined;
  /** Set by startLab from LabOptions.fault. */
  fault: string | undefined;
  /** Set by startLab when LabOptions asks for irregular idle closes or a request limit per connection. */
  closer: KeepAliveCloser | undefined;

  constructor(capacity: number, queue: number, keepAliveMs: number, advertise: number | false | undefined) {
    this.work = new WorkQueue(capacity, queue);
    this.stats = new LabStatsRecorder(this.work);
    this.#keepAliveMs = keepAliveMs;
    this.#shortenIdle = idleShortener(keepAliveMs);
    this.#advertise = typeof advertise === 'number' ? `timeout=${advertise}` : advertise;
  }

  async start(opts: LabOptions): Promise<void> {
    const host = opts.host ?? '127.0.0.1';
    this.#ws = await WsEcho.create();
    const plain = this.#wire(createHttpServer(), false);
    this.port = await listen(plain, opts.port ?? 0, host);
    this.url = `http://${urlHost(host)}:${this.port}`;
    if (opts.tls === true) {
      const certs = loadLabCerts();
      const selfSigned = this.#wire(createHttpsServer({ cert: certs.selfSignedCert, key: certs.selfSignedKey }), true);
      this.tlsSelfSignedUrl = `https://${urlHost(host)}:${await listen(selfSigned, 0, host)}`;
      const caSigned = this.#wire(createHttpsServer({ cert: certs.caSignedCert, key: certs.caSignedKey }), true);
      const caPort = await listen(caSigned, 0, host);
      // The certificate names localhost, 127.0.0.1 and ::1; 'localhost' exercises name checking.
      this.tlsCaUrl = `https://${host === '127.0.0.1' ? 'localhost' : urlHost(host)}:${caPort}`;
      this.caPem = certs.ca;
    }
    this.refusedPort = await refusedPortOn(host);
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    const closed = this.#servers.map(closeServer);
    this.#ws?.close();
    this.timers.clearAll();
    this.work.clear();
    this.sockets.destroyAll();
    await Promise.all(closed);
  }

  #wire(server: Server, tls: boolean): Server {
    server.keepAliveTimeout = this.#keepAliveMs;
    const sockets = this.sockets;
    const stats = this.stats;
    server.on('connection', () => stats.connections++);
    if (tls) {
      server.on('connection', (socket: Socket) => sockets.track(socket, true));
      server.on('secureConnection', (socket: Socket) => sockets.track(socket));
    } else {
      server.on('connection', (socket: Socket) => sockets.track(socket));
    }
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
    this.#servers.push(server);
    return server;
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = this.fault ?? req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    this.stats.record(req, path);
    if (this.#keepAliveMs > 0) res.once('finish', this.#shortenIdle);
    if (this.#advertise !== undefined && res.shouldKeepAlive) {
      // An explicit Connection header stops Node from writing its own Keep-Alive line.
      res.setHeader('connection', 'keep-alive');
      if (this.#advertise !== false) res.setHeader('keep-alive', this.#advertise);
    }
    this.closer?.onRequest(req, res);
    try {
      findRoute(path)({ req, res, query: new URLSearchParams(q < 0 ? '' : url.slice(q + 1)), lab: this });
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
      } else if (err instanceof LabParamError) {
        sendText(res, 400, `lab: ${err.message}\n`);
      } else {
        sendText(res, 500, `lab: internal error: ${err instanceof Error ? err.message : String(err)}\n`);
      }
    }
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    this.stats.record(req, path);
    socket.on('error', ignoreSocketError);
    if (path !== '/ws') {
      socket.end(BAD_UPGRADE);
      return;
    }
    if (this.#ws === undefined) {
      socket.end(NO_WS);
      return;
    }
    this.#ws.handle(req, socket, head);
  }
}

/** Start the failure lab: an upstream that reproduces every fault a gateway can meet. */
export async function startLab(opts: LabOptions = {}): Promise<Lab> {
  const capacity = wholeNumber('capacity', opts.capacity, 4, 1);
  const queue = wholeNumber('queue', opts.queue, 16, 0);
  const keepAliveMs = wholeNumber('keepAliveTimeoutMs', opts.keepAliveTimeoutMs, 5000, 0);
  const advertise = opts.advertiseKeepAlive === false ? false : opts.advertiseKeepAlive === undefined ? undefined : wholeNumber('advertiseKeepAlive', opts.advertiseKeepAlive, 0, 0);
  const lab = new RunningLab(capacity, queue, keepAliveMs, advertise);
  lab.fault = opts.fault;
  if (KeepAliveCloser.wanted(opts)) {
    const range = opts.idleCloseMs;
    if (range !== undefined && !(range[0] >= 0 && range[1] >= range[0])) throw new LabOptionsError(`idleCloseMs must be [min, max] with 0 <= min <= max, got [${range.join(', ')}]`);
    if (opts.maxRequestsPerConnection !== undefined) wholeNumber('maxRequestsPerConnection', opts.maxRequestsPerConnection, 1, 1);
    lab.closer = new KeepAliveCloser(opts, lab.timers);
  }
  try {
    await lab.start(opts);
  } catch (err) {
    await lab.close();
    throw err;
  }
  return lab;
}

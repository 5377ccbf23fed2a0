import { readFileSync } from 'node:fs';
import type { LookupFunction } from 'node:net';
import { ConnectionPool, upstreamConnector, type PoolConnection } from '../pool/index.js';

/** Requests one upstream HTTP/2 connection carries at once by default (undici's own default, and nghttp2's usual limit). */
const H2_STREAMS_PER_CONNECTION = 100;

export interface EndpointOptions {
  url: string;
  weight: number;
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  keepAliveMs: number;
  maxConnections?: number;
  maxResponseHeaderSize: number;
  /** HTTP version toward the endpoint: h2 offers HTTP/2 by ALPN, h2c speaks it with prior knowledge. Default http1. */
  protocol?: 'http1' | 'h2' | 'h2c';
  /** HTTP/2 only: requests at once on one connection before the pool opens another (default 100). */
  h2MaxStreams?: number;
  /** The HTTP/1.1 client: the hand-written one (pool/native-client.ts; gateway/context.ts gives it to HTTP/1.1 clusters that name none) or undici's. */
  client?: 'undici' | 'native';
  draining?: boolean;
  tls: { verify: boolean; ca?: string; servername?: string };
  lookup: LookupFunction;
}

/** One upstream server: its address, its connection pool, and what balancers read. */
export class Endpoint {
  readonly url: URL;
  readonly origin: string;
  /** `host:port`, as named in Proxy-Status next-hop and logs. */
  readonly nextHop: string;
  /** Host header value when a route asks for the endpoint's own. */
  readonly hostHeader: string;
  readonly weight: number;
  readonly pool: ConnectionPool<PoolConnection>;
  /** Requests in flight to this endpoint. */
  inflight = 0;
  // ---- status: health checks and the outlier detector write it; balancers only read it ----
  /** Active health-check verdict; 'unknown' (no check configured or not yet run) counts as up. */
  health: 'unknown' | 'healthy' | 'unhealthy' = 'unknown';
  /** Ejected by passive checks until this time (ms since epoch); 0 = not ejected. */
  ejectedUntil = 0;
  /** How many times the outlier detector has ejected it (grows the back-off). */
  ejections = 0;
  /** Draining: no new requests; in-flight ones finish. */
  draining = false;
  /** When it (re)joined the healthy set, for slow start (ms since epoch). */
  readyAt = 0;
  /** Peak-EWMA latency estimate in ms (0 = no sample yet), kept by the balancer that uses it. */
  ewmaMs = 0;
  ewmaAt = 0;
  // ---- the keep-alive race ----
  /** Shortest idle time after which the upstream was seen closing a pooled connection (ms); Infinity = never seen. */
  learnedIdleMs = Infinity;
  /** Last time a response completed on this endpoint (ms since epoch). */
  lastActivity = 0;

  constructor(opts: EndpointOptions) {
    this.url = new URL(opts.url);
    this.origin = this.url.origin;
    const port = this.url.port || (this.url.protocol === 'https:' ? '443' : '80');
    this.nextHop = `${this.url.hostname}:${port}`;
    this.hostHeader = this.url.host;
    this.weight = opts.weight;
    const connect: Record<string, unknown> = { lookup: opts.lookup, timeout: opts.connectTimeoutMs };
    if (this.url.protocol === 'https:') {
      connect.rejectUnauthorized = opts.tls.verify;
      if (opts.tls.ca) connect.ca = readFileSync(opts.tls.ca, 'utf8');
      if (opts.tls.servername) connect.servername = opts.tls.servername;
    }
    // HTTP/2 upstream (gRPC): the connector offers h2 by ALPN, or marks a cleartext socket as
    // h2 (prior knowledge); the pool's H2Client (pool/h2-client.ts) speaks HTTP/2 on that socket.
    if (opts.protocol === 'h2') connect.allowH2 = true;
    else if (opts.protocol === 'h2c') Object.assign(connect, { allowH2: true, useH2c: true });
    this.draining = opts.draining ?? false;
    const h2 = opts.protocol === 'h2' || opts.protocol === 'h2c';
    const h2Streams = opts.h2MaxStreams ?? H2_STREAMS_PER_CONNECTION;
    this.pool = new ConnectionPool<PoolConnection>({
      origin: this.origin,
      maxConnections: opts.maxConnections ?? Infinity,
      keepAliveMs: opts.keepAliveMs,
      clientOptions: {
        connectTimeout: opts.connectTimeoutMs,
        headersTimeout: opts.headersTimeoutMs,
        bodyTimeout: opts.bodyTimeoutMs,
        keepAliveTimeout: opts.keepAliveMs,
        keepAliveMaxTimeout: opts.keepAliveMs,
        keepAliveTimeoutThreshold: 1000,
        maxHeaderSize: opts.maxResponseHeaderSize,
      },
      connector: upstreamConnector(connect),
      servername: opts.tls.servername,
      // HTTP/2 upstream: up to `h2MaxStreams` requests at once on one connection (multiplexed).
      maxStreams: h2 ? h2Streams : 1,
      h2,
      native: opts.client === 'native',
    });
  }

  /** May take new requests now: not failed by health checks, not ejected, not draining. */
  available(now: number): boolean {
    return this.health !== 'unhealthy' && this.ejectedUntil <= now && !this.draining;
  }

  close(): Promise<void> {
    return this.pool.close().catch(() => this.pool.destroy());
  }

  destroy(): Promise<void> {
    return this.pool.destroy();
  }
}

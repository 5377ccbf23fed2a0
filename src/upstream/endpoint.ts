import { readFileSync } from 'node:fs';
import type { LookupFunction } from 'node:net';
import { Pool } from 'undici';

export interface EndpointOptions {
  url: string;
  weight: number;
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  keepAliveMs: number;
  maxConnections?: number;
  maxResponseHeaderSize: number;
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
  readonly pool: Pool;
  /** Requests in flight to this endpoint. */
  inflight = 0;

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
    this.pool = new Pool(this.origin, {
      connections: opts.maxConnections ?? null,
      pipelining: 1,
      connectTimeout: opts.connectTimeoutMs,
      headersTimeout: opts.headersTimeoutMs,
      bodyTimeout: opts.bodyTimeoutMs,
      keepAliveTimeout: opts.keepAliveMs,
      keepAliveMaxTimeout: Math.max(opts.keepAliveMs, 600_000),
      keepAliveTimeoutThreshold: 1000,
      maxHeaderSize: opts.maxResponseHeaderSize,
      connect,
    });
  }

  close(): Promise<void> {
    return this.pool.close().catch(() => this.pool.destroy());
  }

  destroy(): Promise<void> {
    return this.pool.destroy();
  }
}

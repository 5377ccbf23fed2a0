import type { LookupFunction } from 'node:net';
import { Endpoint } from './endpoint.js';

export interface ClusterSettings {
  endpoints: ReadonlyArray<string | { url: string; weight?: number }>;
  tls: { verify: boolean; ca?: string; servername?: string };
  connectTimeoutMs: number;
  responseTimeoutMs: number;
  idleTimeoutMs: number;
  keepAliveMs: number;
  maxConnections?: number;
  maxResponseHeaderSize: number;
}

/**
 * A named group of endpoints. Picks with smooth weighted round robin (the nginx
 * algorithm: even spread, no bursts to the heaviest endpoint).
 */
export class Cluster {
  readonly name: string;
  readonly endpoints: readonly Endpoint[];
  readonly responseTimeoutMs: number;
  readonly idleTimeoutMs: number;
  #current: number[];
  #totalWeight: number;

  constructor(name: string, s: ClusterSettings, lookup: LookupFunction) {
    this.name = name;
    this.responseTimeoutMs = s.responseTimeoutMs;
    this.idleTimeoutMs = s.idleTimeoutMs;
    this.endpoints = s.endpoints.map(
      (e) =>
        new Endpoint({
          url: typeof e === 'string' ? e : e.url,
          weight: typeof e === 'string' ? 1 : e.weight ?? 1,
          connectTimeoutMs: s.connectTimeoutMs,
          headersTimeoutMs: s.responseTimeoutMs,
          bodyTimeoutMs: s.idleTimeoutMs,
          keepAliveMs: s.keepAliveMs,
          maxConnections: s.maxConnections,
          maxResponseHeaderSize: s.maxResponseHeaderSize,
          tls: s.tls,
          lookup,
        }),
    );
    this.#current = this.endpoints.map(() => 0);
    this.#totalWeight = this.endpoints.reduce((n, e) => n + e.weight, 0);
  }

  /** The next endpoint, skipping those in `exclude` when another is available. */
  pick(exclude?: ReadonlySet<Endpoint>): Endpoint {
    const eps = this.endpoints;
    if (eps.length === 1) return eps[0]!;
    let best = -1;
    for (let i = 0; i < eps.length; i++) {
      this.#current[i]! += eps[i]!.weight;
      if (exclude?.has(eps[i]!)) continue;
      if (best < 0 || this.#current[i]! > this.#current[best]!) best = i;
    }
    if (best < 0) best = 0;
    this.#current[best]! -= this.#totalWeight;
    return eps[best]!;
  }

  close(): Promise<unknown> {
    return Promise.all(this.endpoints.map((e) => e.close()));
  }

  destroy(): Promise<unknown> {
    return Promise.all(this.endpoints.map((e) => e.destroy()));
  }
}

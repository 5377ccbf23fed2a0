import type { Dialer, UdpDialer } from './dialer.js';
import { EgressRouter, type EgressEvents, type RoutingRule } from './egress-router.js';
import { AddressExit, ProxyChainExit, type Exit } from './exit.js';
import { ExitPool, type RotationStrategy } from './exit-pool.js';
import { parseProxyUrl } from './proxy-url.js';
import type { Resolver } from './resolver.js';
import type { SharedState } from '../state/index.js';

/** One pool as the config describes it, durations already in ms. */
export interface PoolSpec {
  addresses?: ReadonlyArray<string | { address: string; weight?: number }>;
  /** Proxy URLs, `{ url, weight }`, or `{ chain: [url, …], weight }` (Connector over Connector). */
  proxies?: ReadonlyArray<string | { url: string; weight?: number } | { chain: readonly string[]; weight?: number }>;
  strategy: RotationStrategy;
  sessionTtlMs: number;
  sessionIdleMs: number;
  failure: { threshold: number; cooldownMs: number; maxCooldownMs: number };
  maxAttempts: number;
}

export interface EgressSpec {
  pools: Record<string, PoolSpec>;
  routing?: RoutingRule[];
  defaultPool?: string;
}

export function buildExits(spec: PoolSpec, resolver?: Resolver): Exit[] {
  const exits: Exit[] = [];
  for (const a of spec.addresses ?? []) {
    if (typeof a === 'string') exits.push(new AddressExit(a, { resolver }));
    else exits.push(new AddressExit(a.address, { resolver, weight: a.weight }));
  }
  for (const p of spec.proxies ?? []) {
    if (typeof p === 'string') exits.push(new ProxyChainExit([parseProxyUrl(p)], { resolver }));
    else if ('chain' in p) exits.push(new ProxyChainExit(p.chain.map(parseProxyUrl), { weight: p.weight, resolver }));
    else exits.push(new ProxyChainExit([parseProxyUrl(p.url)], { weight: p.weight, resolver }));
  }
  return exits;
}

/** Build the router (pools, exits, selectors, markers) from its spec. */
export function buildEgress(spec: EgressSpec, deps: { direct: Dialer; directUdp: UdpDialer; resolver?: Resolver; events?: EgressEvents; now?: () => number; random?: () => number; shared?: SharedState }): EgressRouter {
  const pools = new Map<string, ExitPool>();
  for (const [name, p] of Object.entries(spec.pools)) {
    pools.set(
      name,
      new ExitPool(buildExits(p, deps.resolver), {
        name,
        strategy: p.strategy,
        sessionTtlMs: p.sessionTtlMs,
        sessionIdleMs: p.sessionIdleMs,
        failure: p.failure,
        maxAttempts: p.maxAttempts,
        now: deps.now,
        random: deps.random,
        shared: deps.shared,
        onCooldownEnd: deps.events?.onExitReturn && ((exit, host, forMs) => deps.events?.onExitReturn?.({ pool: name, exit, host, forMs })),
      }),
    );
  }
  return new EgressRouter({ pools, routing: spec.routing, defaultPool: spec.defaultPool, direct: deps.direct, directUdp: deps.directUdp, events: deps.events });
}

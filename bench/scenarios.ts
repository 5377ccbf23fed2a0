// What is measured. A scenario belongs to one contender group and is driven
// either by wrk or by the tunnel load generator.
import { POST_BODY } from './configs.js';
import type { Group } from './contenders.js';
import { basicAuthorization, type ProxyCredentials, type TunnelLoadOptions } from './tunnel-load.js';
import type { WrkRequest } from './wrk.js';

export interface Scenario {
  id: string;
  group: Group;
  title: string;
  /** What one counted unit is. */
  unit: 'req/s' | 'tunnels/s';
  connections: number;
  /** Also report throughput in MB/s (10^6 bytes). */
  throughput?: boolean;
  /** Included in BENCH_QUICK=1. */
  quick: boolean;
  /** wrk request; `direct` is true for the no-proxy baseline. */
  wrk?: (originPort: number, direct: boolean) => WrkRequest;
  tunnel?: Pick<TunnelLoadOptions, 'protocol' | 'mode' | 'path'>;
}

const get = (p: string, extra: Partial<WrkRequest> = {}) => (): WrkRequest => ({ method: 'GET', path: p, ...extra });

export const SCENARIOS: Scenario[] = [
  { id: 'rev-1k-c50', group: 'reverse', title: 'GET 1 KiB, 50 keep-alive connections', unit: 'req/s', connections: 50, quick: true, wrk: get('/1k') },
  {
    id: 'rev-1k-c50-fixed',
    group: 'reverse',
    title: 'GET 1 KiB, 50 keep-alive connections at a fixed ~2,000 req/s (the same load for every contender: compare latency here)',
    unit: 'req/s',
    connections: 50,
    quick: true,
    // 50 connections × 1 request per 25 ms (±50 %) ≈ 2,000 req/s, below every contender's capacity.
    wrk: get('/1k', { delayMs: 25 }),
  },
  { id: 'rev-1k-c200', group: 'reverse', title: 'GET 1 KiB, 200 keep-alive connections', unit: 'req/s', connections: 200, quick: false, wrk: get('/1k') },
  { id: 'rev-1m-c10', group: 'reverse', title: 'GET 1 MiB, 10 keep-alive connections', unit: 'req/s', connections: 10, throughput: true, quick: true, wrk: get('/1m') },
  {
    id: 'rev-close-c50',
    group: 'reverse',
    title: 'GET 1 KiB, new client connection per request (`Connection: close`), 50 concurrent',
    unit: 'req/s',
    connections: 50,
    quick: false,
    wrk: get('/1k', { connectionClose: true }),
  },
  {
    id: 'rev-post64k-c50',
    group: 'reverse',
    title: 'POST 64 KiB body, 50 keep-alive connections',
    unit: 'req/s',
    connections: 50,
    quick: true,
    wrk: get('/post', { method: 'POST', bodyBytes: POST_BODY }),
  },
  {
    id: 'fwd-abs-1k-c50',
    group: 'forward',
    title: 'absolute-form `GET http://origin/1k` through the proxy, 50 keep-alive connections',
    unit: 'req/s',
    connections: 50,
    quick: true,
    wrk: (origin, direct) =>
      direct ? { method: 'GET', path: '/1k' } : { method: 'GET', path: `http://127.0.0.1:${origin}/1k`, host: `127.0.0.1:${origin}` },
  },
  {
    id: 'fwd-connect-c50',
    group: 'forward',
    title: 'CONNECT tunnel per request (open, one GET 1 KiB, close), 50 concurrent',
    unit: 'tunnels/s',
    connections: 50,
    quick: true,
    tunnel: { protocol: 'connect', mode: 'per-tunnel', path: '/1k' },
  },
  {
    id: 'fwd-intunnel-c50',
    group: 'forward',
    title: 'GET 1 KiB inside 50 long-lived CONNECT tunnels',
    unit: 'req/s',
    connections: 50,
    quick: false,
    tunnel: { protocol: 'connect', mode: 'in-tunnel', path: '/1k' },
  },
  {
    id: 'socks-connect-c50',
    group: 'socks',
    title: 'SOCKS5 CONNECT per request (open, one GET 1 KiB, close), 50 concurrent',
    unit: 'tunnels/s',
    connections: 50,
    quick: true,
    tunnel: { protocol: 'socks5', mode: 'per-tunnel', path: '/1k' },
  },
  {
    id: 'socks-intunnel-c50',
    group: 'socks',
    title: 'GET 1 KiB inside 50 long-lived SOCKS5 tunnels',
    unit: 'req/s',
    connections: 50,
    quick: false,
    tunnel: { protocol: 'socks5', mode: 'in-tunnel', path: '/1k' },
  },
  // Same load as rev-1k-c200, but the contenders are not pinned (see run.ts), so a second worker can use the other core.
  {
    id: 'scale-1k-c200',
    group: 'scaling',
    title: 'GET 1 KiB, 200 keep-alive connections, contender free to use both cores',
    unit: 'req/s',
    connections: 200,
    quick: false,
    wrk: get('/1k'),
  },
];

/** The wrk request of a scenario, with the contender's credentials when it needs them. */
export function wrkRequest(wrk: NonNullable<Scenario['wrk']>, originPort: number, direct: boolean, auth?: ProxyCredentials): WrkRequest {
  const req = wrk(originPort, direct);
  return auth ? { ...req, proxyAuthorization: basicAuthorization(auth) } : req;
}

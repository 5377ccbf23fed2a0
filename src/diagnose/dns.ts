import { getServers, promises as dnsp } from 'node:dns';
import { isIP } from 'node:net';
import { classify, ERROR_TYPES } from '../failure/index.js';
import type { Address, PhaseFailure } from './probe.js';

export interface FamilyLookup {
  ms: number;
  addresses: string[];
  failure?: PhaseFailure;
}

export interface DnsReport {
  host: string;
  /** How the addresses were found. */
  source: 'literal' | 'resolve-flag' | 'system';
  /** The resolver, in words (getaddrinfo reads /etc/hosts, then the servers listed). */
  resolver: string;
  servers: string[];
  ms: number;
  /** Every address, IPv4 first (the order connects are tried in). */
  addresses: Address[];
  v4?: FamilyLookup;
  v6?: FamilyLookup;
  /** Set when no address was found at all. */
  failure?: PhaseFailure;
}

function elapsed(t0: bigint): number {
  return Math.round(Number(process.hrtime.bigint() - t0) / 1e4) / 100;
}

/** Look a name up over DNS at these servers (c-ares), instead of the system's getaddrinfo. */
export function dnsResolver(servers: readonly string[], timeoutMs: number): InstanceType<typeof dnsp.Resolver> {
  const r = new dnsp.Resolver({ timeout: Math.max(1, Math.round(timeoutMs)), tries: 1 });
  r.setServers([...servers]);
  return r;
}

async function lookupFamily(host: string, family: 4 | 6, timeoutMs: number, servers?: readonly string[]): Promise<FamilyLookup> {
  const t0 = process.hrtime.bigint();
  let timer: NodeJS.Timeout | undefined;
  const query = (): Promise<Array<{ address: string }>> => {
    if (!servers) return dnsp.lookup(host, { all: true, family, verbatim: true });
    const r = dnsResolver(servers, timeoutMs);
    return (family === 4 ? r.resolve4(host) : r.resolve6(host)).then((xs) => xs.map((address) => ({ address })));
  };
  try {
    const found = await Promise.race([
      query(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(Object.assign(new Error('lookup timed out'), { code: 'ETIMEOUT', syscall: 'getaddrinfo' })), timeoutMs);
      }),
    ]);
    return { ms: elapsed(t0), addresses: [...new Set(found.map((a) => a.address))] };
  } catch (err) {
    const f = classify(err, { connected: false, responseStarted: false, headersReceived: false, nextHop: host });
    const code = (err as { code?: string }).code;
    return {
      ms: elapsed(t0),
      addresses: [],
      failure: { type: f.type, phase: 'dns', ...(code ? { code } : {}), detail: f.detail, explain: ERROR_TYPES[f.type].explain, ...(f.params ? { params: f.params } : {}) },
    };
  } finally {
    clearTimeout(timer);
  }
}

/** The DNS phase: each family separately, with the resolver named. `resolve` is --resolve's answer for this host and port. */
export async function resolveHost(host: string, timeoutMs: number, resolve?: string, dnsServers?: readonly string[]): Promise<DnsReport> {
  const servers = dnsServers ? [...dnsServers] : getServers();
  const literal = isIP(host);
  if (literal) {
    return { host, source: 'literal', resolver: 'none (the URL names an address)', servers: [], ms: 0, addresses: [{ address: host, family: literal as 4 | 6 }] };
  }
  if (resolve !== undefined) {
    return { host, source: 'resolve-flag', resolver: '--resolve (no lookup)', servers: [], ms: 0, addresses: [{ address: resolve, family: isIP(resolve) as 4 | 6 }] };
  }
  const t0 = process.hrtime.bigint();
  const [v4, v6] = await Promise.all([lookupFamily(host, 4, timeoutMs, dnsServers), lookupFamily(host, 6, timeoutMs, dnsServers)]);
  const report: DnsReport = {
    host,
    source: 'system',
    resolver: dnsServers ? `DNS at ${servers.join(', ')}` : `the system resolver (getaddrinfo: /etc/hosts, then ${servers.length ? servers.join(', ') : 'no DNS server configured'})`,
    servers,
    ms: elapsed(t0),
    addresses: [...v4.addresses.map((address) => ({ address, family: 4 as const })), ...v6.addresses.map((address) => ({ address, family: 6 as const }))],
    v4,
    v6,
  };
  if (!report.addresses.length) report.failure = v4.failure ?? v6.failure;
  return report;
}

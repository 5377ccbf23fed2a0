import { promises as dnsp } from 'node:dns';
import { isIP } from 'node:net';
import { randomBytes } from 'node:crypto';
import { dnsResolver, resolveHost, type DnsReport } from './dns.js';
import { BROWSER_HEADERS, CURL_HEADERS, cacheSignals, outcomeOf, type Experiments, type Outcome, type PathEntry, type RefreshResult } from './experiments.js';
import { readHops, type HopReading } from './hop.js';
import { checkInput, DiagnoseInputError, type CheckedInput, type DiagnoseOptions } from './input.js';
import { hostOf, portOf, probe, type Address, type ProbeResult, type ProbeSpec } from './probe.js';
import { decide, type Verdict } from './verdict.js';

/** Everything one run found: the phases of the first try, the hop, the experiments, the verdict. */
export interface Diagnosis {
  url: string;
  method: string;
  startedAt: string;
  dns: DnsReport;
  proxy?: { url: string; addresses: Address[] };
  main: ProbeResult;
  hop?: HopReading;
  experiments: Experiments;
  verdict: Verdict;
  durationMs: number;
}

function familyWord(f: 4 | 6): string {
  return f === 4 ? 'IPv4' : 'IPv6';
}

async function proxyAddresses(proxy: URL, timeoutMs: number, servers?: readonly string[]): Promise<Address[]> {
  const host = hostOf(proxy);
  const literal = isIP(host);
  if (literal) return [{ address: host, family: literal as 4 | 6 }];
  let timer: NodeJS.Timeout | undefined;
  try {
    const found = await Promise.race([
      servers
        ? dnsResolver(servers, timeoutMs)
            .resolve4(host)
            .then((xs) => xs.map((address) => ({ address, family: 4 })))
        : dnsp.lookup(host, { all: true }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(Object.assign(new Error('timed out'), { code: 'ETIMEOUT' })), timeoutMs);
      }),
    ]);
    return found.map((a) => ({ address: a.address, family: a.family as 4 | 6 }));
  } catch (err) {
    throw new DiagnoseInputError('--proxy', `--proxy ${proxy.origin}: the proxy's name ${host} does not resolve (${(err as { code?: string }).code ?? 'lookup failed'})`);
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function withQuery(u: URL, key: string, value: string): URL {
  const c = new URL(u.href);
  c.searchParams.append(key, value);
  return c;
}

/**
 * `gatewise diagnose URL`: the troubleshooting guide, run. The first try goes phase by phase
 * (DNS, connect per address, TLS, HTTP); then the guide's steps run as experiments (refresh,
 * bypass caches, another client, each network path) and the verdict names the hop that
 * failed, whose side it is on, how sure that is, and what to do.
 */
export async function diagnose(options: DiagnoseOptions): Promise<Diagnosis> {
  const input: CheckedInput = checkInput(options);
  const t0 = Date.now();
  const startedAt = new Date(t0).toISOString();
  const proxy = input.proxy ? { url: input.proxy.href, addresses: await proxyAddresses(input.proxy, input.timeoutMs, options.dnsServers) } : undefined;
  const host = hostOf(input.url);
  const port = portOf(input.url);
  const dns = await resolveHost(host, input.timeoutMs, input.resolve.get(`${host.toLowerCase()}:${port}`), options.dnsServers);

  const spec = (over: Partial<ProbeSpec> = {}): ProbeSpec => ({
    url: input.url,
    method: input.method,
    headers: [...CURL_HEADERS.filter(([k]) => !input.headers.some(([h]) => h.toLowerCase() === k.toLowerCase())), ...input.headers],
    timeoutMs: input.timeoutMs,
    insecure: input.insecure,
    ...(options.ca !== undefined ? { ca: options.ca } : {}),
    addresses: dns.addresses,
    ...over,
  });
  const reachable = dns.addresses.length > 0;
  const unreachable: ProbeResult = { via: 'direct', connect: [], totalMs: 0, ...(dns.failure ? { failure: dns.failure } : {}) };

  const main = reachable ? await probe(spec()) : unreachable;
  const hop = main.http ? readHops({ status: main.http.status, headers: main.http.headers, body: main.http.body }) : main.tunnel ? readHops(main.tunnel) : undefined;

  // The experiments, at once: each is a handful of probes, and a hanging site makes each wait.
  const refresh = async (): Promise<RefreshResult> => {
    const tries = await Promise.all(
      Array.from({ length: input.tries }, async (_, i) => {
        await sleep(i * input.spacingMs);
        const startMs = Date.now() - t0;
        const o = reachable ? outcomeOf(await probe(spec())) : outcomeOf(await probeDns());
        return { ...o, startMs };
      }),
    );
    const failed = tries.filter((t) => !t.healthy).length;
    return { tries, failed, pattern: failed === 0 ? 'none' : failed === tries.length ? 'persistent' : 'transient', spacingMs: input.spacingMs };
  };
  const probeDns = async (): Promise<ProbeResult> => {
    const again = await resolveHost(host, input.timeoutMs, undefined, options.dnsServers);
    return again.addresses.length ? probe(spec({ addresses: again.addresses })) : { via: 'direct', connect: [], totalMs: again.ms, ...(again.failure ? { failure: again.failure } : {}) };
  };
  const bustParam = `gatewise-nocache=${randomBytes(6).toString('hex')}`;
  const cacheExp = async (): Promise<Experiments['cache']> => {
    if (!reachable) return undefined;
    const [k, v] = bustParam.split('=') as [string, string];
    const fresh = outcomeOf(
      await probe(spec({ url: withQuery(input.url, k, v), headers: [...spec().headers.filter(([h]) => !/^(cache-control|pragma)$/i.test(h)), ['Cache-Control', 'no-cache'], ['Pragma', 'no-cache']] })),
    );
    return { fresh, cacheSignals: cacheSignals(main.http?.headers), differs: fresh.key !== outcomeOf(main).key, bustParam };
  };
  const clientExp = async (): Promise<Experiments['client']> => {
    if (!reachable) return undefined;
    const without = (names: ReadonlyArray<readonly [string, string]>) => input.headers.filter(([h]) => !names.some(([n]) => n.toLowerCase() === h.toLowerCase()));
    const [browser, curl] = await Promise.all([
      probe(spec({ headers: [...BROWSER_HEADERS, ...without(BROWSER_HEADERS)] })),
      probe(spec({ headers: [...CURL_HEADERS, ...without(CURL_HEADERS)] })),
    ]);
    const b = outcomeOf(browser);
    const c = outcomeOf(curl);
    return { browser: b, curl: c, differs: b.key !== c.key };
  };
  const pathExp = async (): Promise<Experiments['path']> => {
    const entries: PathEntry[] = await Promise.all(
      dns.addresses.map(async (a) => ({
        label: `${a.address} (${familyWord(a.family)})`,
        address: a.address,
        family: a.family,
        via: 'direct' as const,
        outcome: outcomeOf(await probe(spec({ addresses: [a] }))),
      })),
    );
    const families = ([4, 6] as const)
      .map((family) => ({ family, healthy: entries.filter((e) => e.family === family && e.outcome.healthy).length, of: entries.filter((e) => e.family === family).length }))
      .filter((f) => f.of > 0);
    let viaProxy: PathEntry | undefined;
    if (proxy) {
      const o: Outcome = outcomeOf(await probe(spec({ proxy: input.proxy!, addresses: proxy.addresses })));
      viaProxy = { label: `through the proxy ${input.proxy!.origin}`, via: 'proxy', outcome: o };
    }
    return { entries, families, ...(viaProxy ? { proxy: viaProxy } : {}) };
  };
  const [r, cache, client, path] = await Promise.all([refresh(), cacheExp(), clientExp(), pathExp()]);
  const experiments: Experiments = { refresh: r, ...(cache ? { cache } : {}), ...(client ? { client } : {}), path };
  const partial = { url: input.url.href, method: input.method, startedAt, dns, ...(proxy ? { proxy } : {}), main, ...(hop ? { hop } : {}), experiments };
  const verdict = decide(partial);
  return { ...partial, verdict, durationMs: Date.now() - t0 };
}

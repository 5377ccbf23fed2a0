import { Resolver, lookup as systemLookup, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import { LOCALHOST_ADDRESSES, isLocalhostName } from '../net/localhost.js';

export interface DnsOptions {
  /** Servers as "ip" or "ip:port"; none means the system resolver (getaddrinfo). */
  servers?: readonly string[];
  timeoutMs: number;
  tries: number;
}

type Callback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

function wantsAll(options: unknown): boolean {
  return typeof options === 'object' && options !== null && (options as { all?: boolean }).all === true;
}

/**
 * A `lookup` for net/tls connects. With servers configured it asks them directly
 * (c-ares), so tests and operators can point the gateway at their own DNS. `localhost` and
 * names under it are loopback (RFC 6761 §6.3) and asked of no one, as browsers and curl do:
 * a DNS server may answer NXDOMAIN or a foreign address, and getaddrinfo's /etc/hosts names
 * `localhost` but not `app.localhost`, which went on to DNS.
 */
export function makeLookup(opts: DnsOptions): LookupFunction {
  const lookup = namesLookup(opts);
  const local = (hostname: string, options: unknown, callback: Callback): void => {
    if (!isLocalhostName(hostname)) return void (lookup as (h: string, o: unknown, c: Callback) => void)(hostname, options, callback);
    // A family asked for (net.connect's `family: 6`) gets only that family's address.
    const fam = typeof options === 'object' && options !== null ? (options as { family?: unknown }).family : undefined;
    const list = LOCALHOST_ADDRESSES.filter((a) => (fam !== 4 && fam !== 6) || a.family === fam);
    if (wantsAll(options)) callback(null, list.map((a) => ({ address: a.address, family: a.family })));
    else callback(null, list[0]!.address, list[0]!.family);
  };
  return local as unknown as LookupFunction;
}

function namesLookup(opts: DnsOptions): LookupFunction {
  if (!opts.servers || opts.servers.length === 0) return systemLookup as LookupFunction;
  const resolver = new Resolver({ timeout: opts.timeoutMs, tries: opts.tries });
  resolver.setServers([...opts.servers]);
  const lookup = (hostname: string, options: unknown, callback: Callback): void => {
    const all = wantsAll(options);
    const family = isIP(hostname);
    if (family) {
      if (all) callback(null, [{ address: hostname, family }]);
      else callback(null, hostname, family);
      return;
    }
    resolver.resolve4(hostname, (err, addresses) => {
      if (err) return callback(err, all ? [] : '', 4);
      if (all) callback(null, addresses.map((address) => ({ address, family: 4 })));
      else callback(null, addresses[0]!, 4);
    });
  };
  return lookup as unknown as LookupFunction;
}

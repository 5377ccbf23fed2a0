import { Resolver, lookup as systemLookup, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';

export interface DnsOptions {
  /** Servers as "ip" or "ip:port"; none means the system resolver (getaddrinfo). */
  servers?: readonly string[];
  timeoutMs: number;
  tries: number;
}

/**
 * A `lookup` for net/tls connects. With servers configured it asks them directly
 * (c-ares), so tests and operators can point the gateway at their own DNS.
 */
export function makeLookup(opts: DnsOptions): LookupFunction {
  if (!opts.servers || opts.servers.length === 0) return systemLookup as LookupFunction;
  const resolver = new Resolver({ timeout: opts.timeoutMs, tries: opts.tries });
  resolver.setServers([...opts.servers]);
  const lookup = (hostname: string, options: unknown, callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void): void => {
    const all = typeof options === 'object' && options !== null && (options as { all?: boolean }).all === true;
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

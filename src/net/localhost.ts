/**
 * RFC 6761 §6.3: `localhost` and every name under `.localhost` are loopback, and a resolver
 * answers them itself without asking DNS (browsers and curl do; a DNS server may answer
 * NXDOMAIN, or an address that is not this host's). Any case, and the trailing dot of an
 * absolute name, are the same name.
 */

/** The loopback addresses such a name resolves to, IPv4 first (the address most servers listen on). */
export const LOCALHOST_ADDRESSES: ReadonlyArray<{ readonly address: string; readonly family: 4 | 6 }> = Object.freeze([
  Object.freeze({ address: '127.0.0.1', family: 4 as const }),
  Object.freeze({ address: '::1', family: 6 as const }),
]);

/** True for `localhost` and names under it, in any case, with or without one trailing dot. */
export function isLocalhostName(host: string): boolean {
  let end = host.length;
  if (end > 0 && host.charCodeAt(end - 1) === 0x2e) end--;
  if (end < 9) return false;
  // 'localhost' is the last label: the whole name, or after a dot.
  if (host.slice(end - 9, end).toLowerCase() !== 'localhost') return false;
  return end === 9 || (end > 10 && host.charCodeAt(end - 10) === 0x2e);
}

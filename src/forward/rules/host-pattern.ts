import { literalAddress } from '../../egress/index.js';
import { canonicalAddress } from './ip-address.js';

/**
 * Host name patterns: `example.com` (exactly), `*.example.com` (any subdomain, any depth,
 * not the apex), `*` (anything). Case-insensitive; a trailing dot is ignored. A pattern that
 * is an IP address (`127.0.0.2`, `::1`) matches that address in every spelling a resolver
 * reads as it: the inet_aton forms (`2130706434`, `0x7f000002`, `127.2`), IPv4-mapped IPv6
 * (`::ffff:7f00:2`), uncompressed IPv6 (adversarial review, session 35: a SOCKS5 or SOCKS4a
 * client naming `2130706434`, or any client naming `[::ffff:127.0.0.2]`, passed a deny rule
 * `hosts: ["127.0.0.2"]` and reached the address).
 */

/** The canonical address a host names when it is an IP literal in any spelling, else undefined. */
function addressOf(host: string): string | undefined {
  const lit = literalAddress(normalizeHostName(host));
  return lit === undefined ? undefined : canonicalAddress(lit.address)?.address;
}

export function normalizeHostName(host: string): string {
  let h = host.toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  while (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

export function isValidHostPattern(p: string): boolean {
  if (p === '*') return true;
  const body = p.startsWith('*.') ? p.slice(2) : p;
  return body.length > 0 && body.length <= 253 && /^[A-Za-z0-9_:.\-]+\.?$/.test(body) && !body.includes('*');
}

export class HostPattern {
  readonly #exact: string | undefined;
  readonly #suffix: string | undefined;
  readonly #any: boolean;
  /** The canonical address, when the pattern is an IP address. */
  readonly #address: string | undefined;
  readonly source: string;

  constructor(pattern: string) {
    if (!isValidHostPattern(pattern)) throw new TypeError(`not a host pattern: ${JSON.stringify(pattern)}`);
    this.source = pattern;
    this.#any = pattern === '*';
    if (pattern.startsWith('*.')) this.#suffix = '.' + normalizeHostName(pattern.slice(2));
    else if (!this.#any) this.#exact = normalizeHostName(pattern);
    this.#address = this.#exact !== undefined ? addressOf(this.#exact) : undefined;
  }

  matches(host: string): boolean {
    if (this.#any) return true;
    const h = normalizeHostName(host);
    if (this.#address !== undefined) return h === this.#exact || addressOf(h) === this.#address;
    if (this.#exact !== undefined) return h === this.#exact;
    return h.length > this.#suffix!.length && h.endsWith(this.#suffix!);
  }
}

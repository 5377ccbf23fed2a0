import { literalAddress } from './resolver.js';
import { canonicalAddress } from '../net/ip-canonical.js';

/**
 * Host name patterns: `example.com` (exactly), `*.example.com` (any subdomain, any depth,
 * not the apex), `*` (anything). Case-insensitive; a trailing dot is ignored. A pattern that
 * is an IP address (`127.0.0.2`, `::1`) matches that address in every spelling a resolver
 * reads as it: the inet_aton forms (`2130706434`, `0x7f000002`, `127.2`), IPv4-mapped IPv6
 * (`::ffff:7f00:2`), uncompressed IPv6. One matcher for the destination rules
 * (forward/rules) and the egress routing rules (egress-router.ts) (adversarial review, session 35: a SOCKS5 or SOCKS4a
 * client naming `2130706434`, or any client naming `[::ffff:127.0.0.2]`, passed a deny rule
 * `hosts: ["127.0.0.2"]` and reached the address).
 */

/**
 * The canonical address a normalised host names when it is an IP literal in any spelling, else
 * undefined. The last host's answer is kept: one connection's checks ask it of every IP pattern,
 * in the destination rules' name stage, their address stage and the egress routing rules, with
 * one host string, and reading an IPv6 literal costs microseconds (review of session 35: with
 * IP patterns, an IPv6 destination went from ~0.1 to ~7 µs per pattern per check, measured on
 * the loaded machine; a repeated host is now one string comparison).
 */
let lastHost: string | undefined;
let lastAddress: string | undefined;
function addressOf(h: string): string | undefined {
  if (h === lastHost) return lastAddress;
  const lit = literalAddress(h);
  lastAddress = lit === undefined ? undefined : canonicalAddress(lit.address)?.address;
  lastHost = h;
  return lastAddress;
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

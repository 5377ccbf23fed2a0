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
 * undefined. Read once per check by the caller (`readHost`), not per pattern: reading an IPv6
 * literal costs microseconds (review of session 35: with IP patterns, an IPv6 destination went
 * from ~0.1 to ~7 µs per pattern per check, measured on the loaded machine). A connection's
 * checks (the rules' name stage, their address stage, the routing rules) read it once each,
 * and only where an IP pattern is configured (`hostNeed`); a module-level memo of the last
 * host made that one read per connection, at the price of state shared by every caller.
 */
function hostAddress(name: string): string | undefined {
  const lit = literalAddress(name);
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

/**
 * A host as the patterns read it, made once per check by their caller (`readHost`): its
 * normalised name and, when some pattern is an IP address, its canonical address (undefined:
 * not an IP literal). Passed to every pattern of the check, so no pattern reads the host again
 * and no state is kept between checks.
 */
export interface CheckedHost {
  readonly name: string;
  readonly address: string | undefined;
}

/** What a caller's patterns need read of a host at each check: nothing (it has none), its name, or its address too (an IP pattern). */
export type HostNeed = 'nothing' | 'name' | 'address';

const NO_HOST: CheckedHost = { name: '', address: undefined };

/** The host as `need` asks (see `hostNeed`), for every pattern of one check. */
export function readHost(host: string, need: HostNeed): CheckedHost {
  if (need === 'nothing') return NO_HOST;
  const name = normalizeHostName(host);
  return { name, address: need === 'address' ? hostAddress(name) : undefined };
}

/** What a caller's pattern lists need read of a host, worked out once when the caller is built. */
export function hostNeed(lists: Iterable<HostPatterns | undefined>): HostNeed {
  let need: HostNeed = 'nothing';
  for (const l of lists) {
    if (l === undefined) continue;
    if (l.hasAddress) return 'address';
    need = 'name';
  }
  return need;
}

export class HostPattern {
  readonly #exact: string | undefined;
  readonly #suffix: string | undefined;
  readonly #any: boolean;
  /** The canonical address, when the pattern is an IP address. */
  readonly address: string | undefined;
  readonly source: string;

  constructor(pattern: string) {
    if (!isValidHostPattern(pattern)) throw new TypeError(`not a host pattern: ${JSON.stringify(pattern)}`);
    this.source = pattern;
    this.#any = pattern === '*';
    if (pattern.startsWith('*.')) this.#suffix = '.' + normalizeHostName(pattern.slice(2));
    else if (!this.#any) this.#exact = normalizeHostName(pattern);
    this.address = this.#exact !== undefined ? hostAddress(this.#exact) : undefined;
  }

  /** `host` read with its address when this pattern is an IP address (`readHost`, 'address'). */
  matches(host: CheckedHost): boolean {
    if (this.#any) return true;
    const h = host.name;
    if (this.address !== undefined) return h === this.#exact || host.address === this.address;
    if (this.#exact !== undefined) return h === this.#exact;
    return h.length > this.#suffix!.length && h.endsWith(this.#suffix!);
  }
}

/** A rule's host patterns: it matches a host when one of them does. */
export class HostPatterns {
  readonly #list: readonly HostPattern[];
  /** One of them is an IP address: a check reads the host's address (`hostNeed`). */
  readonly hasAddress: boolean;

  constructor(sources: readonly string[]) {
    this.#list = sources.map((s) => new HostPattern(s));
    this.hasAddress = this.#list.some((p) => p.address !== undefined);
  }

  matches(host: CheckedHost): boolean {
    const list = this.#list;
    for (let i = 0; i < list.length; i++) if (list[i]!.matches(host)) return true;
    return false;
  }
}

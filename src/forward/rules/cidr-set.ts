import { BlockList } from 'node:net';
import { canonicalAddress } from '../../net/ip-canonical.js';

/** Parse `addr/len` or a bare address; undefined when malformed. */
export function parseCidr(cidr: string): { address: string; prefix: number; family: 4 | 6 } | undefined {
  const slash = cidr.indexOf('/');
  const addrPart = slash >= 0 ? cidr.slice(0, slash) : cidr;
  const canon = canonicalAddress(addrPart.trim());
  if (!canon) return undefined;
  const max = canon.family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = cidr.slice(slash + 1).trim();
    if (!/^\d{1,3}$/.test(p)) return undefined;
    prefix = Number(p);
    // A mapped IPv6 range written as ::ffff:a.b.c.d/len is an IPv4 range of len - 96.
    if (canon.family === 4 && addrPart.includes(':')) prefix -= 96;
    if (prefix < 0 || prefix > max) return undefined;
  }
  return { address: canon.address, prefix, family: canon.family };
}

/** A set of CIDR ranges, matched against canonical addresses. */
export class CidrSet {
  readonly #list = new BlockList();
  readonly #ranges: string[] = [];

  constructor(cidrs: Iterable<string> = []) {
    for (const c of cidrs) this.add(c);
  }

  add(cidr: string): void {
    const p = parseCidr(cidr);
    if (!p) throw new TypeError(`not a CIDR range or IP address: ${JSON.stringify(cidr)}`);
    this.#list.addSubnet(p.address, p.prefix, p.family === 4 ? 'ipv4' : 'ipv6');
    this.#ranges.push(`${p.address}/${p.prefix}`);
  }

  get size(): number {
    return this.#ranges.length;
  }

  /** True when the address (any spelling, mapped forms included) is in one of the ranges. */
  has(address: string): boolean {
    const c = canonicalAddress(address);
    if (!c) return false;
    return this.#list.check(c.address, c.family === 4 ? 'ipv4' : 'ipv6');
  }

  toJSON(): string[] {
    return [...this.#ranges];
  }
}

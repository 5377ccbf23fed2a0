import { BlockList, isIPv4, isIPv6 } from 'node:net';

/** A set of addresses and CIDR blocks (IPv4, IPv6, IPv4-mapped IPv6 folded to IPv4). */
export class AddressSet {
  readonly #list = new BlockList();
  readonly empty: boolean;

  constructor(entries: readonly string[]) {
    for (const e of entries) {
      const [addr, bits] = e.split('/');
      const type = isIPv6(addr!) ? 'ipv6' : 'ipv4';
      if (bits === undefined) this.#list.addAddress(addr!, type);
      else this.#list.addSubnet(addr!, Number(bits), type);
    }
    this.empty = entries.length === 0;
  }

  has(address: string | undefined): boolean {
    if (this.empty || !address) return false;
    if (address.startsWith('::ffff:') && isIPv4(address.slice(7))) return this.#list.check(address.slice(7), 'ipv4');
    return this.#list.check(address, isIPv6(address) ? 'ipv6' : 'ipv4');
  }
}

/** Strip the IPv4-mapped prefix for display and headers. */
export function plainAddress(address: string | undefined): string {
  if (!address) return '';
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

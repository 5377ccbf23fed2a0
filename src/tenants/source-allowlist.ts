import { BlockList, isIP } from 'node:net';

/** One allowlist entry: the user its addresses authenticate as, and its own username parameters. */
export interface AllowlistEntry {
  user: string;
  /** A CIDR or a bare address. */
  cidr: string;
  /** Username parameters (`pool-dc-session-a1`); absent: the listener's. */
  params?: string;
}

interface Compiled {
  readonly list: BlockList;
  readonly family: 'ipv4' | 'ipv6';
  readonly user: string;
  readonly params: string | undefined;
}

/**
 * IP allowlist authentication: the client's source address picks the user, as proxy
 * vendors offer beside passwords. Entries never overlap (the config check refuses two
 * users whose ranges meet, naming both), so the first match is the only one. A linear scan
 * of one `BlockList` per entry: allowlists are short (a customer's few office or server
 * ranges), and a proxy without any has no allowlist object at all (no cost per request).
 */
export class SourceAllowlist {
  readonly #entries: Compiled[];

  constructor(entries: readonly AllowlistEntry[]) {
    this.#entries = entries.map((e) => {
      const [address, p] = e.cidr.split('/') as [string, string | undefined];
      const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
      const list = new BlockList();
      list.addSubnet(address, p === undefined ? (family === 'ipv4' ? 32 : 128) : Number(p), family);
      return { list, family, user: e.user, params: e.params };
    });
  }

  /** An allowlist of these entries, or undefined when there are none (nothing to check). */
  static of(entries: readonly AllowlistEntry[]): SourceAllowlist | undefined {
    return entries.length === 0 ? undefined : new SourceAllowlist(entries);
  }

  get size(): number {
    return this.#entries.length;
  }

  /** The user (and the entry's parameters) a client address authenticates as, if any. */
  match(address: string | undefined): { user: string; params: string | undefined } | undefined {
    if (address === undefined) return undefined;
    // IPv4 clients of a dual-stack listener arrive as ::ffff:a.b.c.d.
    const v4 = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : undefined;
    const family = v4 !== undefined || isIP(address) === 4 ? 'ipv4' : 'ipv6';
    const a = v4 ?? address;
    for (const e of this.#entries) if (e.family === family && e.list.check(a, family)) return { user: e.user, params: e.params };
    return undefined;
  }
}

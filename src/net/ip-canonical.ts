import { isIP } from 'node:net';

/**
 * IP address helpers for destination rules. Every address is put in one canonical form
 * before any rule sees it, so `::ffff:127.0.0.1`, `::ffff:7f00:1` and `127.0.0.1` are
 * judged alike.
 */

export interface CanonicalAddress {
  address: string;
  family: 4 | 6;
}

/** Eight 16-bit groups of an IPv6 address (zone id removed), or undefined. */
export function ipv6Groups(input: string): number[] | undefined {
  let s = input;
  const pct = s.indexOf('%');
  if (pct >= 0) s = s.slice(0, pct);
  if (isIP(s) !== 6) return undefined;
  let tail: number[] = [];
  const lastColon = s.lastIndexOf(':');
  const last = s.slice(lastColon + 1);
  if (last.includes('.')) {
    const q = last.split('.').map(Number);
    tail = [(q[0]! << 8) | q[1]!, (q[2]! << 8) | q[3]!];
    s = s.slice(0, lastColon + 1) + '0:0';
  }
  const halves = s.split('::');
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((h) => parseInt(h, 16)));
  let groups: number[];
  if (halves.length === 2) {
    const head = parse(halves[0]!);
    const rest = parse(halves[1]!);
    groups = [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
  } else {
    groups = parse(s);
  }
  if (groups.length !== 8) return undefined;
  if (tail.length === 2) {
    groups[6] = tail[0]!;
    groups[7] = tail[1]!;
  }
  return groups;
}

/** `::ffff:a.b.c.d` (any spelling) → `a.b.c.d`; undefined when not IPv4-mapped. */
export function unmapIPv4(address: string): string | undefined {
  const g = ipv6Groups(address);
  if (!g) return undefined;
  if (g[0] || g[1] || g[2] || g[3] || g[4] || g[5] !== 0xffff) return undefined;
  return quad(g[6]!, g[7]!);
}

/** The dotted quad of two 16-bit groups. */
function quad(hi: number, lo: number): string {
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
}

/** What `embeddedIPv4s` returns for an address that carries none (shared: no allocation). */
const NONE: readonly string[] = [];

/**
 * The IPv4 addresses an IPv6 one may carry to an IPv4 host on the way: the well-known NAT64
 * prefix 64:ff9b::/96 (RFC 6052), the local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215), 6to4's
 * 2002::/16 (RFC 3056: the relay's address in bits 16–47), SIIT's ::ffff:0:0:0/96 (RFC 2765) and
 * Teredo's 2001::/32 (RFC 4380 §4: the client's address, XORed with 0xffffffff, in bits 96–127).
 * On a host with NAT64, `64:ff9b::a9fe:a9fe` is 169.254.169.254: judged by the IPv4 ranges
 * (adversarial review, session 30: these were allowed with allowPrivate false).
 *
 * Inside the local-use /48 an operator takes a prefix of any length RFC 6052 §2.2 allows that
 * fits in it (/48, /56, /64 or /96), and which one is not written in the address: each layout's
 * reading is a candidate, and a deny judges every one (review of session 37: the /48 layout, the
 * IPv4 bits around the u-octet; probe of session 38: the /56 and /64 ones, and a /96 whose prefix
 * bits 48–95 are not zero, let a denied address through). The u-octet (bits 64–71) and the suffix
 * are not required to be zero: a translator that ignores them still reaches the address. The
 * private ranges hold the whole local-use /48 already.
 *
 * Teredo: the IPv4 host that receives the traffic is the client's (its NAT's mapped address);
 * the server address (bits 32–63) only sees the qualification and an indirect bubble, never the
 * payload, so it is not a candidate (docs/forward-proxy.md).
 *
 * Empty for any other address (and every IPv4 one).
 */
export function embeddedIPv4s(address: string): readonly string[] {
  if (!address.includes(':')) return NONE;
  const g = ipv6Groups(address);
  if (g === undefined) return NONE;
  if (g[0] === 0x64 && g[1] === 0xff9b && !g[2] && !g[3] && !g[4] && !g[5]) return [quad(g[6]!, g[7]!)];
  if (g[0] === 0x64 && g[1] === 0xff9b && g[2] === 1) {
    const g3 = g[3]!;
    const g4 = g[4]!;
    const g5 = g[5]!;
    const g6 = g[6]!;
    const found = new Set<string>([
      quad(g3, ((g4 & 0xff) << 8) | (g5 >> 8)), // /48: bits 48–63, 72–87
      quad(((g3 & 0xff) << 8) | (g4 & 0xff), g5), // /56: bits 56–63, 72–95
      quad(((g4 & 0xff) << 8) | (g5 >> 8), ((g5 & 0xff) << 8) | (g6 >> 8)), // /64: bits 72–103
      quad(g6, g[7]!), // /96: bits 96–127
    ]);
    return [...found];
  }
  if (g[0] === 0x2002) return [quad(g[1]!, g[2]!)];
  if (g[0] === 0x2001 && g[1] === 0) return [quad(g[6]! ^ 0xffff, g[7]! ^ 0xffff)];
  if (!g[0] && !g[1] && !g[2] && !g[3] && g[4] === 0xffff && !g[5]) return [quad(g[6]!, g[7]!)];
  return NONE;
}

/** The canonical form of an IP literal, or undefined when `input` is not one. */
export function canonicalAddress(input: string): CanonicalAddress | undefined {
  let s = input;
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const fam = isIP(s.includes('%') ? s.slice(0, s.indexOf('%')) : s);
  if (fam === 4) return { address: s, family: 4 };
  if (fam !== 6) return undefined;
  const v4 = unmapIPv4(s);
  if (v4) return { address: v4, family: 4 };
  const g = ipv6Groups(s)!;
  return { address: g.map((x) => x.toString(16)).join(':'), family: 6 };
}

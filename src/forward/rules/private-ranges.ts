import { CidrSet } from './cidr-set.js';
import { ipv6Groups } from './ip-address.js';

/**
 * Addresses the forward proxy refuses by default: private networks, loopback, link-local
 * (cloud metadata lives at 169.254.169.254 and fd00:ec2::254), carrier-grade NAT, "this
 * network", multicast and reserved ranges. IPv4-mapped IPv6 spellings of these are
 * caught because addresses are canonicalised before matching.
 */
export const PRIVATE_RANGES: readonly string[] = [
  '0.0.0.0/8', // "this network"; 0.0.0.0 reaches the local host on Linux
  '10.0.0.0/8',
  '100.64.0.0/10', // carrier-grade NAT (also Alibaba metadata 100.100.100.200)
  '127.0.0.0/8',
  '169.254.0.0/16', // link-local, cloud metadata
  '172.16.0.0/12',
  '192.0.0.0/24', // IETF protocol assignments
  '192.168.0.0/16',
  '198.18.0.0/15', // benchmarking
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, broadcast
  '::/128', // unspecified
  '::1/128',
  '::/96', // IPv4-compatible (deprecated)
  '64:ff9b:1::/48', // local-use NAT64
  '100::/64', // discard-only
  '2001:db8::/32', // documentation
  'fc00::/7', // unique local (fd00:ec2::254 metadata)
  'fe80::/10', // link-local
  'fec0::/10', // site-local (deprecated)
  'ff00::/8', // multicast
];

let shared: CidrSet | undefined;

export function privateRanges(): CidrSet {
  return (shared ??= new CidrSet(PRIVATE_RANGES));
}

export function isPrivateAddress(address: string): boolean {
  if (privateRanges().has(address)) return true;
  const v4 = embeddedIPv4(address);
  return v4 !== undefined && privateRanges().has(v4);
}

/**
 * The IPv4 address an IPv6 one carries to an IPv4 host on the way: the well-known NAT64
 * prefix 64:ff9b::/96 (RFC 6052), 6to4's 2002::/16 (RFC 3056: the relay's address in bits
 * 16–47) and SIIT's ::ffff:0:0:0/96 (RFC 2765). On a host with NAT64, `64:ff9b::a9fe:a9fe`
 * is 169.254.169.254: judged by the IPv4 ranges (adversarial review, session 30: these were
 * allowed with allowPrivate false). Undefined for any other address.
 */
export function embeddedIPv4(address: string): string | undefined {
  if (!address.includes(':')) return undefined;
  const g = ipv6Groups(address);
  if (g === undefined) return undefined;
  const quad = (hi: number, lo: number): string => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  if (g[0] === 0x64 && g[1] === 0xff9b && !g[2] && !g[3] && !g[4] && !g[5]) return quad(g[6]!, g[7]!);
  if (g[0] === 0x2002) return quad(g[1]!, g[2]!);
  if (!g[0] && !g[1] && !g[2] && !g[3] && g[4] === 0xffff && !g[5]) return quad(g[6]!, g[7]!);
  return undefined;
}

import { CidrSet } from './cidr-set.js';
import { embeddedIPv4s } from '../../net/ip-canonical.js';

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
  // Every IPv4 address it may carry (NAT64, 6to4, SIIT, Teredo; ip-canonical.ts).
  const carried = embeddedIPv4s(address);
  for (let i = 0; i < carried.length; i++) if (privateRanges().has(carried[i]!)) return true;
  return false;
}

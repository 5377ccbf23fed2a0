export type { Dialer, DialOptions, DialTarget, ResolvedAddress, AddressGuard, UdpDialer, UdpEgress, UdpOpenOptions, UdpSource } from './dialer.js';
export { DirectDialer, type DirectDialerOptions } from './direct-dialer.js';
export { DirectUdpDialer, type DirectUdpDialerOptions } from './direct-udp-dialer.js';
export { systemResolver, dnsServerResolver, resolverFromLookup, resolveHost, literalAddress, unbracket, type Resolver, type LookupFunction } from './resolver.js';

export { startForwardProxy, FINISHED_CHANNEL, type ForwardProxy, type ForwardDeps } from './forward-proxy.js';
export type { ForwardProtocol } from './listener.js';
export { DestinationRules, type RuleSpec, type RuleSetSpec, type GlobalRulesSpec } from './rules/destination-rules.js';
export { PRIVATE_RANGES, isPrivateAddress } from './rules/private-ranges.js';
export { canonicalAddress } from './rules/ip-address.js';
export { SOCKS5_REPLY, SOCKS5_REPLY_FOR, SOCKS4_REPLY, socks5ReplyFor } from './socks/reply-codes.js';
export { forwardSchema, type ForwardConfig, type ForwardConfigInput } from '../config/forward.js';
export { systemResolver, dnsServerResolver, resolverFromLookup, type Resolver, type LookupFunction } from '../egress/index.js';
export type { Meter, MeterSnapshot, FinishedRecord, Counters } from '../tenants/index.js';

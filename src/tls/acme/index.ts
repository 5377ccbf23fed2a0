/**
 * Automatic certificates (ACME, RFC 8555) for the reverse gateway's TLS listeners:
 * `AcmeManager` (one per listener with `tls.acme`: account, orders, renewal, back-off),
 * `AcmeChallenges` (the HTTP-01 tokens the plain listeners answer), `AcmeDiskStorage`
 * (account and certificate files, 0600). Events on `gatewise:tls:acme`. docs/tls.md.
 */
export { ACME_CHALLENGE_PREFIX, AcmeChallenges } from './challenges.js';
export { ACME_CHANNEL, AcmeManager, AcmeOrderError, acmeEvents, backoffWait, type AcmeEvent } from './manager.js';
export { AcmeDiskStorage } from './storage.js';
export { registerDnsProvider, ExecDnsProvider, DnsProviderError, type DnsProvider, type DnsProviderFactory } from './dns.js';

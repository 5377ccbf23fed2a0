/**
 * TLS at the front: certificates by server name with reload (certificate-store.ts), client
 * TLS failures named for the record (client-failure.ts), and what hooks see of a
 * connection's TLS (identity.ts). Used by the reverse gateway's and the forward proxy's
 * listeners.
 */
export { CERTIFICATE_CHANNEL, CertificateStore, UNKNOWN_SERVER_NAME, certificateEvents, servernameOf, type CertificateEvent, type CertificateInfo } from './certificate-store.js';
export { checkClientCertificate, classifyClientTlsError, namelessClient, type ClientTlsFailure } from './client-failure.js';
export { tlsInfoOf, type ClientCertificate, type TlsInfo } from './identity.js';
export { OCSP_CHANNEL, OcspStapler, checkResponse, ocspUrlOf, type OcspEvent } from './ocsp.js';
export { ACME_CHANNEL, AcmeChallenges, AcmeManager, DnsProviderError, ExecDnsProvider, registerDnsProvider, type AcmeEvent, type DnsProvider, type DnsProviderFactory } from './acme/index.js';

import { z } from 'zod';
import { durationString } from './duration-schema.js';
import { redisUrl } from './redis-url.js';
import { parseDuration } from './duration.js';

/**
 * TLS on a listener (reverse gateway listeners and forward proxy listeners share it).
 * The defaults follow Mozilla's "intermediate" profile: TLS 1.2 and 1.3, AEAD ciphers
 * with forward secrecy only.
 */

/** TLS 1.3 suites (always offered when TLS 1.3 is allowed) and the TLS 1.2 AEAD + ECDHE suites. */
export const DEFAULT_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

const hostName = z
  .string()
  .regex(/^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/, 'a lower-case host name, or *.example.com for one level of subdomains')
  .describe('A host name (exact) or *.example.com (any one label in front).');

export const certificateSchema = z.strictObject({
  cert: z.string().min(1).describe('Path to the PEM certificate chain (leaf first).'),
  key: z.string().min(1).describe('Path to the PEM private key of the leaf.'),
  hosts: z
    .array(hostName)
    .min(1)
    .optional()
    .describe('Server names (SNI) this certificate answers for. Default: the DNS names of its subjectAltName (its CN when it has none).'),
});

export const listenerTlsSchema = z
  .strictObject({
    certificates: z
      .array(certificateSchema)
      .min(1, 'a TLS listener needs at least one certificate')
      .describe('Certificates, chosen by the server name the client sends (SNI); the first is also the default for a client that sends no name or an unknown one (unless strictSni). Files are watched and reloaded when they change; connections already open keep their certificate.'),
    strictSni: z
      .boolean()
      .default(false)
      .describe('Refuse the handshake of a client whose server name (SNI) no certificate lists, or that sends none, instead of answering with the first certificate. Logged as tls_protocol_error, reason unknown_server_name. Default false.'),
    ocspStapling: z
      .boolean()
      .default(true)
      .describe('Staple the OCSP status of each certificate to handshakes of clients that ask for it (RFC 6066 §8): fetched from the responder the certificate names (its file must hold the issuer after the leaf), checked (signature, status good, current), refreshed half-way through its validity; a revoked status is never stapled and is logged. Certificates without a responder are served without. Default true.'),
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2').describe('Oldest TLS version accepted. Default TLSv1.2.'),
    ciphers: z
      .string()
      .min(1)
      .default(DEFAULT_CIPHERS)
      .describe('OpenSSL cipher list (TLS 1.3 suite names included); checked when the listener starts. Default: AEAD ciphers with forward secrecy (Mozilla intermediate).'),
    clientAuth: z
      .strictObject({
        ca: z.string().min(1).describe('Path to a PEM file of the CA certificates client certificates must chain to.'),
        mode: z
          .enum(['require', 'optional'])
          .default('require')
          .describe('require: a connection without a valid client certificate is closed after the handshake; optional: a client may send none, but one it sends must be valid. Default require.'),
      })
      .optional()
      .describe('Client certificates (mutual TLS). The verified identity is given to hooks (HookRequest.tls). Expired, untrusted or absent (when required) certificates close the connection and are logged as tls_certificate_error. Off unless set.'),
    hsts: z
      .strictObject({
        maxAge: z.number().int().min(0).default(31_536_000).describe('max-age in seconds. Default 31536000 (one year).'),
        includeSubDomains: z.boolean().default(false).describe('Add includeSubDomains. Default false.'),
        preload: z.boolean().default(false).describe('Add preload. Default false.'),
      })
      .optional()
      .describe('Send Strict-Transport-Security on every response of this listener (proxied ones that have none, and the gateway\'s own). Off unless set.'),
  })
  .describe('Serve HTTPS on this listener. Off unless set.');

const positiveDuration = (def: string, what: string) =>
  durationString()
    .refine((v) => (parseDuration(v) ?? 0) > 0, { message: 'expected a duration above zero such as "30s", "5m" or "1h"' })
    .default(def)
    .describe(what);

/** Automatic certificates (ACME, RFC 8555) for a reverse TLS listener: src/tls/acme/. */
export const acmeSchema = z
  .strictObject({
    directory: z
      .string()
      .url('expected the https:// URL of an ACME directory, e.g. https://acme-v02.api.letsencrypt.org/directory')
      .refine((v) => v.startsWith('https://'), { message: 'an ACME directory is served over https://' })
      .describe('The ACME directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory (Let\'s Encrypt), https://acme-staging-v02.api.letsencrypt.org/directory (its staging).'),
    email: z.string().email('expected an e-mail address for the ACME account contact').optional().describe('Contact e-mail of the ACME account (expiry notices). Optional.'),
    acceptTerms: z
      .literal(true, { message: 'set acceptTerms: true to agree to the ACME server\'s terms of service (certificates cannot be ordered without it)' })
      .describe('You agree to the ACME server\'s terms of service. Required (true).'),
    hosts: z
      .array(z.string().regex(/^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/, 'a lower-case host name, or *.name for a wildcard (dns-01 only)'))
      .min(1)
      .optional()
      .describe('Host names of the certificate (one certificate names them all; the first names its files). Default: the exact host names of the routes (match.host). A wildcard (*.example.com) needs challenges with dns-01: only DNS-01 can validate it.'),
    storage: z.string().min(1).describe('Folder for the account key, the account URL and the certificates with their keys (files 0600, created when missing). Kept across restarts: a restart reuses the account and a certificate that is not due.'),
    renewBefore: z
      .number()
      .positive('renewBefore is a number of days above zero')
      .default(30)
      .describe('Renew when the certificate expires within this many days (fractions allowed). Default 30.'),
    challenges: z
      .array(z.enum(['http-01', 'tls-alpn-01', 'dns-01'], { message: 'expected http-01, tls-alpn-01 or dns-01' }))
      .min(1)
      .refine((a) => new Set(a).size === a.length, { message: 'each challenge type once' })
      .default(['http-01'])
      .describe('Challenge types, in order of preference (the first the ACME server offers is used). http-01: answered by the gateway itself on its plain HTTP listeners (port 80 for a public CA), before routing and before a redirect to HTTPS. tls-alpn-01 (RFC 8737): answered on this TLS listener itself (port 443 for a public CA): a validation\'s handshake (ALPN acme-tls/1) gets the challenge certificate, other connections are not touched; no plain listener is needed. dns-01: a TXT record _acme-challenge.<name> put in the zone by the dns provider (needs dns); the only type that validates a wildcard. Default [http-01].'),
    dns: z
      .strictObject({
        provider: z.string().min(1).default('exec').describe('Who puts the TXT record in the zone: exec (built in: runs command), or the name of a provider registered with registerDnsProvider (library API). Default exec.'),
        command: z
          .array(z.string().min(1))
          .min(1)
          .optional()
          .describe('exec provider: the program and its first arguments (no shell); the action (present or cleanup), the record name (_acme-challenge.<name>., with its final dot) and the value are appended, as lego\'s exec provider. Exit status 0 is success.'),
        timeout: positiveDuration('60s', 'exec provider: longest run of the command; then the challenge fails. Default 60s.'),
        options: z.record(z.string(), z.unknown()).optional().describe('A registered provider\'s own settings, passed to its factory as they are. Optional.'),
        propagation: z
          .strictObject({
            resolvers: z
              .array(z.string().regex(/^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):\d{1,5}$/, 'an IP address and port, e.g. 192.0.2.53:53 or [2001:db8::53]:53'))
              .min(1)
              .describe('DNS servers asked for the record (IP:port), e.g. the zone\'s authoritative servers.'),
            timeout: positiveDuration('120s', 'Longest wait for the record to be seen; then the challenge fails. Default 120s.'),
            interval: positiveDuration('2s', 'Time between two looks. Default 2s.'),
          })
          .optional()
          .describe('Before the CA is told, wait until every resolver answers the TXT record with the challenge value. Off unless set (the CA is told once the provider returns).'),
      })
      .optional()
      .describe('DNS-01 challenges (challenges: [dns-01]): the provider that writes the TXT records. Required with dns-01.'),
    redis: z
      .strictObject({
        url: redisUrl('Where the fleet\'s Redis is: redis://[user:password@]host:port[/db], or rediss:// for TLS (the same as forward.state.redis.url, if the fleet shares one).'),
        keyPrefix: z.string().min(1).max(64).default('gatewise:').describe('Put before every key and channel, so several fleets can share one Redis. Default gatewise:.'),
        connectTimeout: positiveDuration('2s', 'Give up one connection attempt after this long (a failed order step is retried with the back-off). Default 2s.'),
      })
      .optional()
      .describe('Share the certificate, its key, the ACME account and the challenges being validated with every node naming the same Redis: one node orders at a time (a lock in Redis that expires after 10 minutes, so a node that dies frees it), the others install its certificate when it is stored and pick up its renewals; a validation that reaches any node is answered. Each node still keeps its copy in storage. Off unless set. docs/tls.md.'),
    directoryCa: z
      .string()
      .min(1)
      .optional()
      .describe('PEM file of CA certificates trusted for the directory\'s own HTTPS, in addition to the system roots: for a test directory such as Pebble. Optional.'),
    backoff: z
      .strictObject({
        initial: positiveDuration('1m', 'Wait after the first failed order before the next try; doubled after each failure. Default 1m.'),
        max: positiveDuration('6h', 'Longest wait between tries. Default 6h.'),
      })
      .default({ initial: '1m', max: '6h' })
      .describe('Retries after a failed order (directory down, challenge failed): exponential back-off. The certificate in use keeps serving.'),
  })
  .superRefine((v, ctx) => {
    const wildcard = v.hosts?.find((h) => h.startsWith('*.'));
    if (wildcard !== undefined && !v.challenges.includes('dns-01')) {
      ctx.addIssue({ code: 'custom', path: ['hosts'], message: `${wildcard} is a wildcard: only DNS-01 validates it (add dns-01 to challenges, with dns)` });
    }
    if (v.challenges.includes('dns-01')) {
      if (v.dns === undefined) ctx.addIssue({ code: 'custom', path: ['dns'], message: 'dns-01 needs dns: the provider that writes the TXT records (provider: exec with command, or a registered provider)' });
      else if (v.dns.provider === 'exec' && v.dns.command === undefined) ctx.addIssue({ code: 'custom', path: ['dns', 'command'], message: 'the exec DNS provider needs command: the program run as <command> present|cleanup <name> <value>' });
    }
  })
  .describe('Obtain and renew this listener\'s certificate automatically from an ACME server (Let\'s Encrypt and the like), answering HTTP-01 challenges itself. Off unless set. docs/tls.md.');

/** A reverse listener's TLS: the shared settings, plus ACME (certificates may then be empty). */
export const reverseListenerTlsSchema = listenerTlsSchema.extend({
  certificates: z
    .array(certificateSchema)
    .default([])
    .describe('Certificates, chosen by the server name the client sends (SNI); the first is also the default for a client that sends no name or an unknown one (unless strictSni). Files are watched and reloaded when they change; connections already open keep their certificate. May be empty when acme is set (the ACME certificate is then the default).'),
  acme: acmeSchema.optional(),
}).describe('Serve HTTPS on this listener: certificates from files, or obtained automatically (acme). Off unless set.');

/**
 * A forward proxy listener's TLS (an HTTPS proxy): the shared settings, plus ACME validated by
 * TLS-ALPN-01 on the proxy's own port (the forward proxy serves no HTTP-01 tokens: it has no
 * origin-form requests to answer them with).
 */
export const forwardListenerTlsSchema = listenerTlsSchema
  .extend({
    certificates: z
      .array(certificateSchema)
      .default([])
      .describe('Certificates, chosen by the server name the client sends (SNI); the first is also the default for a client that sends no name or an unknown one (unless strictSni). Files are watched and reloaded when they change; connections already open keep their certificate. May be empty when acme is set.'),
    acme: acmeSchema
      .optional()
      .describe('Obtain and renew the proxy\'s certificate automatically from an ACME server, validated by TLS-ALPN-01 on this port (challenges: [tls-alpn-01], hosts required: the names clients reach the proxy by). Off unless set. docs/tls.md.'),
  })
  .superRefine((v, ctx) => {
    if (v.certificates.length === 0 && v.acme === undefined) ctx.addIssue({ code: 'custom', path: ['certificates'], message: 'a TLS listener needs at least one certificate, or acme to obtain one' });
    if (v.acme === undefined) return;
    if (v.acme.hosts === undefined) ctx.addIssue({ code: 'custom', path: ['acme', 'hosts'], message: 'acme on a forward proxy listener needs hosts: the names clients reach the proxy by' });
    if (v.acme.challenges.some((c) => c !== 'tls-alpn-01')) ctx.addIssue({ code: 'custom', path: ['acme', 'challenges'], message: 'a forward proxy listener is validated by tls-alpn-01 only (set challenges: [tls-alpn-01]; http-01 tokens are served by reverse listeners)' });
  });

export const redirectSchema = z
  .strictObject({
    port: z.number().int().min(1).max(65535).default(443).describe('The HTTPS port named in the Location (omitted when 443). Default 443.'),
    status: z.union([z.literal(301), z.literal(302), z.literal(307), z.literal(308)]).default(308).describe('Redirect status. Default 308 (keeps the method and body).'),
  })
  .describe('Answer every request on this (plain HTTP) listener with a redirect to the same host and path over HTTPS. Off unless set.');

export const http2Schema = z
  .strictObject({
    maxConcurrentStreams: z.number().int().min(1).max(10_000).default(100).describe('Streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused by the client library or reset with REFUSED_STREAM. Default 100.'),
    maxResets: z
      .number()
      .int()
      .min(1)
      .default(200)
      .describe('Streams one client may reset (RST_STREAM before its answer) within resetWindow before the connection is closed with GOAWAY ENHANCE_YOUR_CALM: the HTTP/2 rapid-reset attack (CVE-2023-44487) is bounded per connection. Logged as http_request_error, reason h2_rapid_reset. Default 200.'),
    resetWindow: durationString()
      .refine((v) => parseDuration(v) !== undefined, { message: 'expected a duration such as "500ms", "2s" or "1m"' })
      .default('10s')
      .describe('The window maxResets counts over (duration). Default 10s.'),
    h2c: z
      .boolean()
      .default(false)
      .describe('On a plain (non-TLS) listener: serve HTTP/2 over cleartext to clients that start with the HTTP/2 connection preface (h2c with prior knowledge, RFC 9113 §3.3; curl --http2-prior-knowledge, gRPC clients on http://). HTTP/1.1 clients on the same listener are served as before: the first bytes of a connection tell which. The HTTP/1.1 Upgrade: h2c dance is not offered. Only on a listener without tls. Default false.'),
  })
  .describe('Serve HTTP/2 on this listener beside HTTP/1.1, through the same pipeline: every gateway-made answer and Proxy-Status the same. On a TLS listener it is negotiated by ALPN (h2); on a plain listener it needs h2c: true (prior knowledge). Off unless set.');

export type Http2Config = z.output<typeof http2Schema>;
export type ListenerTlsConfig = z.output<typeof listenerTlsSchema>;
export type ForwardListenerTlsConfig = z.output<typeof forwardListenerTlsSchema>;
export type ReverseListenerTlsConfig = z.output<typeof reverseListenerTlsSchema>;
export type AcmeConfig = z.output<typeof acmeSchema>;
export type CertificateConfig = z.output<typeof certificateSchema>;
export type RedirectConfig = z.output<typeof redirectSchema>;

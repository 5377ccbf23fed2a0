import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { servernameOf } from './certificate-store.js';

/** A client certificate the listener verified (mutual TLS). */
export interface ClientCertificate {
  /** Subject as `CN=alice, O=Example` (RFC 4514 order as OpenSSL prints it, joined with ", "). */
  readonly subject: string;
  /** The subject's common name, when it has one. */
  readonly commonName: string | undefined;
  /** subjectAltName as OpenSSL prints it (`DNS:a.example, URI:spiffe://…`), when present. */
  readonly subjectAltName: string | undefined;
  readonly issuer: string;
  readonly serialNumber: string;
  /** SHA-256 fingerprint, colon-separated hex. */
  readonly fingerprint256: string;
  readonly validTo: string;
}

/** What hooks see of a connection's TLS (HookRequest.tls). */
export interface TlsInfo {
  /** The server name the client sent (SNI). */
  readonly servername: string | undefined;
  /** TLSv1.2, TLSv1.3. */
  readonly protocol: string | undefined;
  readonly cipher: string | undefined;
  /** The ALPN protocol agreed (h2, http/1.1), when any. */
  readonly alpn: string | undefined;
  /** The verified client certificate, when the listener asks for one and the client sent one. */
  readonly clientCertificate: ClientCertificate | undefined;
}

const kInfo = Symbol('gatewise.tlsInfo');
type InfoSocket = TLSSocket & { [kInfo]?: TlsInfo };

const lines = (s: string): string => s.split('\n').filter(Boolean).join(', ');

/**
 * The TLS facts of a connection, computed the first time a hook asks and kept on the socket
 * (a plain socket: undefined). Nothing is computed for requests no hook looks at.
 */
export function tlsInfoOf(socket: Socket | undefined): TlsInfo | undefined {
  if (socket === undefined || (socket as TLSSocket).encrypted !== true) return undefined;
  const s = socket as InfoSocket;
  const cached = s[kInfo];
  if (cached !== undefined) return cached;
  let clientCertificate: ClientCertificate | undefined;
  if (s.authorized) {
    const x = s.getPeerX509Certificate();
    if (x !== undefined) {
      const subject = lines(x.subject);
      clientCertificate = {
        subject,
        commonName: /(?:^|\n)CN=([^\n]+)/.exec(x.subject)?.[1],
        subjectAltName: x.subjectAltName,
        issuer: lines(x.issuer),
        serialNumber: x.serialNumber,
        fingerprint256: x.fingerprint256,
        validTo: x.validTo,
      };
    }
  }
  const alpn = s.alpnProtocol;
  const info: TlsInfo = {
    servername: servernameOf(s),
    protocol: s.getProtocol() ?? undefined,
    cipher: s.getCipher()?.name,
    alpn: typeof alpn === 'string' ? alpn : undefined,
    clientCertificate,
  };
  s[kInfo] = info;
  return info;
}

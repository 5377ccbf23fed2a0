import type { TLSSocket } from 'node:tls';
import type { ProxyErrorType } from '../failure/index.js';
import { UNKNOWN_SERVER_NAME, servernameOf } from './certificate-store.js';

/**
 * A TLS failure on the client's side of a listener, named for the access log and metrics.
 *
 * RFC 9209 defines its TLS types for the next hop; the gateway uses the same three for the
 * client's side of the connection, with the same meaning seen from the gateway, and a
 * `reason` that says which case it was (the record's `endedBy` is `client` and its phase
 * `tls`, so it is never mistaken for an upstream failure):
 * - `tls_protocol_error`: the handshake could not be completed — no version or cipher in
 *   common (`protocol_version`, `no_shared_cipher`), plain HTTP or other bytes that are not
 *   TLS (`not_tls`), a server name no certificate lists under strictSni
 *   (`unknown_server_name`), too slow (`handshake_timeout`), the client closing in the
 *   middle (`handshake_abandoned`: what most clients do when they reject the gateway's
 *   certificate without an alert), anything else OpenSSL refused (`handshake_failed`);
 * - `tls_alert_received`: the client ended the handshake with an alert, named
 *   `alert_<description>` (`alert_unknown_ca`, `alert_bad_certificate`,
 *   `alert_certificate_expired`…: the client does not trust the gateway's certificate);
 * - `tls_certificate_error`: the client's certificate (mutual TLS) is absent when required
 *   (`client_certificate_required`), expired (`client_certificate_expired`), not yet valid
 *   (`client_certificate_not_yet_valid`), or does not chain to the configured CA
 *   (`client_certificate_untrusted`).
 * No HTTP answer is possible before the handshake: the record has no status.
 */
export interface ClientTlsFailure {
  readonly type: ProxyErrorType;
  readonly reason: string;
  readonly detail: string;
}

const ALERT = /^ERR_SSL_(?:SSLV3|TLSV1|TLSV13)_ALERT_(.+)$/;

const HANDSHAKE_REASONS: Record<string, string> = {
  ERR_SSL_UNSUPPORTED_PROTOCOL: 'protocol_version',
  ERR_SSL_VERSION_TOO_LOW: 'protocol_version',
  ERR_SSL_UNKNOWN_PROTOCOL: 'protocol_version',
  ERR_SSL_NO_SHARED_CIPHER: 'no_shared_cipher',
  ERR_SSL_NO_SUITABLE_SIGNATURE_ALGORITHM: 'no_shared_cipher',
  ERR_SSL_HTTP_REQUEST: 'not_tls',
  ERR_SSL_HTTPS_PROXY_REQUEST: 'not_tls',
  ERR_SSL_WRONG_VERSION_NUMBER: 'not_tls',
  ERR_SSL_PACKET_LENGTH_TOO_LONG: 'not_tls',
  ERR_SSL_RECORD_LENGTH_MISMATCH: 'not_tls',
};

/**
 * `strictSni` and a client that sent no server name: refused once its handshake is done (Node
 * calls the SNI callback only for a name, so it cannot be refused during it). The listeners
 * served such a client the first certificate before session 30, against what strictSni says.
 */
export function namelessClient(socket: TLSSocket, strictSni: boolean | undefined): ClientTlsFailure | undefined {
  if (strictSni !== true || servernameOf(socket) !== undefined) return undefined;
  return { type: 'tls_protocol_error', reason: 'unknown_server_name', detail: 'the client sent no server name (strictSni)' };
}

/** A failed handshake (the server's `tlsClientError`), classified by its error code. */
export function classifyClientTlsError(err: NodeJS.ErrnoException, socket: TLSSocket | undefined): ClientTlsFailure {
  const code = err.code ?? '';
  const name = socket !== undefined ? servernameOf(socket) : undefined;
  const sni = name !== undefined ? ` (server name ${name})` : '';
  if (code === UNKNOWN_SERVER_NAME) {
    const asked = (err as Error & { servername?: string }).servername ?? name ?? '';
    return { type: 'tls_protocol_error', reason: 'unknown_server_name', detail: `no certificate for server name ${asked} (strictSni)` };
  }
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return { type: 'tls_protocol_error', reason: 'handshake_timeout', detail: `the client did not finish the TLS handshake in time${sni}` };
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'ERR_SSL_UNEXPECTED_EOF_WHILE_READING') {
    return { type: 'tls_protocol_error', reason: 'handshake_abandoned', detail: `the client closed the connection during the TLS handshake${sni}` };
  }
  if (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE') {
    return { type: 'tls_certificate_error', reason: 'client_certificate_required', detail: `the client sent no certificate${sni}` };
  }
  const alert = ALERT.exec(code);
  if (alert !== null) {
    const what = alert[1]!.toLowerCase();
    return { type: 'tls_alert_received', reason: `alert_${what}`, detail: `the client ended the TLS handshake with the alert ${what.replace(/_/g, ' ')}${sni}` };
  }
  const reason = HANDSHAKE_REASONS[code] ?? 'handshake_failed';
  return { type: 'tls_protocol_error', reason, detail: `TLS handshake failed: ${code || 'no code'}${sni}` };
}

/**
 * The client certificate of a finished handshake, checked against the listener's
 * `clientAuth` mode: undefined when it may go on, else why it may not.
 */
export function checkClientCertificate(socket: TLSSocket, mode: 'require' | 'optional'): ClientTlsFailure | undefined {
  if (socket.authorized) return undefined;
  const cert = socket.getPeerCertificate();
  const present = cert !== null && cert !== undefined && Object.keys(cert).length > 0;
  if (!present) {
    if (mode === 'optional') return undefined;
    return { type: 'tls_certificate_error', reason: 'client_certificate_required', detail: 'the client sent no certificate, and this listener requires one' };
  }
  const code = String(socket.authorizationError ?? 'UNKNOWN');
  const subject = cert.subject ? Object.entries(cert.subject).map(([k, v]) => `${k}=${String(v)}`).join(', ') : '';
  if (code === 'CERT_HAS_EXPIRED') return { type: 'tls_certificate_error', reason: 'client_certificate_expired', detail: `the client certificate (${subject}) expired ${cert.valid_to}` };
  if (code === 'CERT_NOT_YET_VALID') return { type: 'tls_certificate_error', reason: 'client_certificate_not_yet_valid', detail: `the client certificate (${subject}) is valid from ${cert.valid_from}` };
  return { type: 'tls_certificate_error', reason: 'client_certificate_untrusted', detail: `the client certificate (${subject}) is not trusted (${code})` };
}

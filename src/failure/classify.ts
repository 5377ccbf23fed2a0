import { Failure } from './failure.js';
import { TLS_ALERT_IDS } from './tls-alerts.js';
import type { Phase } from './types.js';

/** What the caller knows about how far the attempt got when the error arrived. */
export interface AttemptProgress {
  /** The request was handed to a connected socket (undici onConnect). */
  connected: boolean;
  /** At least one byte of the response arrived (undici onResponseStarted). */
  responseStarted: boolean;
  /** The response head was complete and has been (or is being) passed on. */
  headersReceived: boolean;
  /** The response body is chunked (a parser error in it is a transfer-coding error). */
  bodyChunked?: boolean;
  /**
   * The TCP connection was open and the TLS handshake under way (a caller that starts TLS on a
   * socket it connected): a close or a timeout then cut the handshake, phase `tls`.
   */
  tlsHandshake?: boolean;
  nextHop?: string;
}

interface ErrLike {
  code?: unknown;
  name?: unknown;
  message?: unknown;
  syscall?: unknown;
  errno?: unknown;
  cause?: unknown;
}

const CERT_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'INVALID_CA',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** c-ares / getaddrinfo codes → DNS rcode names for the `rcode` parameter. */
const DNS_RCODES: Record<string, string> = {
  ENOTFOUND: 'NXDOMAIN',
  ENODATA: 'NOERROR',
  ESERVFAIL: 'SERVFAIL',
  EREFUSED: 'REFUSED',
  EFORMERR: 'FORMERR',
  ENOTIMP: 'NOTIMP',
  ECONNREFUSED: 'REFUSED',
};

/**
 * The upstream ended one HTTP/2 stream without a complete response, by code: RST_STREAM with
 * an error code (Node's ERR_HTTP2_STREAM_ERROR: REFUSED_STREAM, INTERNAL_ERROR,
 * ENHANCE_YOUR_CALM…), or a bare RST_STREAM (CANCEL, NO_ERROR) or END_STREAM before a
 * complete response (undici's InformationalError, UND_ERR_INFO). Node names the RST_STREAM
 * code only in the message, so the classes of reset are not told apart.
 */
const H2_STREAM_ENDED = new Set(['ERR_HTTP2_STREAM_ERROR', 'UND_ERR_INFO']);

/**
 * The connection to the upstream closed or failed under the request: a TCP FIN or RST, an
 * undici client closed or destroyed under it, or an HTTP/2 session that ended (GOAWAY with an
 * error code: ERR_HTTP2_SESSION_ERROR; a stream opened on a session going away:
 * ERR_HTTP2_GOAWAY_SESSION, ERR_HTTP2_INVALID_SESSION; a stream cancelled as its session was
 * destroyed: ERR_HTTP2_STREAM_CANCEL).
 */
const CONNECTION_CLOSED = new Set([
  'ECONNRESET',
  'UND_ERR_SOCKET',
  'EPIPE',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
  'ERR_HTTP2_SESSION_ERROR',
  'ERR_HTTP2_GOAWAY_SESSION',
  'ERR_HTTP2_INVALID_SESSION',
  'ERR_HTTP2_STREAM_CANCEL',
]);

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function isDnsError(e: ErrLike): boolean {
  const syscall = str(e.syscall);
  return syscall === 'getaddrinfo' || syscall.startsWith('query') || str(e.code) === 'EAI_AGAIN';
}

/**
 * Map a low-level error (Node net/tls/dns, undici, llhttp) to a Failure.
 * Decides by error codes and classes, never by message text.
 */
export function classify(err: unknown, progress: AttemptProgress): Failure {
  if (err instanceof Failure) return err;
  const e: ErrLike = (err && typeof err === 'object' ? err : {}) as ErrLike;
  const code = str(e.code);
  const name = str(e.name);
  const nextHop = progress.nextHop;
  const detailOf = (what: string): string => (code ? `${what} (${code})` : what);
  const mk = (
    type: ConstructorParameters<typeof Failure>[0]['type'],
    phase: Phase,
    detail: string,
    retrySafe: boolean,
    params?: Record<string, string | number>,
  ): Failure => new Failure({ type, phase, nextHop, detail, retrySafe, params, cause: err });

  // --- before anything was sent: always safe to retry elsewhere -------------------------------
  if (!progress.connected) {
    if (isDnsError(e)) {
      if (code === 'ETIMEOUT' || code === 'EAI_AGAIN') return mk('dns_timeout', 'dns', detailOf('name resolution timed out'), true);
      const rcode = DNS_RCODES[code];
      return mk('dns_error', 'dns', detailOf('name resolution failed'), true, rcode ? { rcode } : undefined);
    }
    if (code === 'ECONNREFUSED') return mk('connection_refused', 'connect', detailOf('connection refused'), true);
    if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'ETIMEDOUT') {
      return progress.tlsHandshake ? mk('connection_timeout', 'tls', detailOf('TLS handshake timed out'), true) : mk('connection_timeout', 'connect', detailOf('connect timed out'), true);
    }
    if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EADDRNOTAVAIL' || code === 'ENETDOWN' || code === 'EHOSTDOWN') {
      return mk('destination_ip_unroutable', 'connect', detailOf('no route to the upstream address'), true);
    }
    if (CERT_CODES.has(code) || code.startsWith('CERT_') || code.startsWith('ERR_TLS_CERT')) {
      return mk('tls_certificate_error', 'tls', detailOf('upstream certificate not trusted'), true);
    }
    if (code.startsWith('ERR_SSL_TLSV1_ALERT') || code.startsWith('ERR_SSL_SSLV3_ALERT') || code.startsWith('ERR_SSL_TLSV13_ALERT')) {
      const alert = code.replace(/^ERR_SSL_(TLSV1|SSLV3|TLSV13)_ALERT_/, '').toLowerCase();
      const id = TLS_ALERT_IDS[alert];
      return mk('tls_alert_received', 'tls', detailOf('upstream sent a TLS alert'), true, id === undefined ? { 'alert-message': alert } : { 'alert-id': id, 'alert-message': alert });
    }
    if (code.startsWith('ERR_SSL') || code === 'EPROTO' || code.startsWith('ERR_TLS')) {
      return mk('tls_protocol_error', 'tls', detailOf('TLS handshake failed'), true);
    }
    if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') {
      // Closed during the connect / TLS handshake: the request was never written.
      if (progress.tlsHandshake) return mk('connection_terminated', 'tls', detailOf('upstream closed the connection during the TLS handshake'), true);
      return mk('connection_terminated', 'connect', detailOf('upstream closed the connection while connecting'), true);
    }
  }

  // --- client-side problems reported by the upstream client --------------------------------------
  if (code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH') {
    return new Failure({ type: 'http_request_error', phase: 'send', nextHop, detail: 'request body length does not match Content-Length', reason: 'bad_request', cause: err });
  }

  // --- after the request was (being) written ------------------------------------------------
  const afterHeaders = progress.headersReceived;
  if (code === 'UND_ERR_HEADERS_TIMEOUT') return mk('http_response_timeout', 'headers', 'no response headers in time', false);
  // timing/response-timer.ts UpstreamNotReadingError: the head wait ran out with the request body stalled towards the upstream.
  if (code === 'GATEWISE_UPSTREAM_NOT_READING') return mk('connection_write_timeout', 'send', 'the upstream stopped reading the request body', false);
  if (code === 'UND_ERR_BODY_TIMEOUT') return mk('connection_read_timeout', 'body', 'the response body stalled', false);
  if (code === 'UND_ERR_HEADERS_OVERFLOW') return mk('http_response_header_section_size', 'headers', 'response header section over the limit', false);
  if (code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') return mk('http_response_body_size', 'body', 'response body over the limit', false);
  if (code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') {
    return afterHeaders
      ? mk('http_response_incomplete', 'body', 'response body shorter or longer than its Content-Length', false)
      : mk('http_protocol_error', 'headers', 'invalid or conflicting Content-Length in the response', false);
  }
  if (name === 'HTTPParserError' || code.startsWith('HPE_')) {
    if (code === 'HPE_HEADER_OVERFLOW') return mk('http_response_header_section_size', 'headers', 'response header section over the limit', false);
    // undici leaves `code` empty on most parser errors, so the structure decides: a parser
    // error inside a chunked body is a transfer-coding error.
    if (afterHeaders && (progress.bodyChunked || code === 'HPE_INVALID_CHUNK_SIZE' || code === 'HPE_INVALID_TRANSFER_ENCODING' || code === 'HPE_STRICT' || code === 'HPE_CR_EXPECTED' || code === 'HPE_LF_EXPECTED')) {
      return mk('http_response_transfer_coding', 'body', detailOf('broken chunked transfer coding in the response body'), false);
    }
    if (code === 'HPE_INVALID_TRANSFER_ENCODING') return mk('http_response_transfer_coding', 'headers', detailOf('invalid Transfer-Encoding in the response'), false);
    return mk('http_protocol_error', afterHeaders ? 'body' : 'headers', detailOf('the response is not valid HTTP'), false);
  }
  if (H2_STREAM_ENDED.has(code)) {
    // The connection stays up: the upstream ended this one stream (RST_STREAM) instead of answering.
    if (afterHeaders) return mk('http_response_incomplete', 'body', detailOf('upstream reset the HTTP/2 stream before the body was complete'), false);
    if (progress.responseStarted) return mk('http_response_incomplete', 'headers', detailOf('upstream reset the HTTP/2 stream in the middle of the response headers'), false);
    return new Failure({ type: 'connection_terminated', phase: 'headers', nextHop, detail: detailOf('upstream reset the HTTP/2 stream before any response byte'), retrySafe: false, streamOnly: true, cause: err });
  }
  if (CONNECTION_CLOSED.has(code)) {
    if (afterHeaders) return mk('http_response_incomplete', 'body', 'upstream closed the connection before the body was complete', false);
    if (progress.responseStarted) return mk('http_response_incomplete', 'headers', 'upstream closed the connection in the middle of the response headers', false);
    return mk('connection_terminated', 'send', detailOf('upstream closed the connection before any response byte'), false);
  }
  if (code === 'ETIMEDOUT') return mk('connection_read_timeout', afterHeaders ? 'body' : 'headers', detailOf('connection timed out'), false);
  return mk('proxy_internal_error', 'internal', detailOf('unexpected error while proxying'), false);
}

/**
 * An HTTP/2 request the upstream did not process (RFC 9113 §8.7): its stream refused with
 * REFUSED_STREAM, above the last-stream-id of a GOAWAY, or never opened (decided by frame codes
 * and stream ids: pool/h2-streams.ts `h2NotProcessed`). `connection_terminated` like any
 * upstream close before the response, but safe to send again whatever the method
 * (gateway/retry-policy.ts `notProcessed`); `why` says which, and the record keeps it.
 * `streamOnly`: the connection stays up (a refused stream), as failures of one stream are.
 */
export function h2StreamNotProcessed(why: string, streamOnly: boolean, nextHop: string | undefined, cause: unknown): Failure {
  return new Failure({
    type: 'connection_terminated',
    phase: streamOnly ? 'headers' : 'send',
    nextHop,
    detail: `${why}: the request was not processed (RFC 9113 §8.7)`,
    retrySafe: true,
    streamOnly,
    cause,
  });
}

/** An `Expect` other than 100-continue (both faces, every front): the gateway's own 417, not Node's bare one. */
export function expectationFailed(expect: string | undefined): Failure {
  return new Failure({ type: 'http_request_error', phase: 'accept', reason: 'expectation_failed', detail: `Expect: ${String(expect).slice(0, 100)} cannot be met (only 100-continue is)` });
}

/**
 * An HTTP/2 request whose header list is larger than the listener's maxHeaderSize, measured as
 * RFC 9113 §6.5.2 does (name + value + 32 octets per field): the 431 an HTTP/1.1 head of that
 * size gets (gateway/h2.ts, for a client that never acknowledged the SETTINGS that announce it).
 */
export function headerListTooLarge(size: number, max: number): Failure {
  return new Failure({ type: 'http_request_error', phase: 'accept', reason: 'header_fields_too_large', detail: `HTTP/2 request header list of ${size} bytes (name + value + 32 per field) over the listener's maxHeaderSize (${max})` });
}

/**
 * A request head Node's parser (llhttp) rejected, by its error code, or one the framing rules
 * of http/framing.ts refused, by theirs: too large → 431, too slow → 408, anything else
 * malformed → 400. Both faces' HTTP listeners use it.
 */
export function parserRefusal(code: string | undefined): Failure {
  if (code === 'HPE_HEADER_OVERFLOW') {
    return new Failure({ type: 'http_request_error', phase: 'accept', reason: 'header_fields_too_large', detail: 'request header section larger than the listener accepts' });
  }
  if (code === 'HPE_HEADERS_TIMEOUT' || code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return new Failure({ type: 'http_request_error', phase: 'accept', reason: 'request_timeout', detail: 'the request head did not arrive in time' });
  }
  // The framing rules of http/framing.ts (both faces, every front): codes of Gatewise's own, not llhttp's.
  if (code === 'GATEWISE_CONNECT_WITH_CONTENT') {
    return new Failure({ type: 'http_request_error', phase: 'accept', reason: 'bad_request', detail: 'a CONNECT request has no content (RFC 9110 §9.3.6): Content-Length other than 0 or Transfer-Encoding refused' });
  }
  if (code === 'GATEWISE_HTTP10_TRANSFER_ENCODING') {
    return new Failure({ type: 'http_request_error', phase: 'accept', reason: 'bad_request', detail: 'Transfer-Encoding in an HTTP/1.0 request: faulty framing (RFC 9112 §6.1)' });
  }
  return new Failure({ type: 'http_request_error', phase: 'accept', reason: 'bad_request', detail: `malformed request (${code || 'parse error'})` });
}

/**
 * A request whose connection the gateway closed itself before its answer was complete, by the
 * stable code of why (gateway/h2.ts notes it on an HTTP/2 session, ./connections-cut.ts
 * on the context for HTTP/1.1 connections: `GATEWISE_DRAIN_TIMEOUT`), in
 * the phase the request had reached: the drain timeout at shutdown (the gateway's own doing),
 * the rapid-reset close (a limit on how fast this client may use the gateway), a send timeout
 * (a client that took nothing, as `Exchange.clientNotReading`), or a connection error nghttp2
 * found in the client's frames (`ERR_HTTP2_ERROR`). Anything else is the gateway's own error.
 */
export function connectionClosedByGateway(code: string, phase: Phase, detail: string): Failure {
  switch (code) {
    case 'GATEWISE_H2_RAPID_RESET':
      return new Failure({ type: 'http_request_denied', phase, reason: 'too_many_requests', detail });
    case 'GATEWISE_H2_SEND_TIMEOUT':
    case 'ERR_HTTP2_ERROR':
      return new Failure({ type: 'http_request_error', phase, detail });
    case 'GATEWISE_H2_DRAIN_TIMEOUT':
    case 'GATEWISE_DRAIN_TIMEOUT':
    default:
      return new Failure({ type: 'proxy_internal_error', phase, detail });
  }
}

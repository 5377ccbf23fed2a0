import type { Failure, ProxyErrorType } from '../../failure/index.js';

/** RFC 1928 §6 reply codes. */
export const SOCKS5_REPLY = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  ttlExpired: 0x06,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;

/**
 * The one table from failure type to SOCKS5 reply. Types not listed answer 0x01
 * (general failure). Protocol-level refusals use commandNotSupported (0x07) and
 * addressTypeNotSupported (0x08) directly; they are logged as http_request_error.
 */
export const SOCKS5_REPLY_FOR: Readonly<Partial<Record<ProxyErrorType, number>>> = {
  proxy_internal_error: SOCKS5_REPLY.generalFailure,
  http_protocol_error: SOCKS5_REPLY.generalFailure,
  http_request_error: SOCKS5_REPLY.generalFailure,
  connection_limit_reached: SOCKS5_REPLY.generalFailure,
  proxy_configuration_error: SOCKS5_REPLY.generalFailure,
  destination_ip_prohibited: SOCKS5_REPLY.notAllowed,
  http_request_denied: SOCKS5_REPLY.notAllowed,
  proxy_loop_detected: SOCKS5_REPLY.notAllowed,
  destination_ip_unroutable: SOCKS5_REPLY.networkUnreachable,
  dns_error: SOCKS5_REPLY.hostUnreachable,
  dns_timeout: SOCKS5_REPLY.hostUnreachable,
  connection_timeout: SOCKS5_REPLY.hostUnreachable,
  destination_unavailable: SOCKS5_REPLY.hostUnreachable,
  connection_refused: SOCKS5_REPLY.connectionRefused,
  connection_terminated: SOCKS5_REPLY.connectionRefused,
};

export function socks5ReplyFor(f: Failure): number {
  return SOCKS5_REPLY_FOR[f.type] ?? SOCKS5_REPLY.generalFailure;
}

/** SOCKS4 reply codes (CD field). */
export const SOCKS4_REPLY = {
  granted: 0x5a,
  rejected: 0x5b,
} as const;

/** RFC 1929 sub-negotiation status. */
export const AUTH_STATUS = { success: 0x00, failure: 0x01 } as const;

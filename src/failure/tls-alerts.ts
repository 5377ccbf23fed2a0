/**
 * TLS alert numbers by the name OpenSSL gives them in its error codes
 * (`ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE` → `handshake_failure`): RFC 8446 §6 and RFC 5246
 * §7.2 (with the registry's later entries). RFC 9209 §2.3.11's tls_alert_received carries the
 * number as `alert-id` beside the name as `alert-message`.
 */
export const TLS_ALERT_IDS: Readonly<Record<string, number>> = Object.freeze({
  close_notify: 0,
  unexpected_message: 10,
  bad_record_mac: 20,
  decryption_failed: 21,
  record_overflow: 22,
  decompression_failure: 30,
  handshake_failure: 40,
  no_certificate: 41,
  bad_certificate: 42,
  unsupported_certificate: 43,
  certificate_revoked: 44,
  certificate_expired: 45,
  certificate_unknown: 46,
  illegal_parameter: 47,
  unknown_ca: 48,
  access_denied: 49,
  decode_error: 50,
  decrypt_error: 51,
  export_restriction: 60,
  protocol_version: 70,
  insufficient_security: 71,
  internal_error: 80,
  inappropriate_fallback: 86,
  user_cancelled: 90,
  no_renegotiation: 100,
  missing_extension: 109,
  unsupported_extension: 110,
  certificate_unobtainable: 111,
  unrecognized_name: 112,
  bad_certificate_status_response: 113,
  bad_certificate_hash_value: 114,
  unknown_psk_identity: 115,
  certificate_required: 116,
  no_application_protocol: 120,
});

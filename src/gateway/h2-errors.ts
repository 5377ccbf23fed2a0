/**
 * HTTP/2 error codes in words, and the error the gateway closes an HTTP/2 connection with
 * when it does so itself (./h2.ts): what the records of its streams are classified by.
 */

/** RFC 9113 §7 error codes by number. */
const H2_ERRORS: Record<number, string> = {
  0: 'NO_ERROR',
  1: 'PROTOCOL_ERROR',
  2: 'INTERNAL_ERROR',
  3: 'FLOW_CONTROL_ERROR',
  4: 'SETTINGS_TIMEOUT',
  5: 'STREAM_CLOSED',
  6: 'FRAME_SIZE_ERROR',
  7: 'REFUSED_STREAM',
  8: 'CANCEL',
  9: 'COMPRESSION_ERROR',
  10: 'CONNECT_ERROR',
  11: 'ENHANCE_YOUR_CALM',
  12: 'INADEQUATE_SECURITY',
  13: 'HTTP_1_1_REQUIRED',
};

/** An RFC 9113 error code's name (the number itself when it has none). */
export function h2ErrorName(code: number): string {
  return H2_ERRORS[code] ?? String(code);
}

/**
 * Why the gateway closes an HTTP/2 connection itself, as the error its session is destroyed
 * with: a stable `code` (the classifier reads it: failure/classify.ts
 * `connectionClosedByGateway`) and the words for the records of the streams it cuts.
 */
export class H2ConnectionClosed extends Error {
  readonly code: 'GATEWISE_H2_DRAIN_TIMEOUT' | 'GATEWISE_H2_RAPID_RESET' | 'GATEWISE_H2_SEND_TIMEOUT';

  constructor(code: H2ConnectionClosed['code'], detail: string) {
    super(detail);
    this.name = 'H2ConnectionClosed';
    this.code = code;
  }
}

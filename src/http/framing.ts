/**
 * Request framing that Node's parser (llhttp) and the net front's parser accept but that
 * another HTTP/1.1 hop may frame differently, so a proxy that passed it on could be made to
 * smuggle a request: one rule per case for both faces and every front (the forward proxy's
 * node:http front, the reverse gateway's node:http front, the net front's parser in
 * `request-head.ts`). Each rule returns a stable code (or undefined: the framing is sound);
 * `failure/classify.ts` `parserRefusal` turns the code into its 400 refusal, as it does
 * llhttp's own codes. Each costs a comparison or two on what the parser already gave.
 */

import { Failure } from '../failure/index.js';

/**
 * RFC 9110 §9.3.6: a CONNECT request has no content. A CONNECT with Transfer-Encoding, or with
 * a Content-Length other than 0, asks a hop that honours the field to take the bytes after the
 * head as its body, while a proxy takes them as tunnel data: refused. `Content-Length: 0`
 * frames nothing, so every hop reads the same bytes after the head (and curl and undici send
 * no Content-Length on a CONNECT at all): accepted.
 */
export const CONNECT_WITH_CONTENT = 'GATEWISE_CONNECT_WITH_CONTENT';

/** RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request: the framing is faulty, even with Content-Length; refused, the connection closed. */
export const HTTP10_TRANSFER_ENCODING = 'GATEWISE_HTTP10_TRANSFER_ENCODING';

/** The framing problem of a CONNECT's head (its Content-Length and Transfer-Encoding field values, as the parser gave them), or undefined. */
export function connectFramingProblem(contentLength: string | undefined, transferEncoding: string | undefined): string | undefined {
  if (transferEncoding !== undefined) return CONNECT_WITH_CONTENT;
  if (contentLength !== undefined && !/^0+$/.test(contentLength)) return CONNECT_WITH_CONTENT;
  return undefined;
}

/** The framing problem of a request of `httpVersion` with Transfer-Encoding (`hasTransferEncoding`: the field is present), or undefined. */
export function versionFramingProblem(httpVersion: string, hasTransferEncoding: boolean): string | undefined {
  return hasTransferEncoding && httpVersion === '1.0' ? HTTP10_TRANSFER_ENCODING : undefined;
}

/**
 * The refusal of a request whose Transfer-Encoding (every field's codings, one list) is not
 * chunked alone, or undefined when it is (any case, spaces around it): both faces refuse it
 * before anything is sent on. Codings not ending in chunked leave the body without a length:
 * RFC 9112 §6.3 has the server answer 400 and close (the net front's parser refuses the same
 * head with the same 400). Chunked after codings Gatewise does not implement (`gzip, chunked`)
 * is framed, but not understood: 501 (RFC 9112 §6.1). Passing it on with the chunked framing
 * taken off would hand the next hop coded bytes under no Transfer-Encoding (the forward proxy
 * did, until the SSRF audit of session 41).
 */
export function requestCodingRefusal(codings: string): Failure | undefined {
  if (codings.trim().toLowerCase() === 'chunked') return undefined;
  const list = codings.split(',');
  let last = '';
  for (let i = list.length - 1; i >= 0 && last === ''; i--) last = list[i]!.trim().toLowerCase();
  if (last !== 'chunked') {
    return new Failure({ type: 'http_request_error', phase: 'accept', reason: 'bad_request', detail: `Transfer-Encoding "${codings}" does not end in chunked: the body has no length (RFC 9112 §6.3)` });
  }
  return new Failure({ type: 'http_request_error', phase: 'accept', reason: 'not_implemented', detail: `Transfer-Encoding "${codings}" is not supported (only chunked)` });
}

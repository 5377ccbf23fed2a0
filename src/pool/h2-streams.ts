import { constants, type ClientHttp2Stream } from 'node:http2';

/**
 * Which requests an HTTP/2 upstream did not process (RFC 9113 §8.7), from the frames it sent:
 * a stream it reset with REFUSED_STREAM, or a stream above the last-stream-id of its GOAWAY
 * (or one never opened at all). Such a request may be sent again whatever its method.
 * The pool's HTTP/2 client (h2-client.ts) keeps an `H2StreamWatch` per session, notes each
 * GOAWAY in it, and asks `h2NotProcessed` when a stream fails before any response byte; a
 * request so judged fails with `H2NotProcessedError`. Decided by frame codes and stream ids,
 * never by error messages.
 */

/** What is known of one HTTP/2 session's GOAWAY. */
export class H2StreamWatch {
  /** The last-stream-id of the GOAWAY the upstream sent on this session (-1: none yet). */
  goawayLastStreamId = -1;
  /** The error code of the last GOAWAY (-1: none yet). */
  goawayCode = -1;
}

/** A GOAWAY the session received: its code and the lowest last-stream-id of any (the session's 'goaway' event). */
export function noteGoaway(watch: H2StreamWatch, code: number, lastStreamId: number): void {
  if (watch.goawayLastStreamId < 0 || lastStreamId < watch.goawayLastStreamId) watch.goawayLastStreamId = lastStreamId;
  watch.goawayCode = code;
}

/**
 * A request the HTTP/2 upstream did not process (code `GATEWISE_H2_NOT_PROCESSED`): `why` says
 * which frame tells so; `streamOnly`, the connection stays up (a refused stream) as opposed to a
 * GOAWAY. The gateway's try makes it the `connection_terminated` failure that may be sent again
 * whatever the method (failure/classify.ts `h2StreamNotProcessed`).
 */
export class H2NotProcessedError extends Error {
  readonly code = 'GATEWISE_H2_NOT_PROCESSED';
  readonly why: string;
  readonly streamOnly: boolean;

  constructor(why: string, streamOnly: boolean, cause?: unknown) {
    super(`${why}: the request was not processed`, cause === undefined ? undefined : { cause });
    this.name = 'H2NotProcessedError';
    this.why = why;
    this.streamOnly = streamOnly;
  }
}

/** Why the upstream did not process the request on `stream` (RFC 9113 §8.7), or undefined when it may have. */
export interface H2NotProcessed {
  readonly why: string;
  /** The connection stays up (a refused stream), as opposed to a GOAWAY. */
  readonly streamOnly: boolean;
}

/**
 * Whether the upstream provably did not process the request of `stream`: the stream was never
 * opened (no id: its HEADERS never left), its id is above the last-stream-id of the session's
 * GOAWAY, or the upstream reset it with REFUSED_STREAM. Read when the stream's request failed
 * before any response byte.
 */
export function h2NotProcessed(stream: ClientHttp2Stream, watch: H2StreamWatch): H2NotProcessed | undefined {
  const id = stream.id;
  const last = watch.goawayLastStreamId;
  if (id === undefined) return { why: 'the HTTP/2 stream was never opened', streamOnly: false };
  if (last >= 0 && id > last) return { why: `the upstream's GOAWAY (last-stream-id ${last}) came before stream ${id}`, streamOnly: false };
  // Node gives each stream a GOAWAY ends the GOAWAY's code as its rstCode: after a GOAWAY
  // with code REFUSED_STREAM, a stream it covers may have been processed, and its rstCode
  // does not say whether a RST_STREAM came first (review of session 39; test/pool/h2-streams.test.ts).
  if (stream.rstCode === constants.NGHTTP2_REFUSED_STREAM && !(last >= 0 && watch.goawayCode === constants.NGHTTP2_REFUSED_STREAM)) return { why: `the upstream refused stream ${id} (RST_STREAM REFUSED_STREAM)`, streamOnly: true };
  return undefined;
}

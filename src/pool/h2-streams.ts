import { constants, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';

/**
 * Which requests an HTTP/2 upstream did not process (RFC 9113 §8.7), from the frames it sent:
 * a stream it reset with REFUSED_STREAM, or a stream above the last-stream-id of its GOAWAY
 * (or one never opened at all). Such a request may be sent again whatever its method.
 *
 * undici's HTTP/2 client reports neither: a refused stream's error is Node's
 * ERR_HTTP2_STREAM_ERROR, whatever the RST_STREAM code (named only in its message), and on any
 * GOAWAY it destroys the connection and fails every stream on it with one SocketError
 * (UND_ERR_SOCKET) or the session's ERR_HTTP2_SESSION_ERROR, processed or not. So the pool
 * watches each HTTP/2 session undici opens (`watchH2Session`, at the connection's 'connect'):
 * it notes the GOAWAY's last-stream-id before undici's own listener runs, and hands each
 * stream undici opens to the request it belongs to. undici calls a request's `onConnect`
 * immediately before it opens the request's stream (`writeH2`: onConnect, then
 * `session.request`, in one turn), so the gateway's try names itself as the owner of the next
 * stream there (`H2StreamWatch.next`) and gets its stream back (`H2StreamOwner.h2Stream`).
 * Requests of other dispatchers (revalidation, upgrades) name no owner and are not watched.
 * Decided by frame codes and stream ids, never by error messages.
 */

/** The request that gets the stream undici opens next. */
export interface H2StreamOwner {
  h2Stream: ClientHttp2Stream | undefined;
}

/** What the pool knows of one HTTP/2 session (a connection's, until undici opens another). */
export class H2StreamWatch {
  /** The request whose stream is opened next (set at its onConnect, taken by `session.request`). */
  next: H2StreamOwner | undefined = undefined;
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

/** Where undici keeps a connection's HTTP/2 session on its socket (the symbol is undici's own: found by its description). */
let kSession: symbol | undefined;

function sessionOf(socket: Socket): ClientHttp2Session | undefined {
  if (kSession === undefined) {
    kSession = Object.getOwnPropertySymbols(socket).find((k) => k.description === 'http2Session');
    if (kSession === undefined) return undefined;
  }
  return (socket as unknown as Record<symbol, ClientHttp2Session | undefined>)[kSession];
}

/**
 * Watch the HTTP/2 session undici opened on `socket` (called at the connection's 'connect',
 * once per session): undefined when there is none to watch (then nothing is known of its
 * streams, and their failures are classified as before).
 */
export function watchH2Session(socket: Socket): H2StreamWatch | undefined {
  const session = sessionOf(socket);
  if (session === undefined || typeof session.request !== 'function') return undefined;
  const watch = new H2StreamWatch();
  // Before undici's listener, which fails the streams in the same turn.
  session.prependListener('goaway', (code: number, lastStreamId: number) => noteGoaway(watch, code, lastStreamId));
  const open = session.request;
  session.request = function request(this: ClientHttp2Session, ...args: Parameters<ClientHttp2Session['request']>): ClientHttp2Stream {
    const owner = watch.next;
    watch.next = undefined;
    const stream = open.apply(this, args);
    if (owner !== undefined) owner.h2Stream = stream;
    return stream;
  };
  return watch;
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

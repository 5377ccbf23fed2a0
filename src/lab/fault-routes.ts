import { intParam, LabParamError } from './query.js';
import { rawBytes, takeSocket, writeThenEnd } from './raw.js';
import type { Route } from './route.js';
import { MAX_DELAY_MS } from './valid-routes.js';

/** `/close`: the connection is closed (FIN) before any response byte. */
export const close: Route = ({ req }) => {
  takeSocket(req).destroy();
};

/** `/reset`: the connection is reset (RST) before any response byte. */
export const reset: Route = ({ req, lab }) => {
  lab.sockets.reset(takeSocket(req));
};

/** A route that answers with these exact bytes, whatever the request, then half-closes. */
function answerRaw(text: string): Route {
  const bytes = rawBytes(text);
  return ({ req }) => writeThenEnd(takeSocket(req), bytes);
}

/** `/garbage`: bytes that are not HTTP, then close. */
export const garbage = answerRaw('\x00\xff\xfe gatewise-lab: these bytes are not HTTP \x01\x02\x03\r\n\r\n');

/** `/http09`: a body with no status line (HTTP/0.9 style), then close. */
export const http09 = answerRaw('<html><body>an HTTP/0.9-style answer: a body without any status line</body></html>\n');

const INVALID_HEADER_NUL = rawBytes('HTTP/1.1 200 OK\r\nX-Lab-Bad: before\x00after\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n');
const INVALID_HEADER_CR = rawBytes('HTTP/1.1 200 OK\r\nX-Lab-Bad: before\rafter\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n');

/** `/invalid-header[?byte=nul|cr]`: a status line, then a header value holding a NUL (default) or a bare CR. */
export const invalidHeader: Route = ({ req, query }) => {
  const which = query.get('byte') ?? 'nul';
  if (which !== 'nul' && which !== 'cr') throw new LabParamError('byte', 'query parameter byte must be nul or cr');
  writeThenEnd(takeSocket(req), which === 'nul' ? INVALID_HEADER_NUL : INVALID_HEADER_CR);
};

const FILLER_LINE = 'x'.repeat(1000);

/**
 * `/oversized-headers[?kb=N][&one=1]`: 200 whose header section is about N KiB (default 100),
 * as many 1000-byte headers, or as one huge header with `one=1`.
 */
export const oversizedHeaders: Route = ({ res, query }) => {
  const kb = intParam(query, 'kb', 100, 1, 10_240);
  if (query.get('one') === '1') {
    res.setHeader('x-lab-huge', 'x'.repeat(kb * 1024));
  } else {
    const count = Math.ceil((kb * 1024) / (FILLER_LINE.length + 20));
    for (let i = 0; i < count; i++) res.setHeader(`x-lab-filler-${i}`, FILLER_LINE);
  }
  res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.setHeader('content-length', '3');
  res.writeHead(200);
  res.end('ok\n');
};

/** `/two-content-length`: two different Content-Length values. */
export const twoContentLength = answerRaw('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello!');

/** `/cut-headers`: half a header section, then close. */
export const cutHeaders = answerRaw('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\nX-Lab-Cut: the header section stops he');

const FIRST_100 = 'abcdefghij'.repeat(10);
/** Content-Length 1000 with the first 100 bytes of the body; the server meant to keep the connection. */
const PARTIAL_BODY = rawBytes('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n' + FIRST_100);
/** The same, from a server that announced it would close (clients then see the close as the end of the body). */
const PARTIAL_BODY_ANNOUNCED = rawBytes('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n' + FIRST_100);

/**
 * `/cut-body[?close=1]`: Content-Length 1000, 100 bytes of body, then close (undici: UND_ERR_SOCKET).
 * With `close=1` the head also says `Connection: close` (undici: UND_ERR_RES_CONTENT_LENGTH_MISMATCH).
 */
export const cutBody: Route = ({ req, query }) => {
  writeThenEnd(takeSocket(req), query.get('close') === '1' ? PARTIAL_BODY_ANNOUNCED : PARTIAL_BODY);
};

/** `/bad-chunk`: a valid first chunk, then a chunk with an invalid size, then close. */
export const badChunk = answerRaw(
  'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n' +
    '10\r\nfirst chunk ok.\n\r\n' +
    'zz\r\nthe chunk size above is not hex\r\n0\r\n\r\n',
);

/** `/hang`: reads the request and never answers; the socket stays open until the client or `close()` ends it. */
export const hang: Route = ({ req }) => {
  takeSocket(req);
};

/** `/stall-body`: headers (Content-Length 1000) and 100 bytes of body, then silence on an open socket. */
export const stallBody: Route = ({ req }) => {
  const socket = takeSocket(req);
  if (!socket.destroyed) socket.write(PARTIAL_BODY);
};

const STATUS_LINE = rawBytes('HTTP/1.1 200 OK\r\n');
const REST_OF_HEAD = rawBytes('Content-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n');

/** `/slow-headers?ms=N` (default 1000): the status line, N ms of silence, then the rest of the response. */
export const slowHeaders: Route = ({ req, res, query, lab }) => {
  const ms = intParam(query, 'ms', 1000, 0, MAX_DELAY_MS);
  const socket = takeSocket(req);
  socket.write(STATUS_LINE);
  const timer = lab.timers.after(ms, () => writeThenEnd(socket, REST_OF_HEAD));
  res.once('close', () => lab.timers.clear(timer));
};

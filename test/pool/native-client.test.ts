import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { buildConnector, type Dispatcher } from 'undici';
import { classify } from '../../src/failure/index.js';
import { ConnectionPool, type PoolConnection } from '../../src/pool/index.js';
import { between, seededRun } from '../helpers/seeded.js';
import { splitAt, startPiecewiseUpstream, type PieceAnswer, type PiecewiseUpstream, type PieceRequest } from '../helpers/piecewise-upstream.js';

/**
 * The hand-written HTTP/1.1 client (pool/native-client.ts) over real sockets, driven through
 * the ConnectionPool as the gateway drives it. Families (seeded; a failure prints its seed):
 * response bytes split at random points across TCP writes, bodies 0..1 MiB framed by
 * Content-Length, chunked (random chunk sizes and extensions, trailers) or the connection's
 * close; keep-alive reuse over many requests; Connection: close and Keep-Alive hints; the
 * header limit at and around its bound; backpressure (a handler that stops taking pauses the
 * upstream socket); malformed answers refused with the codes the classifier maps like undici's.
 */

const MAX_HEADER = 4096;

interface Result {
  status: number;
  interim: number[];
  headers: string[];
  /** The final head's fields as the handler got them. */
  raw: unknown[];
  body: Buffer;
  trailers: string[];
  error: (Error & { code?: string }) | undefined;
}

let up: PiecewiseUpstream;
/** The answer for the next request, set by each test (default: a small 200). */
let answerNext: (req: PieceRequest) => PieceAnswer | Promise<PieceAnswer> = () => ({ pieces: ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'] });

before(async () => {
  up = await startPiecewiseUpstream((req) => (req.path === '/probe' ? { pieces: ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nprobe'] } : answerNext(req)));
});
after(async () => {
  await up?.close();
});

function newPool(keepAliveMs = 30_000): ConnectionPool<PoolConnection> {
  return new ConnectionPool<PoolConnection>({
    origin: up.url,
    maxConnections: Infinity,
    keepAliveMs,
    clientOptions: { maxHeaderSize: MAX_HEADER, keepAliveTimeout: keepAliveMs, keepAliveTimeoutThreshold: 1000 },
    connector: buildConnector({ timeout: 5000 }),
    native: true,
  });
}

/** One request through the pool; resolves with what the handler saw. `stall` makes onData return false once. */
function send(pool: ConnectionPool<PoolConnection>, opts: { method?: string; path?: string; headers?: string[]; body?: Dispatcher.DispatchOptions['body']; idempotent?: boolean; onPaused?: (resume: () => void) => void }): Promise<Result> {
  const method = opts.method ?? 'GET';
  const c = pool.acquire(Date.now(), opts.idempotent ?? (method === 'GET' || method === 'HEAD'), false);
  return new Promise((resolve) => {
    const r: Result = { status: 0, interim: [], headers: [], raw: [], body: Buffer.alloc(0), trailers: [], error: undefined };
    const chunks: Buffer[] = [];
    let resume: (() => void) | undefined;
    let stalled = false;
    const done = (ok: boolean): void => {
      r.body = Buffer.concat(chunks);
      pool.release(c, Date.now(), ok);
      resolve(r);
    };
    c.dispatch(
      { path: opts.path ?? '/', method: method as Dispatcher.HttpMethod, headers: opts.headers ?? ['host', 'up.test'], body: opts.body ?? null },
      {
        onConnect() {},
        onHeaders(status: number, raw: Buffer[], res: () => void) {
          if (status < 200) r.interim.push(status);
          else {
            r.status = status;
            r.raw = raw;
            r.headers = raw.map((b) => b.toString('latin1'));
          }
          resume = res;
          return true;
        },
        onData(chunk: Buffer) {
          chunks.push(Buffer.from(chunk));
          if (opts.onPaused !== undefined && !stalled) {
            stalled = true;
            opts.onPaused(() => resume!());
            return false;
          }
          return true;
        },
        onComplete(t: Buffer[] | null) {
          r.trailers = (t ?? []).map((b) => b.toString('latin1'));
          done(true);
        },
        onError(err: Error) {
          r.error = err as Result['error'];
          done(false);
        },
      } as unknown as Dispatcher.DispatchHandler,
    );
  });
}

/** A body of n bytes whose content is checkable. */
function bodyOf(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = 97 + ((i * 7 + seed) % 26);
  return b;
}

function chunked(body: Buffer, rand: () => number, trailers: string): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  while (at < body.length) {
    const n = Math.min(body.length - at, between(rand, 1, rand() < 0.3 ? 70_000 : 700));
    const ext = rand() < 0.3 ? `;ext${between(rand, 0, 9)}=${rand() < 0.5 ? 'v' : '"quoted value"'}` : '';
    const hex = n.toString(16);
    parts.push(Buffer.from(`${rand() < 0.2 ? hex.toUpperCase().padStart(hex.length + 2, '0') : hex}${ext}\r\n`), body.subarray(at, at + n), Buffer.from('\r\n'));
    at += n;
  }
  parts.push(Buffer.from(`0\r\n${trailers}\r\n`));
  return Buffer.concat(parts);
}

/** The connection the last upstream request arrived on. */
const lastConn = (): number => up.requests[up.requests.length - 1]!.conn;

describe('native client: framing and reuse', () => {
  test('seeded: Content-Length, chunked and close-delimited bodies (0..1 MiB) split at random points; reuse exactly when the framing allows', { timeout: 120_000 }, async () => {
    await seededRun('native framing family', async (rand, seed) => {
      const pool = newPool();
      try {
        for (let i = 0; i < 40; i++) {
          const kind = (['length', 'chunked', 'close', 'none-204', 'none-304', 'head'] as const)[between(rand, 0, 5)]!;
          const size = rand() < 0.15 ? between(rand, 100_000, 1024 * 1024) : rand() < 0.2 ? 0 : between(rand, 1, 5000);
          const body = bodyOf(size, seed + i);
          const trailers = kind === 'chunked' && rand() < 0.4 ? 'X-Sum: 1\r\nX-Other: two words\r\n' : '';
          let head = 'HTTP/1.1 200 OK\r\nServer: piecewise\r\n';
          let bytes: Buffer;
          if (kind === 'length') bytes = Buffer.concat([Buffer.from(`${head}Content-Length: ${size}\r\n\r\n`), body]);
          else if (kind === 'chunked') bytes = Buffer.concat([Buffer.from(`${head}Transfer-Encoding: chunked\r\n\r\n`), chunked(body, rand, trailers)]);
          else if (kind === 'close') bytes = Buffer.concat([Buffer.from(`${head}\r\n`), body]);
          else if (kind === 'none-204') bytes = Buffer.from('HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n');
          else if (kind === 'none-304') bytes = Buffer.from(`HTTP/1.1 304 Not Modified\r\nContent-Length: ${size}\r\n\r\n`);
          else bytes = Buffer.from(`${head}Content-Length: ${size}\r\n\r\n`);
          head = '';
          const pieces = splitAt(bytes, between(rand, 0, 12), rand);
          answerNext = () => ({ pieces, close: kind === 'close' });
          const r = await send(pool, { method: kind === 'head' ? 'HEAD' : 'GET', path: `/case/${i}` });
          const what = `case ${i} (${kind}, ${size} bytes, ${pieces.length} pieces)`;
          assert.equal(r.error, undefined, `${what}: ${r.error?.code} ${r.error?.message}`);
          const expectBody = kind === 'length' || kind === 'chunked' || kind === 'close' ? body : Buffer.alloc(0);
          assert.equal(r.body.length, expectBody.length, `${what}: body length`);
          assert.ok(r.body.equals(expectBody), `${what}: body bytes`);
          if (trailers) assert.deepEqual(r.trailers, ['X-Sum', '1', 'X-Other', 'two words'], `${what}: trailers`);
          const caseConn = lastConn();
          const probe = await send(pool, { path: '/probe' });
          assert.equal(probe.body.toString(), 'probe', `${what}: the probe after it`);
          // HEAD (as undici: a broken server may send a body) and close-delimited bodies end their connection.
          const reusable = kind !== 'close' && kind !== 'head';
          assert.equal(lastConn() === caseConn, reusable, `${what}: connection ${reusable ? 'reused' : 'not reused'} by the next request`);
        }
      } finally {
        await pool.destroy();
      }
    });
  });

  test('seeded: header fields are handed on as latin1 strings, names as sent and values without OWS, whatever their count, bytes and split points', { timeout: 60_000 }, async () => {
    const TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const framing = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive']);
    /** A value byte: visible ASCII or obs-text (0x80–0xff), never OWS at its ends. */
    const vchar = (rand: () => number): string => String.fromCharCode(rand() < 0.2 ? between(rand, 0x80, 0xff) : between(rand, 0x21, 0x7e));
    const ows = (rand: () => number): string => [' ', '\t', '  ', ' \t', ''][between(rand, 0, 4)]!;
    await seededRun('native header fields family', async (rand) => {
      const pool = newPool();
      try {
        for (let i = 0; i < 60; i++) {
          const expected: string[] = [];
          let head = `HTTP/1.1 200 OK\r\n`;
          const count = rand() < 0.1 ? 0 : between(rand, 1, rand() < 0.2 ? 60 : 12);
          for (let f = 0; f < count; f++) {
            let name = '';
            for (let n = between(rand, 1, 24); n > 0; n--) name += TOKEN[between(rand, 0, TOKEN.length - 1)];
            if (framing.has(name.toLowerCase())) continue;
            let value = '';
            const len = rand() < 0.15 ? 0 : between(rand, 1, 40);
            for (let k = 0; k < len; k++) value += k > 0 && k < len - 1 && rand() < 0.1 ? (rand() < 0.5 ? ' ' : '\t') : vchar(rand);
            head += `${name}:${value === '' ? ows(rand) : `${ows(rand)}${value}${ows(rand)}`}\r\n`;
            expected.push(name, value);
          }
          // Framing fields among them, in any case, are handed on too.
          const cl = ['Content-Length', 'content-length', 'CONTENT-LENGTH'][between(rand, 0, 2)]!;
          head += `${cl}: 2\r\n`;
          expected.push(cl, '2');
          const bytes = Buffer.from(`${head}\r\nok`, 'latin1');
          const pieces = splitAt(bytes, between(rand, 0, 10), rand);
          answerNext = () => ({ pieces });
          const r = await send(pool, { path: `/fields/${i}` });
          const seen = r.raw;
          const what = `case ${i} (${count} fields, ${pieces.length} pieces)`;
          assert.equal(r.error, undefined, `${what}: ${r.error?.code} ${r.error?.message}`);
          assert.equal(r.body.toString(), 'ok', `${what}: body`);
          assert.ok(seen.every((x) => typeof x === 'string'), `${what}: every field a string`);
          assert.deepEqual(seen, expected, `${what}: the fields`);
        }
      } finally {
        await pool.destroy();
      }
    });
  });

  test('seeded: a request field with a faulty name or value is refused before anything is written (UND_ERR_INVALID_ARG, naming it), wherever it is among valid ones', { timeout: 60_000 }, async () => {
    const TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    // Bytes a name may not have (RFC 9110 §5.1: a token), and a value may not (§5.5: no CTL but HTAB).
    const BAD_NAME = [' ', ':', '\r', '\n', '\0', '"', '(', '@', '\x7f', '\u00e9', '/', '[', '{', ';', '='];
    const BAD_VALUE = ['\r', '\n', '\0', '\x01', '\x1f', '\x7f', '\r\n'];
    await seededRun('native request field family', async (rand) => {
      const pool = newPool();
      try {
        for (let i = 0; i < 50; i++) {
          const headers: string[] = ['host', 'up.test'];
          const count = between(rand, 1, 10);
          const faultAt = rand() < 0.7 ? between(rand, 0, count - 1) : -1;
          const faultKind = rand() < 0.5 ? 'name' : 'value';
          for (let f = 0; f < count; f++) {
            let name = 'x-';
            for (let n = between(rand, 1, 12); n > 0; n--) name += TOKEN[between(rand, 0, TOKEN.length - 1)];
            let value = '';
            for (let n = between(rand, 0, 20); n > 0; n--) value += String.fromCharCode(rand() < 0.1 ? between(rand, 0x80, 0xff) : between(rand, 0x20, 0x7e));
            if (f === faultAt) {
              const bad = faultKind === 'name' ? BAD_NAME[between(rand, 0, BAD_NAME.length - 1)]! : BAD_VALUE[between(rand, 0, BAD_VALUE.length - 1)]!;
              const s = faultKind === 'name' ? name : value;
              const at = between(rand, 0, s.length);
              if (faultKind === 'name') name = s.slice(0, at) + bad + s.slice(at);
              else value = s.slice(0, at) + bad + s.slice(at);
            }
            headers.push(name, value);
          }
          const before = up.requests.length;
          const r = await send(pool, { path: `/req-fields/${i}`, headers });
          const what = `case ${i} (${count} fields, fault ${faultAt < 0 ? 'none' : `${faultKind} of field ${faultAt}`})`;
          if (faultAt < 0) {
            assert.equal(r.error, undefined, `${what}: ${r.error?.message}`);
            const got = up.requests[up.requests.length - 1]!.head;
            for (let k = 2; k < headers.length; k += 2) assert.ok(got.includes(`\r\n${headers[k]}: ${headers[k + 1]}`), `${what}: field ${headers[k]} arrived`);
          } else {
            assert.equal(r.error?.code, 'UND_ERR_INVALID_ARG', `${what}: refused`);
            assert.equal(up.requests.length, before, `${what}: nothing written upstream`);
            const faulty = headers[2 + faultAt * 2]!;
            assert.equal(r.error?.message, faultKind === 'name' ? 'invalid header key' : `invalid ${faulty} header`, `${what}: the error names it`);
          }
        }
      } finally {
        await pool.destroy();
      }
    });
  });

  test('300 requests in a row go on one connection; the request head is written as one piece', { timeout: 60_000 }, async () => {
    const pool = newPool();
    answerNext = () => ({ pieces: ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'] });
    const before = up.requests.length;
    try {
      for (let i = 0; i < 300; i++) {
        const r = await send(pool, { path: `/many/${i}`, headers: ['host', 'up.test', 'x-n', String(i)] });
        assert.equal(r.body.toString(), 'ok');
      }
    } finally {
      await pool.destroy();
    }
    const mine = up.requests.slice(before);
    assert.equal(new Set(mine.map((r) => r.conn)).size, 1, 'connections used');
    assert.match(mine[0]!.head, /^GET \/many\/0 HTTP\/1\.1\r\nhost: up\.test\r\nconnection: keep-alive\r\nx-n: 0$/);
  });

  test('Connection: close and a Keep-Alive timeout=1 hint end the connection; timeout=3 closes it when idle past hint − 1 s', { timeout: 30_000 }, async () => {
    const pool = newPool();
    try {
      for (const field of ['Connection: close', 'Keep-Alive: timeout=1', 'Connection: keep-alive, close']) {
        answerNext = () => ({ pieces: [`HTTP/1.1 200 OK\r\n${field}\r\nContent-Length: 2\r\n\r\nok`] });
        await send(pool, { path: '/ka' });
        const c = lastConn();
        await send(pool, { path: '/probe' });
        assert.notEqual(lastConn(), c, `${field}: reused`);
      }
      answerNext = () => ({ pieces: ['HTTP/1.1 200 OK\r\nKeep-Alive: timeout=3\r\nContent-Length: 2\r\n\r\nok'] });
      await send(pool, { path: '/ka3' });
      const sock = up.sockets[lastConn() - 1]!;
      // The client closes it (pool keep-alive 30 s): the hint's 2 s rule it.
      await Promise.race([once(sock, 'end'), new Promise((_, rej) => setTimeout(() => rej(new Error('the idle connection was not closed within 20 s')), 20_000))]);
    } finally {
      await pool.destroy();
    }
  });

  test('HTTP/1.0 answers: close-delimited unless keep-alive is named', { timeout: 10_000 }, async () => {
    const pool = newPool();
    try {
      answerNext = () => ({ pieces: ['HTTP/1.0 200 OK\r\n\r\nold body'], close: true });
      const r = await send(pool, { path: '/10' });
      assert.equal(r.body.toString(), 'old body');
      answerNext = () => ({ pieces: ['HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nka'] });
      await send(pool, { path: '/10ka' });
      const c = lastConn();
      await send(pool, { path: '/probe' });
      assert.equal(lastConn(), c);
    } finally {
      await pool.destroy();
    }
  });

  test('interim answers: 100/102/103 handed on before the final head (RFC 9110 §15.2, an unasked 100 too); an unasked 101 is refused (as undici)', { timeout: 10_000 }, async () => {
    const pool = newPool();
    try {
      answerNext = () => ({ pieces: ['HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal'] });
      const r = await send(pool, { path: '/hints' });
      assert.deepEqual(r.interim, [103, 102]);
      assert.equal(r.body.toString(), 'final');
      // undici ends the connection on any 100; a client must parse 1xx it did not expect.
      answerNext = () => ({ pieces: ['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'] });
      const c = await send(pool, { path: '/unasked-100' });
      assert.equal(c.error, undefined);
      assert.deepEqual(c.interim, [100, 100]);
      assert.equal(c.body.toString(), 'ok');
      answerNext = () => ({ pieces: ['HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'] });
      const e = await send(pool, { path: '/unasked-101' });
      assert.equal(e.error?.code, 'UND_ERR_SOCKET');
    } finally {
      await pool.destroy();
    }
  });

  test('bytes after a complete answer: the answer stands, the connection is not reused', { timeout: 10_000 }, async () => {
    const pool = newPool();
    try {
      answerNext = () => ({ pieces: ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil'] });
      const r = await send(pool, { path: '/stray' });
      assert.equal(r.error, undefined);
      assert.equal(r.body.toString(), 'ok');
      const c = lastConn();
      const p = await send(pool, { path: '/probe' });
      assert.equal(p.body.toString(), 'probe');
      assert.notEqual(lastConn(), c);
    } finally {
      await pool.destroy();
    }
  });
});

describe('native client: request bodies and backpressure', () => {
  test('seeded: streamed bodies with and without Content-Length, and buffers, arrive whole', { timeout: 60_000 }, async () => {
    await seededRun('native request bodies', async (rand, seed) => {
      const pool = newPool();
      answerNext = (req) => ({ pieces: [`HTTP/1.1 200 OK\r\nContent-Length: ${String(req.body.length).length}\r\n\r\n${req.body.length}`] });
      try {
        for (let i = 0; i < 20; i++) {
          const size = rand() < 0.2 ? 0 : between(rand, 1, rand() < 0.2 ? 600_000 : 3000);
          const body = bodyOf(size, seed + i);
          const withLength = rand() < 0.5;
          const asBuffer = rand() < 0.3;
          const pieces = splitAt(body, between(rand, 0, 6), rand);
          const src = asBuffer ? body : Readable.from(pieces.length > 0 && size > 0 ? pieces : [], { objectMode: false });
          const headers = ['host', 'up.test', ...(withLength || asBuffer ? ['content-length', String(size)] : [])];
          const r = await send(pool, { method: 'POST', path: `/post/${i}`, headers, body: src as Dispatcher.DispatchOptions['body'], idempotent: false });
          const what = `body ${i}: ${size} bytes, ${asBuffer ? 'buffer' : withLength ? 'stream with length' : 'stream, chunked'}`;
          assert.equal(r.error, undefined, `${what}: ${r.error?.message}`);
          assert.equal(r.body.toString(), String(size), what);
          const got = up.requests[up.requests.length - 1]!;
          assert.ok(got.body.equals(body), `${what}: bytes the upstream read`);
          if (!withLength && !asBuffer && size > 0) assert.match(got.head, /\r\ntransfer-encoding: chunked$/, what);
        }
      } finally {
        await pool.destroy();
      }
    });
  });

  test('a handler that stops taking the body pauses the upstream socket; resumed, the body completes', { timeout: 30_000 }, async () => {
    const pool = newPool();
    const size = 16 * 1024 * 1024;
    const big = bodyOf(size, 3);
    answerNext = () => ({ pieces: [Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\n\r\n`), big])] });
    let resumeIt: (() => void) | undefined;
    const pending = send(pool, { path: '/big', onPaused: (r) => (resumeIt = r) });
    try {
      // The upstream's socket must back up: its write buffer holds what the paused client does not read.
      const deadline = Date.now() + 20_000;
      for (;;) {
        const s = up.sockets[up.sockets.length - 1];
        if (resumeIt !== undefined && s !== undefined && s.writableLength > 1024 * 1024) break;
        if (Date.now() > deadline) throw new Error('the upstream socket never backed up while the handler held the body');
        await new Promise((r) => setTimeout(r, 20));
      }
      resumeIt!();
      const r = await pending;
      assert.equal(r.error, undefined);
      assert.equal(r.body.length, size);
      assert.ok(r.body.equals(big));
    } finally {
      await pool.destroy();
    }
  });
});

describe('native client: limits and malformed answers', () => {
  test('seeded: the header section limit at and around its bound (names + values, refused at the limit, as undici)', { timeout: 30_000 }, async () => {
    await seededRun('native header limit', async (rand) => {
      const pool = newPool();
      try {
        for (const delta of [-3, -2, -1, 0, 1, 2]) {
          // Fields: X-Pad (5) + value, plus Content-Length (14) + "2" (1).
          const pad = MAX_HEADER + delta - 5 - 15;
          const bytes = Buffer.from(`HTTP/1.1 200 OK\r\nX-Pad: ${'p'.repeat(pad)}\r\nContent-Length: 2\r\n\r\nok`);
          answerNext = () => ({ pieces: splitAt(bytes, between(rand, 0, 8), rand) });
          const r = await send(pool, { path: `/limit/${delta}` });
          if (delta < 0) assert.equal(r.error, undefined, `sum ${MAX_HEADER + delta}: ${r.error?.code}`);
          else {
            assert.equal(r.error?.code, 'UND_ERR_HEADERS_OVERFLOW', `sum ${MAX_HEADER + delta}`);
            assert.equal(classify(r.error, { connected: true, responseStarted: true, headersReceived: false }).type, 'http_response_header_section_size');
          }
        }
      } finally {
        await pool.destroy();
      }
    });
  });

  const MALFORMED: Array<[string, string, string]> = [
    ['bare LF in the head', 'HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok', 'http_protocol_error'],
    ['space before the colon', 'HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok', 'http_protocol_error'],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 2\r\n\r\nok', 'http_protocol_error'],
    ['NUL in a value', 'HTTP/1.1 200 OK\r\nX-A: b\0c\r\nContent-Length: 2\r\n\r\nok', 'http_protocol_error'],
    ['bare CR in a value', 'HTTP/1.1 200 OK\r\nX-A: b\rc\r\nContent-Length: 2\r\n\r\nok', 'http_protocol_error'],
    ['not HTTP', 'HTTX/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', 'http_protocol_error'],
    ['HTTP/2.0 status line', 'HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok', 'http_protocol_error'],
    ['two-digit status', 'HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok', 'http_protocol_error'],
    ['Content-Length not digits', 'HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok', 'http_protocol_error'],
    ['Content-Length negative', 'HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok', 'http_protocol_error'],
    ['two different Content-Lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok', 'http_protocol_error'],
    ['Content-Length list', 'HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok', 'http_protocol_error'],
    ['Content-Length with Transfer-Encoding', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n', 'http_protocol_error'],
    ['chunked twice', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n', 'http_response_transfer_coding'],
    ['chunk size not hex', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n', 'http_response_transfer_coding'],
    ['chunk size too large', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nok\r\n0\r\n\r\n', 'http_response_transfer_coding'],
    ['chunk data longer than its size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokk\r\n0\r\n\r\n', 'http_response_transfer_coding'],
    ['whitespace after a chunk size with no extension', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nok\r\n0\r\n\r\n', 'http_response_transfer_coding'],
    ['DEL in a value', 'HTTP/1.1 200 OK\r\nX-A: a\x7fb\r\nContent-Length: 2\r\n\r\nok', 'http_protocol_error'],
    ['bare CR ending the status line (rawdiff N2)', 'HTTP/1.1 200 OK\rContent-Length: 2\r\n\r\nok', 'http_protocol_error'],
    ['bare CR in the reason phrase (rawdiff N2)', 'HTTP/1.1 304 Not Mo[ified\r65536Tag: "x"\r\n\r\n', 'http_protocol_error'],
    ['whitespace before a chunk extension (rawdiff N4)', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3 ;a=b\r\nabc\r\n0\r\n\r\n', 'http_response_transfer_coding'],
    ['whitespace after a chunk extension\'s ;', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3; a=b\r\nabc\r\n0\r\n\r\n', 'http_response_transfer_coding'],
    ['whitespace around a chunk extension\'s =', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;a = b\r\nabc\r\n0\r\n\r\n', 'http_response_transfer_coding'],
    ['Content-Length in the trailers (rawdiff N5)', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nContent-Length: 50\r\n\r\n', 'http_response_transfer_coding'],
    ['204 with a Content-Length and a body (rawdiff N6)', 'HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\nbody', 'http_response_incomplete'],
    ['bare LF after a chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nok\r\n0\r\n\r\n', 'http_response_transfer_coding'],
    ['body cut short (Content-Length)', 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort', 'http_response_incomplete'],
    ['head cut short', 'HTTP/1.1 200 OK\r\nContent-Len', 'http_response_incomplete'],
  ];

  test('malformed answers, each split at random points: refused with a typed error the classifier maps like undici', { timeout: 60_000 }, async () => {
    await seededRun('native malformed answers', async (rand) => {
      const pool = newPool();
      try {
        for (const [what, text, type] of MALFORMED) {
          const bytes = Buffer.from(text, 'latin1');
          answerNext = () => ({ pieces: splitAt(bytes, between(rand, 0, 5), rand), close: true });
          const r = await send(pool, { path: '/bad' });
          assert.ok(r.error !== undefined, `${what}: accepted (${r.status}, ${JSON.stringify(r.body.toString())})`);
          const headersReceived = r.status >= 200;
          const chunkedBody = /chunked/.test(text) && headersReceived;
          const f = classify(r.error, { connected: true, responseStarted: true, headersReceived, bodyChunked: chunkedBody });
          assert.equal(f.type, type, `${what}: ${r.error.code} ${r.error.message}`);
          const p = await send(pool, { path: '/probe' });
          assert.equal(p.body.toString(), 'probe', `${what}: the next request`);
        }
      } finally {
        await pool.destroy();
      }
    });
  });

  test('garbage in an unfinished head or chunk-size line fails at once, on a connection the upstream keeps open (rawdiff N1, N1b)', { timeout: 30_000 }, async () => {
    const pool = newPool();
    try {
      for (const text of ['HT^P/1.1 ', 'HTTP/1.0 2\xb49mH6', 'HTTP/1.1 \r00 OK\r\nContent-Length: ', 'HTTP/1.1 200 OK\r\nSet;Cookie: a=b\r\nSet-Coo', 'HTTP/1.t 200 OK\r\n', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ept=1\r\nabc\r\nontent-', 'HT\r', 'HTTP/1.1 200 OK\r\nX-A\r']) {
        // No close: without judging the bytes as they come, this would wait for a response timeout (none here: it would hang).
        answerNext = () => ({ pieces: [Buffer.from(text, 'latin1')] });
        const r = await send(pool, { path: '/garbage' });
        assert.ok(r.error !== undefined, JSON.stringify(text));
        assert.match(String(r.error.code), /^HPE_/, JSON.stringify(text));
      }
    } finally {
      await pool.destroy();
    }
  });

  test('identical repeated Content-Lengths are one length (RFC 9110 §8.6); chunk extensions and upper-case hex are accepted; a last coding other than chunked runs until the close', { timeout: 10_000 }, async () => {
    const pool = newPool();
    try {
      for (const te of ['gzip', 'chunked, gzip', 'Transfer-Encoding-store-value']) {
        answerNext = () => ({ pieces: [`HTTP/1.1 200 OK\r\nTransfer-Encoding: ${te}\r\n\r\n2\r\nok\r\n`], close: true });
        const r = await send(pool, { path: '/te' });
        assert.equal(r.error, undefined, `${te}: ${r.error?.message}`);
        assert.equal(r.body.toString(), '2\r\nok\r\n', te);
      }
      answerNext = () => ({ pieces: ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok'] });
      const dup = await send(pool, { path: '/dup' });
      assert.equal(dup.body.toString(), 'ok');
      assert.deepEqual(dup.headers, ['Content-Length', '2'], 'one Content-Length passed on (rawdiff N3)');
      answerNext = () => ({ pieces: ['\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'] });
      assert.equal((await send(pool, { path: '/leading-crlf' })).body.toString(), 'ok', 'empty lines before the status line are skipped, as llhttp');
      answerNext = () => ({ pieces: ['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\nA;x=1;y="a b\\"c"\r\n0123456789\r\n0;z\r\nT: v\r\n\r\n'] });
      const r = await send(pool, { path: '/ext' });
      assert.equal(r.error, undefined, r.error?.message);
      assert.equal(r.body.toString(), '0123456789');
      assert.deepEqual(r.trailers, ['T', 'v']);
    } finally {
      await pool.destroy();
    }
  });
});

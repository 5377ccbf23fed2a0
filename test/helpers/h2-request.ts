import { connect, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';

export interface H2Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** With `allowReset`: the error code of a stream that ended with an error after its head. */
  reset: string | undefined;
}

export interface H2RequestOptions {
  /** Default GET. */
  method?: string;
  /** More request header fields. */
  headers?: Record<string, string>;
  /** A request body, sent as DATA frames (no content-length unless `headers` has one). */
  body?: string | Buffer;
  /** How the body is decoded; default utf8 (latin1 keeps every byte as one character). */
  encoding?: BufferEncoding;
  /** A stream error after the head resolves the answer so far with `reset` set, instead of rejecting. */
  allowReset?: boolean;
}

/**
 * One request on an open HTTP/2 session, read whole: status, head and body. A stream error
 * rejects (unless `allowReset` and the head had come), so a test never mistakes a cut answer
 * for a whole one.
 */
export function h2request(s: ClientHttp2Session, path: string, o: H2RequestOptions = {}): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const req = s.request({ ':method': o.method ?? 'GET', ':path': path, ...o.headers });
    let head: IncomingHttpHeaders | undefined;
    let body = '';
    req.setEncoding(o.encoding ?? 'utf8');
    req.on('response', (h) => (head = h));
    req.on('data', (c: string) => (body += c));
    req.on('end', () => resolve({ status: Number(head?.[':status']), headers: head ?? {}, body, reset: undefined }));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (head === undefined || o.allowReset !== true) reject(err);
      else resolve({ status: Number(head[':status']), headers: head, body, reset: err.code ?? 'error' });
    });
    req.end(o.body);
  });
}

/** An HTTP/2 client session to `url` whose errors are the test's to see on its streams (optionally with its own initial stream window). */
export function h2session(url: string, initialWindowSize?: number): ClientHttp2Session {
  const s = connect(url, initialWindowSize === undefined ? {} : { settings: { initialWindowSize } });
  s.on('error', () => {});
  return s;
}

/** The response head of a stream, or a rejection naming `ctx` if none comes within 5 s. */
export function responseHead(req: ClientHttp2Stream, ctx: string): Promise<IncomingHttpHeaders> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${ctx}: no response head within 5 s`)), 5000);
    req.once('response', (h) => {
      clearTimeout(t);
      resolve(h);
    });
    req.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { listenOnFreePort } from './listen.js';
import { checkRequestStream, type StreamCheck } from './http1-check.js';

/**
 * A strict recording upstream for smuggling tests, on loopback.
 *
 * Every byte received is recorded per connection (a tap on the real socket, ahead of the
 * parser), and Node's own HTTP server with its default strict parser answers each request it
 * can parse with a response that names it: status 200, `x-seen: <method> <target>`,
 * `x-upstream-conn: <connection id>`, body `req:<n> <method> <target>`. The request body is
 * read to the end before the answer, so bytes are never left to be read as a next request.
 *
 * `check()` runs the independent conservative checker (`checkRequestStream`) over each
 * connection's bytes, so a verdict never rests on Node's parser alone. Anything Node's parser
 * refused is kept in `parserErrors`.
 */
export interface UpstreamConnection {
  id: number;
  remotePort: number | undefined;
  chunks: Buffer[];
  closed: boolean;
}

export interface SeenRequest {
  /** 1-based sequence over the upstream's life. */
  n: number;
  conn: number;
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  bodyBytes: number;
}

export interface ParserError {
  conn: number;
  code: string | undefined;
  message: string;
}

export interface ConnectionCheck extends StreamCheck {
  conn: number;
  bytes: number;
  closed: boolean;
}

export interface StrictUpstream {
  readonly url: string;
  readonly port: number;
  readonly connections: readonly UpstreamConnection[];
  readonly seen: readonly SeenRequest[];
  readonly parserErrors: readonly ParserError[];
  /** Total bytes received on every connection. */
  bytesReceived(): number;
  /** The conservative check of every connection's bytes so far. */
  check(): ConnectionCheck[];
  close(): Promise<void>;
}

/** Make a request-target safe to echo in a header value. */
function headerSafe(s: string): string {
  return s.replace(/[^\x21-\x7e]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

export async function startStrictUpstream(host = '127.0.0.1'): Promise<StrictUpstream> {
  const connections: UpstreamConnection[] = [];
  const seen: SeenRequest[] = [];
  const parserErrors: ParserError[] = [];
  const sockets = new Set<Socket>();
  const connOf = new WeakMap<Socket, UpstreamConnection>();
  let n = 0;

  const server: Server = createServer({ keepAliveTimeout: 30_000, requestTimeout: 0, headersTimeout: 60_000 }, (req: IncomingMessage, res: ServerResponse) => {
    const conn = connOf.get(req.socket)!;
    let bodyBytes = 0;
    req.on('data', (c: Buffer) => {
      bodyBytes += c.length;
    });
    req.on('error', () => {});
    req.once('end', () => {
      const rec: SeenRequest = { n: ++n, conn: conn.id, method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes };
      seen.push(rec);
      const named = `${rec.method} ${headerSafe(rec.url)}`;
      const body = Buffer.from(`req:${rec.n} ${named}\n`, 'latin1');
      res.writeHead(200, { 'x-seen': named, 'x-upstream-conn': String(conn.id), 'content-type': 'text/plain', 'content-length': String(body.length) });
      res.end(body);
    });
  });
  // Registered after the server's own listener: adding a 'data' listener makes Node's parser
  // read through JS events too, so this tap sees every byte before the parser does anything.
  server.on('connection', (socket: Socket) => {
    const conn: UpstreamConnection = { id: connections.length + 1, remotePort: socket.remotePort, chunks: [], closed: false };
    connections.push(conn);
    connOf.set(socket, conn);
    sockets.add(socket);
    socket.on('data', (d: Buffer) => conn.chunks.push(Buffer.from(d)));
    socket.once('close', () => {
      conn.closed = true;
      sockets.delete(socket);
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const conn = connOf.get(socket);
    if (err.code !== 'ECONNRESET') parserErrors.push({ conn: conn?.id ?? 0, code: err.code, message: err.message });
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });

  const { port, url } = await listenOnFreePort(server, host);

  return {
    url,
    port,
    connections,
    seen,
    parserErrors,
    bytesReceived: () => connections.reduce((t, c) => t + c.chunks.reduce((u, b) => u + b.length, 0), 0),
    check: () =>
      connections.map((c) => {
        const bytes = Buffer.concat(c.chunks);
        return { conn: c.id, bytes: bytes.length, closed: c.closed, ...checkRequestStream(bytes) };
      }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { listenOnFreePort } from './listen.js';

/**
 * An upstream on loopback that reports what happens to each request's connection, for
 * backpressure and abort-propagation tests. Every path takes `id=` to name the request.
 *
 * - `/big?n=N[&chunked=1]`: N bytes ('a'..'z' repeating), written in 64 KiB pieces while
 *   `write()` returns true; on false it waits for 'drain' and counts the block.
 * - `/stall`: 200 with Content-Length 1000, 100 bytes of body, then silence.
 * - `/hang`: reads the request, never answers.
 * - `/die?n=N[&chunked=1]`: promises more than N bytes (Content-Length 2N, or chunked),
 *   writes N, then destroys the connection.
 */
export interface WatchedRequest {
  id: string;
  path: string;
  arrivedAt: number;
  /** When the upstream's socket for this request closed. */
  closedAt?: number;
  /** Body bytes handed to `res.write`. */
  bytesWritten: number;
  /** How many times `write()` returned false. */
  blocked: number;
  /** Waiting for 'drain' right now. */
  waitingForDrain: boolean;
  /** The whole body was written and ended. */
  finished: boolean;
}

export interface WatchUpstream {
  readonly url: string;
  readonly port: number;
  readonly requests: Map<string, WatchedRequest>;
  /** Resolves with the record once a request with this id has arrived (bounded). */
  arrived(id: string, timeoutMs?: number): Promise<WatchedRequest>;
  /** Resolves with the record once its connection has closed; rejects after `timeoutMs`. */
  closed(id: string, timeoutMs: number): Promise<WatchedRequest>;
  close(): Promise<void>;
}

const PIECE = 64 * 1024;
const PATTERN = Buffer.alloc(PIECE);
for (let i = 0; i < PIECE; i++) PATTERN[i] = 0x61 + (i % 26);

/** Bytes of the repeating pattern starting at `offset` (offset kept modulo 26). */
function piece(offset: number, n: number): Buffer {
  const start = offset % 26;
  return PATTERN.subarray(start, start + Math.min(n, PIECE - 26));
}

function streamBytes(res: ServerResponse, rec: WatchedRequest, total: number, onDone: () => void): void {
  let sent = 0;
  const pump = (): void => {
    rec.waitingForDrain = false;
    while (sent < total) {
      if (res.destroyed) return;
      const chunk = piece(sent, total - sent);
      sent += chunk.length;
      rec.bytesWritten += chunk.length;
      if (!res.write(chunk)) {
        rec.blocked++;
        rec.waitingForDrain = true;
        res.once('drain', pump);
        return;
      }
    }
    onDone();
  };
  pump();
}

export async function startWatchUpstream(host = '127.0.0.1'): Promise<WatchUpstream> {
  const requests = new Map<string, WatchedRequest>();
  const sockets = new Set<Socket>();
  const waiters = new Set<() => void>();
  const notify = (): void => {
    for (const w of [...waiters]) w();
  };

  const server: Server = createServer({ keepAliveTimeout: 30_000, requestTimeout: 0 }, (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://upstream');
    const id = url.searchParams.get('id') ?? String(requests.size + 1);
    const rec: WatchedRequest = { id, path: url.pathname, arrivedAt: Date.now(), bytesWritten: 0, blocked: 0, waitingForDrain: false, finished: false };
    requests.set(id, rec);
    req.socket.once('close', () => {
      rec.closedAt = Date.now();
      notify();
    });
    res.on('error', () => {});
    req.resume();
    notify();
    const n = Number(url.searchParams.get('n') ?? '0');
    const chunked = url.searchParams.get('chunked') === '1';
    switch (url.pathname) {
      case '/big':
        res.writeHead(200, chunked ? { 'content-type': 'application/octet-stream' } : { 'content-type': 'application/octet-stream', 'content-length': String(n) });
        streamBytes(res, rec, n, () => {
          rec.finished = true;
          res.end();
        });
        return;
      case '/stall':
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
        res.write(Buffer.alloc(100, 0x61));
        rec.bytesWritten = 100;
        return;
      case '/hang':
        return;
      case '/die':
        res.writeHead(200, chunked ? { 'content-type': 'application/octet-stream' } : { 'content-type': 'application/octet-stream', 'content-length': String(2 * n) });
        streamBytes(res, rec, n, () => {
          // Let the bytes leave before cutting the connection.
          setTimeout(() => req.socket.destroy(), 50);
        });
        return;
      default:
        res.writeHead(404, { 'content-length': '0' });
        res.end();
    }
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  const { port, url } = await listenOnFreePort(server, host);

  const waitFor = (what: string, timeoutMs: number, ok: () => WatchedRequest | undefined): Promise<WatchedRequest> =>
    new Promise((resolve, reject) => {
      const done = ok();
      if (done) {
        resolve(done);
        return;
      }
      const check = (): void => {
        const r = ok();
        if (!r) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve(r);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`upstream: ${what} did not happen within ${timeoutMs} ms`));
      }, timeoutMs);
      waiters.add(check);
    });

  return {
    url,
    port,
    requests,
    arrived: (id, timeoutMs = 3000) => waitFor(`request ${id} arriving`, timeoutMs, () => requests.get(id)),
    closed: (id, timeoutMs) => waitFor(`the connection of request ${id} closing`, timeoutMs, () => {
      const r = requests.get(id);
      return r?.closedAt !== undefined ? r : undefined;
    }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Samples `process.memoryUsage().rss` while a transfer runs. */
export interface RssSampler {
  readonly baseline: number;
  /** Stop sampling; the largest growth over the baseline seen, in bytes. */
  stop(): { maxGrowth: number; samples: number };
}

export function sampleRss(intervalMs = 25): RssSampler {
  const baseline = process.memoryUsage().rss;
  let max = baseline;
  let samples = 0;
  const timer = setInterval(() => {
    const rss = process.memoryUsage().rss;
    samples++;
    if (rss > max) max = rss;
  }, intervalMs);
  return {
    baseline,
    stop() {
      clearInterval(timer);
      const rss = process.memoryUsage().rss;
      if (rss > max) max = rss;
      return { maxGrowth: max - baseline, samples };
    },
  };
}

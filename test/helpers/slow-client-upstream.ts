import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';

/**
 * Upstreams on loopback for slow-client tests: they count their open connections (so a
 * test can wait, bounded, until a gateway freed them) and bound every answer in bytes.
 *
 * HTTP paths (`id=` names the request):
 * - `/upload`: reads the whole request body, then answers 200 with the byte count.
 * - `/early`: answers a 200 head (Content-Length 10) at once, then reads the body; ends the
 *   body once the request body is complete.
 * - `/slow-read?ms=N`: reads nothing for N ms, then reads the whole body and answers 200.
 * - `Expect: 100-continue` requests get their 100 after `continueMs=N` (default 0), then go on
 *   as above.
 * - `/stream?max=N`: streams up to N bytes (64 MiB at most) while `write()` returns true, waits
 *   for 'drain' otherwise; counts what it could hand to the socket.
 */
export interface UpstreamRequest {
  id: string;
  path: string;
  bodyBytes: number;
  /** Body bytes handed to `res.write`. */
  written: number;
  bodyComplete: boolean;
  closed: boolean;
}

export interface SlowClientUpstream {
  readonly port: number;
  readonly url: string;
  /** Connections open right now. */
  readonly open: number;
  readonly requests: Map<string, UpstreamRequest>;
  /** Resolves once a request with this id arrived; rejects after `timeoutMs`. */
  arrived(id: string, timeoutMs: number): Promise<UpstreamRequest>;
  /** Resolves once no connection is open; rejects after `timeoutMs` naming how many are. */
  drained(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

const MAX_STREAM = 64 * 1024 * 1024;
const PIECE = Buffer.alloc(64 * 1024, 0x61);

class Waiters {
  readonly #list = new Set<() => void>();
  notify(): void {
    for (const w of [...this.#list]) w();
  }
  until<T>(what: string, timeoutMs: number, ok: () => T | undefined): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const v = ok();
        if (v === undefined) return;
        clearTimeout(timer);
        this.#list.delete(check);
        resolve(v);
      };
      const timer = setTimeout(() => {
        this.#list.delete(check);
        reject(new Error(`upstream: ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#list.add(check);
      check();
    });
  }
}

function stream(res: ServerResponse, rec: UpstreamRequest, max: number): void {
  const pump = (): void => {
    while (rec.written < max) {
      if (res.destroyed) return;
      const n = Math.min(PIECE.length, max - rec.written);
      rec.written += n;
      if (!res.write(n === PIECE.length ? PIECE : PIECE.subarray(0, n))) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

export async function startSlowClientUpstream(): Promise<SlowClientUpstream> {
  const requests = new Map<string, UpstreamRequest>();
  const sockets = new Set<Socket>();
  const waiters = new Waiters();
  const server: Server = createServer({ keepAliveTimeout: 30_000, requestTimeout: 0, headersTimeout: 10_000 }, (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://upstream');
    const id = url.searchParams.get('id') ?? String(requests.size + 1);
    const rec: UpstreamRequest = { id, path: url.pathname, bodyBytes: 0, written: 0, bodyComplete: false, closed: false };
    requests.set(id, rec);
    res.on('error', () => {});
    req.on('error', () => {});
    req.socket.once('close', () => {
      rec.closed = true;
      waiters.notify();
    });
    const readBody = (then: () => void): void => {
      req.on('data', (c: Buffer) => (rec.bodyBytes += c.length));
      req.once('end', () => {
        rec.bodyComplete = true;
        waiters.notify();
        then();
      });
    };
    waiters.notify();
    switch (url.pathname) {
      case '/upload':
        readBody(() => res.end(`got ${rec.bodyBytes}`));
        return;
      case '/early':
        res.writeHead(200, { 'content-length': '10' });
        res.write('01234');
        readBody(() => res.end('56789'));
        return;
      case '/slow-read': {
        req.pause();
        const t = setTimeout(() => {
          readBody(() => res.end(`got ${rec.bodyBytes}`));
          req.resume();
        }, Number(url.searchParams.get('ms') ?? '0'));
        req.socket.once('close', () => clearTimeout(t));
        return;
      }
      case '/stream':
        req.resume();
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        stream(res, rec, Math.min(MAX_STREAM, Number(url.searchParams.get('max') ?? MAX_STREAM)));
        return;
      default:
        res.writeHead(404, { 'content-length': '0' });
        res.end();
    }
  });
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const ms = Number(new URL(req.url ?? '/', 'http://upstream').searchParams.get('continueMs') ?? '0');
    const t = setTimeout(() => {
      res.writeContinue();
      server.emit('request', req, res);
    }, ms);
    req.socket.once('close', () => clearTimeout(t));
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => {
      sockets.delete(s);
      waiters.notify();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    get open() {
      return sockets.size;
    },
    requests,
    arrived: (id, timeoutMs) => waiters.until(`request ${id} did not arrive`, timeoutMs, () => requests.get(id)),
    drained: (timeoutMs) => waiters.until(`connections still open (${sockets.size})`, timeoutMs, () => (sockets.size === 0 ? true : undefined)).then(() => {}),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * A TCP destination for tunnels that sends up to `max` bytes (64 MiB at most) to whoever
 * connects, as fast as the connection takes them, and counts what it could write.
 */
export interface StreamingTcp {
  readonly port: number;
  readonly open: number;
  /** Bytes handed to the socket of each connection, in order of arrival. */
  readonly written: number[];
  drained(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

export async function startStreamingTcp(max = MAX_STREAM): Promise<StreamingTcp> {
  const sockets = new Set<Socket>();
  const written: number[] = [];
  const waiters = new Waiters();
  const server: NetServer = createNetServer((s) => {
    sockets.add(s);
    const i = written.push(0) - 1;
    s.on('error', () => {});
    s.once('close', () => {
      sockets.delete(s);
      waiters.notify();
    });
    const pump = (): void => {
      while (written[i]! < Math.min(max, MAX_STREAM)) {
        if (s.destroyed) return;
        written[i]! += PIECE.length;
        if (!s.write(PIECE)) {
          s.once('drain', pump);
          return;
        }
      }
      s.end();
    };
    pump();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    get open() {
      return sockets.size;
    },
    written,
    drained: (timeoutMs) => waiters.until(`tunnel destination connections still open (${sockets.size})`, timeoutMs, () => (sockets.size === 0 ? true : undefined)).then(() => {}),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Read what is left (bounded): resolves with the byte count once the connection ends. */
export function drainRest(s: Socket, limit: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`the connection was still open after ${timeoutMs} ms (${n} bytes read)`));
    }, timeoutMs);
    s.on('data', (d: Buffer) => {
      n += d.length;
      if (n > limit) {
        clearTimeout(timer);
        s.destroy();
        reject(new Error(`read more than ${limit} bytes: the answer was not cut`));
      }
    });
    s.once('close', () => {
      clearTimeout(timer);
      resolve(n);
    });
    s.resume();
  });
}

/** Send `head`, wait for the first bytes back, then stop reading. */
export function sendThenStopReading(port: number, head: string | Buffer): Promise<{ socket: Socket; first: Buffer }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    s.once('connect', () => s.write(head));
    s.once('data', (d: Buffer) => {
      s.pause();
      resolve({ socket: s, first: d });
    });
    s.once('close', () => reject(new Error('closed before any byte')));
  });
}

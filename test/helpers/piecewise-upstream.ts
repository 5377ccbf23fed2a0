import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/** One request as the piecewise upstream read it. */
export interface PieceRequest {
  method: string;
  path: string;
  head: string;
  body: Buffer;
  /** Which connection (1, 2, …) and which request on it (0 = first). */
  conn: number;
  index: number;
}

/** What the test's answer function returns: bytes written in these pieces, then maybe an end of the connection. */
export interface PieceAnswer {
  pieces: Array<Buffer | string>;
  /** End the connection after the answer (FIN). */
  close?: boolean;
  /** Destroy the connection this long after the answer (the upstream's idle close), without a Connection: close. */
  closeAfterMs?: number;
  /** Reset the connection after the answer (a TCP RST: `resetAndDestroy`; a plain destroy with nothing unread sends a FIN). */
  reset?: boolean;
}

export interface PiecewiseUpstream {
  readonly port: number;
  readonly url: string;
  readonly requests: PieceRequest[];
  readonly sockets: Socket[];
  close(): Promise<void>;
}

/**
 * A raw HTTP/1.1 upstream on loopback that writes each answer in the pieces the test chose,
 * one write per event-loop turn (Nagle off), so the client reads the response split at those
 * points. It reads request bodies by Content-Length or chunked coding, so POSTs stay in step.
 */
export async function startPiecewiseUpstream(answer: (req: PieceRequest) => PieceAnswer | Promise<PieceAnswer>): Promise<PiecewiseUpstream> {
  const requests: PieceRequest[] = [];
  const sockets: Socket[] = [];
  let conns = 0;
  const server: Server = createServer((socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => {});
    sockets.push(socket);
    const conn = ++conns;
    let index = 0;
    let buf = Buffer.alloc(0);
    let busy = false;
    const pump = async (): Promise<void> => {
      if (busy) return;
      busy = true;
      try {
        for (;;) {
          const r = readRequest(buf);
          if (r === undefined) return;
          buf = buf.subarray(r.used);
          const req: PieceRequest = { ...r.req, conn, index: index++ };
          requests.push(req);
          const a = await answer(req);
          for (const p of a.pieces) {
            if (socket.destroyed) return;
            socket.write(p);
            await new Promise((res) => setImmediate(res));
          }
          if (a.reset) {
            socket.resetAndDestroy();
            return;
          }
          if (a.close) {
            socket.end();
            return;
          }
          if (a.closeAfterMs !== undefined) {
            const t = setTimeout(() => socket.destroy(), a.closeAfterMs);
            socket.once('close', () => clearTimeout(t));
          }
        }
      } finally {
        busy = false;
      }
    };
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      void pump();
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** One whole request at the start of `buf`, or undefined while it is incomplete. */
function readRequest(buf: Buffer): { req: Omit<PieceRequest, 'conn' | 'index'>; used: number } | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const head = buf.toString('latin1', 0, end);
  const [method = '', path = ''] = head.split('\r\n')[0]!.split(' ');
  const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
  let at = end + 4;
  if (cl) {
    const n = Number(cl[1]);
    if (buf.length < at + n) return undefined;
    return { req: { method, path, head, body: buf.subarray(at, at + n) }, used: at + n };
  }
  if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
    const parts: Buffer[] = [];
    for (;;) {
      const eol = buf.indexOf('\r\n', at);
      if (eol < 0) return undefined;
      const size = parseInt(buf.toString('latin1', at, eol).split(';')[0]!, 16);
      at = eol + 2;
      if (size === 0) {
        const tEnd = buf.indexOf('\r\n', at);
        if (tEnd < 0) return undefined;
        return { req: { method, path, head, body: Buffer.concat(parts) }, used: tEnd + 2 };
      }
      if (buf.length < at + size + 2) return undefined;
      parts.push(buf.subarray(at, at + size));
      at += size + 2;
    }
  }
  return { req: { method, path, head, body: Buffer.alloc(0) }, used: at };
}

/** Split `bytes` at `cuts` random points (a seeded `rand`), as the pieces of one answer. */
export function splitAt(bytes: Buffer, cuts: number, rand: () => number): Buffer[] {
  const points = new Set<number>();
  for (let i = 0; i < cuts && bytes.length > 1; i++) points.add(1 + Math.floor(rand() * (bytes.length - 1)));
  const sorted = [...points].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of sorted) {
    out.push(bytes.subarray(from, p));
    from = p;
  }
  out.push(bytes.subarray(from));
  return out;
}

/**
 * An answer with one extra field that the request's query names (`k`: `204`, `304`, else a 200
 * with a Content-Length body of `n` bytes, none to a HEAD; the field `f: v`): the Trailer field
 * tests of both faces (test/gateway and test/forward trailer-field-unchunked).
 */
export function fieldOnAnswer(req: PieceRequest): PieceAnswer {
  const q = new URLSearchParams(req.path.split('?')[1]);
  const n = Number(q.get('n'));
  const field = `${q.get('f')}: ${q.get('v')}\r\n`;
  const kind = q.get('k');
  if (kind === '204') return { pieces: [`HTTP/1.1 204 No Content\r\n${field}\r\n`] };
  if (kind === '304') return { pieces: [`HTTP/1.1 304 Not Modified\r\nETag: "e"\r\n${field}\r\n`] };
  return { pieces: [`HTTP/1.1 200 OK\r\nContent-Length: ${n}\r\n${field}\r\n`, req.method === 'HEAD' ? '' : 'b'.repeat(n)] };
}

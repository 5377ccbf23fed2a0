import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { listenOnFreePort } from './listen.js';

/** A small upstream on loopback whose answers a test writes itself. */
export interface ScriptedUpstream {
  readonly url: string;
  readonly port: number;
  /** Requests received, in order (method, url, headers as Node parsed them). */
  readonly received: Array<{ method: string; url: string; headers: IncomingMessage['headers']; rawHeaders: string[] }>;
  close(): Promise<void>;
}

/** An HTTP upstream (Node's server) answering with `handler`. */
export async function startScriptedUpstream(handler: (req: IncomingMessage, res: ServerResponse) => void, host = '127.0.0.1'): Promise<ScriptedUpstream> {
  const received: ScriptedUpstream['received'] = [];
  const sockets = new Set<Socket>();
  const server: Server = createHttpServer((req, res) => {
    received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders });
    handler(req, res);
  });
  return listenAndWrap(server, sockets, host, received);
}

/** What a raw upstream writes for one request head: the bytes, and whether it then ends the connection. */
export interface RawAnswer {
  bytes: Buffer | string;
  close?: boolean;
}

/**
 * A raw TCP upstream: for each request head it reads (several per connection), writes
 * `answer`'s exact bytes and, with `close` (the option, or the answer's own), ends the connection.
 */
export async function startRawUpstream(answer: (head: string) => Buffer | string | RawAnswer, opts: { close?: boolean } = {}, host = '127.0.0.1'): Promise<ScriptedUpstream> {
  const received: ScriptedUpstream['received'] = [];
  const sockets = new Set<Socket>();
  const server: NetServer = createNetServer((socket) => {
    let buf = '';
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        const [line, ...fields] = head.split('\r\n');
        const [method = '', url = ''] = line!.split(' ');
        const headers: IncomingMessage['headers'] = {};
        const rawHeaders: string[] = [];
        for (const f of fields) {
          const c = f.indexOf(':');
          const k = f.slice(0, c);
          const v = f.slice(c + 1).trim();
          rawHeaders.push(k, v);
          headers[k.toLowerCase()] = v;
        }
        received.push({ method, url, headers, rawHeaders });
        const out = answer(head);
        const raw = typeof out === 'string' || Buffer.isBuffer(out) ? { bytes: out, close: opts.close } : out;
        if (raw.close) {
          socket.end(raw.bytes);
          return;
        }
        socket.write(raw.bytes);
      }
    });
  });
  return listenAndWrap(server, sockets, host, received);
}

async function listenAndWrap(server: Server | NetServer, sockets: Set<Socket>, host: string, received: ScriptedUpstream['received']): Promise<ScriptedUpstream> {
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  const { port, url } = await listenOnFreePort(server, host);
  return {
    url,
    port,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

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
  const server = await startRawServer((socket) => {
    onHeads(socket, (head, url) => {
      const [line, ...fields] = head.split('\r\n');
      const method = line!.split(' ')[0]!;
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
      if (raw.close) socket.end(raw.bytes);
      else socket.write(raw.bytes);
    });
  }, host);
  return { ...server, received };
}

/** A raw TCP upstream whose connections the test handles itself (`startRawServer`). */
export interface RawServer {
  readonly url: string;
  readonly port: number;
  /** Its connections still open (a test can wait for the gateway to let go of them). */
  readonly sockets: ReadonlySet<Socket>;
  /** Destroys the connections still open and closes the server. */
  close(): Promise<void>;
}

/**
 * A raw TCP upstream on loopback: `onConnection` gets each connection and does what the test
 * needs (answer by request head with `onHeads` or `onFirstHead`, stream with `tick`, send 1xx,
 * stay silent, read a body itself). Socket errors are swallowed (the gateway may reset).
 */
export async function startRawServer(onConnection: (socket: Socket) => void, host = '127.0.0.1'): Promise<RawServer> {
  const sockets = new Set<Socket>();
  const server: NetServer = createNetServer((socket) => {
    socket.on('error', () => {});
    onConnection(socket);
  });
  const { url, port, close } = await listenAndWrap(server, sockets, host, []);
  return { url, port, sockets, close };
}

/**
 * Calls `onHead` with each request head read on `socket` (latin1, without its blank line) and
 * its request target (the path), several per connection, until `onHead` ends the socket. No
 * body is read: bytes after a head are taken as the start of the next head.
 */
export function onHeads(socket: Socket, onHead: (head: string, target: string) => void): void {
  let buf = '';
  socket.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.slice(0, end);
      buf = buf.slice(end + 4);
      onHead(head, head.split('\r\n', 1)[0]!.split(' ')[1] ?? '');
      if (socket.writableEnded) return;
    }
  });
}

/** Calls `onHead` once, with the first request head read on `socket` (as `onHeads`); all bytes after it are read and dropped. */
export function onFirstHead(socket: Socket, onHead: (head: string) => void): void {
  let buf = '';
  let done = false;
  socket.on('data', (d: Buffer) => {
    if (done) return;
    buf += d.toString('latin1');
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    done = true;
    onHead(buf.slice(0, end));
  });
}

/**
 * Writes `step(n)` on `socket` every `everyMs` ms (n = 0, 1, …: an event of a stream, an
 * interim answer) until `step` returns undefined, then writes `last` if given (the end of a
 * chunked body) and stops. Stops as well once the socket is destroyed or closed: each use
 * bounds its own count or time, so no timer outlives its test.
 */
export function tick(socket: Socket, everyMs: number, step: (n: number) => string | undefined, last?: string): void {
  let n = 0;
  const timer = setInterval(() => {
    if (socket.destroyed) return clearInterval(timer);
    const out = step(n++);
    if (out === undefined) {
      clearInterval(timer);
      if (last !== undefined) socket.write(last);
      return;
    }
    socket.write(out);
  }, everyMs);
  socket.once('close', () => clearInterval(timer));
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

// The "faster front" experiment (issue 17): the bare undici engine of undici-stream.ts, but
// with the server side on node:net instead of node:http: a strict request-head parser for
// body-less requests (request line, header fields, CRLF only, a 16 KiB head at most), and
// the response head built as one string from undici's raw headers and written corked with
// the body. No IncomingMessage, no ServerResponse, no llhttp on the client side. Anything
// it does not take (a body, obs-fold, a bad line) is answered 400/501 and the connection is
// closed. Measured against undici-stream (node:http + the same undici Pool) in a duel, it
// tells what owning the server side could buy before Gatewise adopts anything like it.
// Usage: node dist/bench/peers/net-front.js PORT ORIGIN_PORT
import net from 'node:net';
import { Pool, type Dispatcher } from 'undici';

const port = Number(process.argv[2]);
const origin = Number(process.argv[3]);
const pool = new Pool(`http://127.0.0.1:${origin}`, { connections: 256, pipelining: 1, keepAliveTimeout: 60_000 });
const MAX_HEAD = 16 * 1024;
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

interface Head {
  method: string;
  path: string;
  headers: string[];
  close: boolean;
}

/** One head from `text` (latin1) starting at 0; undefined when incomplete; a string when refused. */
function parseHead(text: string): { head: Head; length: number } | string | undefined {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return text.length > MAX_HEAD ? '431' : undefined;
  const lineEnd = text.indexOf('\r\n');
  const line = text.slice(0, lineEnd);
  const sp1 = line.indexOf(' ');
  const sp2 = line.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 < 0 || line.indexOf(' ', sp2 + 1) >= 0) return '400';
  const version = line.slice(sp2 + 1);
  if (version !== 'HTTP/1.1' && version !== 'HTTP/1.0') return '400';
  const method = line.slice(0, sp1);
  const path = line.slice(sp1 + 1, sp2);
  if (path[0] !== '/') return '400';
  const headers: string[] = [];
  let close = version === 'HTTP/1.0';
  let i = lineEnd + 2;
  while (i < end) {
    const e = text.indexOf('\r\n', i);
    const colon = text.indexOf(':', i);
    if (colon < 0 || colon > e || colon === i) return '400';
    const c0 = text.charCodeAt(i);
    if (c0 === 0x20 || c0 === 0x09) return '400'; // obs-fold
    const name = text.slice(i, colon).toLowerCase();
    const value = text.slice(colon + 1, e).trim();
    if (name === 'content-length' ? value !== '0' : name === 'transfer-encoding') return '501';
    if (name === 'connection') close = /close/i.test(value) || (version === 'HTTP/1.0' && !/keep-alive/i.test(value));
    if (!HOP.has(name)) headers.push(name, value);
    i = e + 2;
  }
  return { head: { method, path, headers, close }, length: end + 4 };
}

class Conn implements Dispatcher.DispatchHandler {
  readonly sock: net.Socket;
  #text = '';
  #busy = false;
  #close = false;
  #resume: (() => void) | undefined;

  constructor(sock: net.Socket) {
    this.sock = sock;
    sock.setNoDelay(true);
    sock.on('data', (d: Buffer) => {
      this.#text += d.toString('latin1');
      this.#next();
    });
    sock.on('error', () => sock.destroy());
    sock.on('drain', () => this.#resume?.());
  }

  #next(): void {
    if (this.#busy || this.#text.length === 0) return;
    const r = parseHead(this.#text);
    if (r === undefined) return;
    if (typeof r === 'string') {
      this.sock.end(`HTTP/1.1 ${r} Refused\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
      return;
    }
    this.#text = this.#text.slice(r.length);
    this.#busy = true;
    this.#close = r.head.close;
    pool.dispatch({ path: r.head.path, method: r.head.method as Dispatcher.HttpMethod, headers: r.head.headers, body: null }, this);
  }

  onConnect(): void {}
  onError(): void {
    if (this.#busy) this.sock.destroy();
  }
  onHeaders(status: number, raw: Buffer[], resume: () => void): boolean {
    this.#resume = resume;
    let head = `HTTP/1.1 ${status} ${status === 200 ? 'OK' : 'Status'}\r\n`;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toString('latin1');
      if (HOP.has(name.toLowerCase())) continue;
      head += `${name}: ${raw[i + 1]!.toString('latin1')}\r\n`;
    }
    head += this.#close ? 'connection: close\r\n\r\n' : '\r\n';
    this.sock.cork();
    this.sock.write(head, 'latin1');
    return true;
  }
  onData(chunk: Buffer): boolean {
    const sock = this.sock;
    const ok = sock.write(chunk);
    // The head goes out with the first chunk; a corked socket never drains, so uncork here.
    if (sock.writableCorked > 0) sock.uncork();
    return ok;
  }
  onComplete(): void {
    const sock = this.sock;
    if (sock.writableCorked > 0) sock.uncork();
    this.#busy = false;
    if (this.#close) sock.end();
    else this.#next();
  }
}

net.createServer({ noDelay: true }, (sock) => new Conn(sock)).listen(port, '127.0.0.1');

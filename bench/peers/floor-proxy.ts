// The floor of a reverse proxy in Node (issue 17): what node:net sockets cost per proxied
// request when a proxy does the least it must. The server side is net-front.ts's (a strict
// head parser for body-less requests), the upstream side raw-client.ts's idea cut to
// Content-Length answers: idle upstream sockets in a stack, the request head written as
// one string, the answer's head parsed, its hop-by-hop fields dropped, the head rebuilt and
// written corked with the body. No timers, no logging, no errors answered beyond 400/502.
// Duelled against node-http-proxy it tells how far any Node proxy can get on the 1 KiB load.
// Usage: node dist/bench/peers/floor-proxy.js PORT ORIGIN_PORT
import net from 'node:net';

const port = Number(process.argv[2]);
const origin = Number(process.argv[3]);
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);
const CRLFCRLF = Buffer.from('\r\n\r\n');

class Upstream {
  readonly sock: net.Socket;
  client: Client | undefined;
  #head: Buffer | undefined;
  #left = -1;

  constructor() {
    this.sock = net.connect({ port: origin, host: '127.0.0.1', noDelay: true });
    this.sock.on('data', (d: Buffer) => this.#data(d));
    this.sock.on('error', () => this.sock.destroy());
    this.sock.on('close', () => {
      const i = idle.indexOf(this);
      if (i >= 0) idle.splice(i, 1);
      this.client?.sock.destroy();
    });
  }

  #data(d: Buffer): void {
    const c = this.client;
    if (!c) return void this.sock.destroy();
    if (this.#left < 0) {
      const buf = this.#head ? Buffer.concat([this.#head, d]) : d;
      const end = buf.indexOf(CRLFCRLF);
      if (end < 0) {
        this.#head = buf;
        return;
      }
      this.#head = undefined;
      const text = buf.toString('latin1', 0, end);
      const lineEnd = text.indexOf('\r\n');
      let out = text.slice(0, lineEnd) + '\r\n';
      let length = -1;
      let i = lineEnd + 2;
      while (i < text.length) {
        let e = text.indexOf('\r\n', i);
        if (e < 0) e = text.length;
        const colon = text.indexOf(':', i);
        const name = text.slice(i, colon);
        const lower = name.toLowerCase();
        if (lower === 'content-length') length = Number(text.slice(colon + 1, e).trim());
        if (!HOP.has(lower)) out += text.slice(i, e) + '\r\n';
        i = e + 2;
      }
      if (length < 0) return void c.sock.destroy(); // Content-Length answers only
      this.#left = length;
      c.sock.cork();
      c.sock.write(out + (c.close ? 'connection: close\r\n\r\n' : '\r\n'), 'latin1');
      d = buf.subarray(end + 4);
    }
    if (d.length > 0) c.sock.write(d);
    this.#left -= d.length;
    if (this.#left === 0) {
      this.#left = -1;
      this.client = undefined;
      idle.push(this);
      c.done();
    }
  }
}

const idle: Upstream[] = [];

class Client {
  readonly sock: net.Socket;
  close = false;
  #text = '';
  #busy = false;

  constructor(sock: net.Socket) {
    this.sock = sock;
    sock.on('data', (d: Buffer) => {
      this.#text += d.toString('latin1');
      this.#next();
    });
    sock.on('error', () => sock.destroy());
  }

  #next(): void {
    if (this.#busy) return;
    const text = this.#text;
    const end = text.indexOf('\r\n\r\n');
    if (end < 0) return;
    this.#text = text.slice(end + 4);
    const lineEnd = text.indexOf('\r\n');
    let head = text.slice(0, lineEnd) + `\r\nhost: 127.0.0.1:${origin}\r\n`;
    this.close = false;
    let i = lineEnd + 2;
    while (i < end) {
      const e = text.indexOf('\r\n', i);
      const colon = text.indexOf(':', i);
      if (colon < 0 || colon > e) return void this.sock.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      const lower = text.slice(i, colon).toLowerCase();
      if (lower === 'connection') this.close = /close/i.test(text.slice(colon + 1, e));
      else if (!HOP.has(lower)) head += text.slice(i, e) + '\r\n';
      i = e + 2;
    }
    this.#busy = true;
    const u = idle.pop() ?? new Upstream();
    u.client = this;
    u.sock.write(head + '\r\n', 'latin1');
  }

  done(): void {
    this.sock.uncork();
    this.#busy = false;
    if (this.close) this.sock.end();
    else this.#next();
  }
}

net.createServer({ noDelay: true }, (sock) => new Client(sock)).listen(port, '127.0.0.1');

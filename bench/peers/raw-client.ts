// The upstream half of the "faster front" study (issue 17): node:http on the server side, as in
// undici-stream.ts, but the upstream side is a raw keep-alive client on node:net instead of
// undici's dispatcher: idle sockets in a stack, the request head written as one string, a
// strict response-head parser (status line, header fields, CRLF only, 16 KiB at most) and the
// body passed on by Content-Length, chunked or close-delimited framing. No llhttp, no undici
// Request/handler objects, no timers. Measured against undici-stream in a duel, it tells what
// owning the client side could buy before Gatewise adopts anything like it.
// Usage: node dist/bench/peers/raw-client.js PORT ORIGIN_PORT
import http from 'node:http';
import net from 'node:net';

const port = Number(process.argv[2]);
const origin = Number(process.argv[3]);
const MAX_HEAD = 16 * 1024;
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);
const CRLFCRLF = Buffer.from('\r\n\r\n');

type Done = (reusable: boolean) => void;

/** One upstream connection: one exchange at a time, its parser state kept between chunks. */
class Upstream {
  readonly sock: net.Socket;
  #res: http.ServerResponse | undefined;
  #done: Done | undefined;
  #head: Buffer | undefined;
  /** Body bytes still due (Content-Length); -1 chunked; -2 until close. */
  #left = 0;
  /** Chunked: bytes of the current chunk still due, or -1 when a size line is next. */
  #chunk = -1;
  #pending: Buffer | undefined;
  #headOnly = false;

  constructor(onClose: (u: Upstream) => void) {
    this.sock = net.connect({ port: origin, host: '127.0.0.1', noDelay: true });
    this.sock.on('data', (d: Buffer) => this.#data(d));
    this.sock.on('error', () => this.sock.destroy());
    this.sock.on('close', () => {
      onClose(this);
      // Close-delimited bodies end here; anything else cut short is a failure.
      if (this.#res) this.#finish(this.#res.headersSent && this.#left === -2, false);
    });
  }

  send(req: http.IncomingMessage, res: http.ServerResponse, done: Done): void {
    this.#res = res;
    this.#done = done;
    this.#head = undefined;
    this.#pending = undefined;
    this.#headOnly = req.method === 'HEAD';
    let head = `${req.method} ${req.url} HTTP/1.1\r\nhost: 127.0.0.1:${origin}\r\n`;
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) if (!HOP.has(raw[i]!.toLowerCase())) head += `${raw[i]}: ${raw[i + 1]}\r\n`;
    this.sock.write(head + '\r\n', 'latin1');
    const length = req.headers['content-length'];
    if (length !== undefined && length !== '0') req.on('data', (c: Buffer) => this.sock.write(c));
  }

  #data(d: Buffer): void {
    const res = this.#res;
    if (!res) {
      this.sock.destroy(); // bytes nobody asked for
      return;
    }
    if (!res.headersSent) {
      const buf = this.#head ? Buffer.concat([this.#head, d]) : d;
      const end = buf.indexOf(CRLFCRLF);
      if (end < 0) {
        if (buf.length > MAX_HEAD) this.#fail();
        else this.#head = buf;
        return;
      }
      this.#head = undefined;
      if (!this.#parseHead(buf.toString('latin1', 0, end))) return this.#fail();
      d = buf.subarray(end + 4);
      if (this.#left === 0) return this.#finish(true, true);
    }
    this.#body(d);
  }

  #parseHead(text: string): boolean {
    const lineEnd = text.indexOf('\r\n');
    const line = lineEnd < 0 ? text : text.slice(0, lineEnd);
    if (!line.startsWith('HTTP/1.1 ') && !line.startsWith('HTTP/1.0 ')) return false;
    const status = Number(line.slice(9, 12));
    if (!(status >= 200 && status <= 599)) return false; // 1xx is not taken by this experiment
    const headers: string[] = [];
    let length = -2;
    let chunked = false;
    let i = lineEnd < 0 ? text.length : lineEnd + 2;
    while (i < text.length) {
      let e = text.indexOf('\r\n', i);
      if (e < 0) e = text.length;
      const colon = text.indexOf(':', i);
      if (colon <= i || colon > e) return false;
      const c0 = text.charCodeAt(i);
      if (c0 === 0x20 || c0 === 0x09) return false; // obs-fold
      const name = text.slice(i, colon);
      const value = text.slice(colon + 1, e).trim();
      const lower = name.toLowerCase();
      if (lower === 'content-length') {
        const n = Number(value);
        if (!/^\d+$/.test(value) || (length >= 0 && length !== n)) return false;
        length = n;
      } else if (lower === 'transfer-encoding') chunked = /(^|,)\s*chunked\s*$/i.test(value);
      if (!HOP.has(lower)) headers.push(name, value);
      i = e + 2;
    }
    if (chunked && length >= 0) return false; // request smuggling shape: refused
    this.#left = this.#headOnly || status === 204 || status === 304 ? 0 : chunked ? -1 : length;
    this.#chunk = -1;
    this.#res!.writeHead(status, headers);
    return true;
  }

  #body(d: Buffer): void {
    const res = this.#res!;
    if (this.#left === -2) {
      if (d.length > 0) res.write(d);
      return;
    }
    if (this.#left > 0) {
      if (d.length > this.#left) return this.#fail(); // more than announced
      res.write(d);
      this.#left -= d.length;
      if (this.#left === 0) this.#finish(true, true);
      return;
    }
    // Chunked: sizes parsed here, data written as it comes (node:http re-chunks it).
    let buf = this.#pending ? Buffer.concat([this.#pending, d]) : d;
    this.#pending = undefined;
    while (buf.length > 0) {
      if (this.#chunk > 0) {
        const take = Math.min(this.#chunk, buf.length);
        res.write(buf.subarray(0, take));
        this.#chunk -= take;
        buf = buf.subarray(take);
        if (this.#chunk === 0) this.#chunk = -3; // its CRLF is next
        continue;
      }
      const eol = buf.indexOf('\r\n');
      if (eol < 0) {
        if (buf.length > 1024) return this.#fail();
        this.#pending = buf;
        return;
      }
      if (this.#chunk === -3) {
        if (eol !== 0) return this.#fail();
        this.#chunk = -1;
        buf = buf.subarray(2);
        continue;
      }
      if (this.#chunk === -4) {
        // Trailer section: lines until an empty one.
        buf = buf.subarray(eol + 2);
        if (eol === 0) {
          if (buf.length > 0) return this.#fail();
          return this.#finish(true, true);
        }
        continue;
      }
      const size = parseInt(buf.toString('latin1', 0, eol).split(';')[0]!, 16);
      if (!Number.isInteger(size) || size < 0) return this.#fail();
      buf = buf.subarray(eol + 2);
      this.#chunk = size === 0 ? -4 : size;
    }
  }

  #fail(): void {
    const res = this.#res;
    this.#res = undefined;
    const done = this.#done;
    this.#done = undefined;
    this.sock.destroy();
    if (res && !res.headersSent) res.writeHead(502).end();
    else res?.destroy();
    done?.(false);
  }

  #finish(ok: boolean, reusable: boolean): void {
    const res = this.#res!;
    const done = this.#done!;
    this.#res = undefined;
    this.#done = undefined;
    if (ok) res.end();
    else if (!res.headersSent) res.writeHead(502).end();
    else res.destroy();
    done(reusable);
  }
}

const idle: Upstream[] = [];
const drop = (u: Upstream): void => {
  const i = idle.indexOf(u);
  if (i >= 0) idle.splice(i, 1);
};

http
  .createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const te = req.headers['transfer-encoding'];
    if (te !== undefined) {
      res.writeHead(501).end(); // request bodies by Content-Length only in this experiment
      return;
    }
    const u = idle.pop() ?? new Upstream(drop);
    u.send(req, res, (reusable) => {
      if (reusable && !u.sock.destroyed) idle.push(u);
      else u.sock.destroy();
    });
  })
  .listen(port, '127.0.0.1');

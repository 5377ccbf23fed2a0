import { once } from 'node:events';
import { createServer, type AddressInfo, type Server } from 'node:net';

/**
 * A destination server with a deliberately strict HTTP/1.1 request parser. It records
 * every request target it received and every ambiguity it saw (which must never happen
 * behind the proxy): two Content-Length values, Content-Length with Transfer-Encoding,
 * a Transfer-Encoding other than `chunked`, a bad chunk size, NUL/CR/LF or other control
 * bytes in a value, obs-fold, bare CR or LF. It answers each request with its target.
 */
export interface StrictDestination {
  port: number;
  targets: string[];
  violations: Array<{ why: string; raw: string }>;
  close(): Promise<void>;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

class Violation extends Error {}

/** Try to parse one request at the start of `buf`; undefined when more bytes are needed. */
function parseOne(buf: Buffer): { consumed: number; target: string } | undefined {
  const text = buf.toString('latin1');
  const headEnd = text.indexOf('\r\n\r\n');
  // Bare CR/LF anywhere in the head region seen so far.
  const region = headEnd >= 0 ? text.slice(0, headEnd + 4) : text;
  for (let i = 0; i < region.length; i++) {
    const c = region.charCodeAt(i);
    if (c === 0x0a && region.charCodeAt(i - 1) !== 0x0d) throw new Violation('bare LF');
    if (c === 0x0d && i + 1 < region.length && region.charCodeAt(i + 1) !== 0x0a) throw new Violation('bare CR');
  }
  if (headEnd < 0) {
    if (buf.length > 65536) throw new Violation('head too large');
    return undefined;
  }
  const lines = text.slice(0, headEnd).split('\r\n');
  const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([\x21-\x7e\x80-\xff]+) HTTP\/1\.1$/.exec(lines[0]!);
  if (!m) throw new Violation(`bad request line ${JSON.stringify(lines[0])}`);
  let cl: string[] = [];
  let te: string[] = [];
  for (const line of lines.slice(1)) {
    if (line.startsWith(' ') || line.startsWith('\t')) throw new Violation('obs-fold');
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Violation('header without colon');
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw new Violation(`bad header name ${JSON.stringify(name)}`);
    const value = line.slice(colon + 1);
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) throw new Violation(`control byte in ${name}`);
    const lower = name.toLowerCase();
    if (lower === 'content-length') cl.push(value.trim());
    if (lower === 'transfer-encoding') te.push(value.trim());
  }
  if (cl.length > 1) throw new Violation('two Content-Length fields');
  if (cl.length && te.length) throw new Violation('Content-Length with Transfer-Encoding');
  if (te.length > 1 || (te.length === 1 && te[0]!.toLowerCase() !== 'chunked')) throw new Violation(`Transfer-Encoding ${JSON.stringify(te)}`);
  let pos = headEnd + 4;
  if (cl.length) {
    if (!/^\d{1,15}$/.test(cl[0]!)) throw new Violation(`bad Content-Length ${JSON.stringify(cl[0])}`);
    const n = Number(cl[0]);
    if (buf.length < pos + n) return undefined;
    return { consumed: pos + n, target: m[2]! };
  }
  if (te.length) {
    for (let guard = 0; guard < 100_000; guard++) {
      const eol = text.indexOf('\r\n', pos);
      if (eol < 0) return undefined;
      const sizeLine = text.slice(pos, eol);
      const sm = /^([0-9A-Fa-f]{1,8})(;[\x20-\x7e]*)?$/.exec(sizeLine);
      if (!sm) throw new Violation(`bad chunk size ${JSON.stringify(sizeLine)}`);
      const size = parseInt(sm[1]!, 16);
      pos = eol + 2;
      if (size === 0) {
        // trailers until an empty line
        for (let g = 0; g < 1000; g++) {
          const e = text.indexOf('\r\n', pos);
          if (e < 0) return undefined;
          const t = text.slice(pos, e);
          pos = e + 2;
          if (t === '') return { consumed: pos, target: m[2]! };
          if (/[\x00-\x08\x0a-\x1f\x7f]/.test(t) || t.startsWith(' ')) throw new Violation('bad trailer');
        }
        throw new Violation('too many trailers');
      }
      if (buf.length < pos + size + 2) return undefined;
      if (text.slice(pos + size, pos + size + 2) !== '\r\n') throw new Violation('chunk data not followed by CRLF');
      pos += size + 2;
    }
    throw new Violation('too many chunks');
  }
  return { consumed: pos, target: m[2]! };
}

export async function startStrictDestination(): Promise<StrictDestination> {
  const d: StrictDestination = { port: 0, targets: [], violations: [], close: async () => {} };
  const server: Server = createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('error', () => {});
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      try {
        for (let i = 0; i < 1000; i++) {
          const r = parseOne(buf);
          if (!r) break;
          buf = buf.subarray(r.consumed);
          d.targets.push(r.target);
          const body = Buffer.from(r.target, 'latin1');
          s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n`);
          s.write(body);
        }
      } catch (err) {
        if (err instanceof Violation) d.violations.push({ why: err.message, raw: buf.toString('latin1').slice(0, 500) });
        s.destroy();
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  d.port = (server.address() as AddressInfo).port;
  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  d.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return d;
}

import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

/**
 * Raw HTTP/2 frames for protocol tests. The frame encoder and the HPACK bytes are written by
 * hand on purpose: a client library would refuse to send malformed frames, and decides itself
 * how frames are packed into writes (the rapid-reset family needs to choose that).
 */

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const T = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8 } as const;
export const E = { NO_ERROR: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, FRAME_SIZE_ERROR: 6, REFUSED_STREAM: 7, CANCEL: 8, ENHANCE_YOUR_CALM: 11 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

/**
 * An HPACK block without dynamic-table use (so blocks can be sent in any order):
 * :method GET (static 2) or POST (static 3), :scheme http (6), :path (static 4 or a literal
 * value of fewer than 128 bytes), :authority `authority` (literal, static name 1), then
 * literal fields.
 */
export function headerBlock(opts: { path?: string; method?: 'GET' | 'POST'; authority?: string; extra?: Array<[string, string]> } = {}): Buffer {
  const parts: Buffer[] = [Buffer.from([opts.method === 'POST' ? 0x83 : 0x82, 0x86])];
  const path = opts.path ?? '/';
  parts.push(path === '/' ? Buffer.from([0x84]) : Buffer.concat([Buffer.from([0x04, path.length]), Buffer.from(path, 'latin1')]));
  const authority = opts.authority ?? 'x';
  parts.push(Buffer.from([0x01, authority.length]), Buffer.from(authority, 'latin1'));
  for (const [n, v] of opts.extra ?? []) parts.push(Buffer.from([0x00, n.length]), Buffer.from(n, 'latin1'), Buffer.from([v.length]), Buffer.from(v, 'latin1'));
  return Buffer.concat(parts);
}

export function rstStream(stream: number, code: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code, 0);
  return frame(T.RST_STREAM, 0, stream, p);
}

/** The error code of a GOAWAY or RST_STREAM frame. */
export function errorCode(f: Frame): number {
  return f.type === T.GOAWAY ? f.payload.readUInt32BE(4) : f.payload.readUInt32BE(0);
}

/**
 * A raw HTTP/2 client connection (h2c with prior knowledge, or TLS with ALPN h2): the preface
 * and an empty SETTINGS are sent first; every frame received is parsed and kept.
 */
export class RawH2 {
  readonly socket: Socket;
  readonly frames: Frame[] = [];
  closed = false;
  #buf: Buffer = Buffer.alloc(0);
  #waiters = new Set<() => void>();

  constructor(port: number, tls?: { ca: string | Buffer; servername: string }) {
    this.socket = tls === undefined ? netConnect(port, '127.0.0.1') : tlsConnect({ port, host: '127.0.0.1', ca: tls.ca, servername: tls.servername, ALPNProtocols: ['h2'] });
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      this.#notify();
    });
    this.socket.on('data', (c: Buffer) => {
      this.#buf = this.#buf.length === 0 ? c : Buffer.concat([this.#buf, c]);
      while (this.#buf.length >= 9) {
        const len = this.#buf.readUIntBE(0, 3);
        if (this.#buf.length < 9 + len) break;
        this.frames.push({ type: this.#buf[3]!, flags: this.#buf[4]!, stream: this.#buf.readUInt32BE(5) & 0x7fffffff, payload: this.#buf.subarray(9, 9 + len) });
        this.#buf = this.#buf.subarray(9 + len);
      }
      this.#notify();
    });
    this.socket.write(Buffer.concat([PREFACE, frame(T.SETTINGS, 0, 0)]));
  }

  #notify(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Write bytes; resolves when the socket took them (waits for 'drain'), or at once when closed. */
  write(bytes: Buffer): Promise<void> {
    if (this.closed || this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      if (this.socket.write(bytes)) {
        resolve();
        return;
      }
      const done = (): void => {
        this.socket.removeListener('drain', done);
        this.socket.removeListener('close', done);
        resolve();
      };
      this.socket.once('drain', done);
      this.socket.once('close', done);
    });
  }

  /** Wait (bounded) until `cond` holds over the frames received or the connection closed; resolves true when `cond` held. */
  until(cond: (fs: Frame[]) => boolean, timeoutMs: number): Promise<boolean> {
    if (cond(this.frames)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = (): void => {
        if (cond(this.frames)) finish(true);
        else if (this.closed) finish(false);
      };
      const finish = (v: boolean): void => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve(v);
      };
      const timer = setTimeout(() => finish(cond(this.frames)), timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  /** Wait (bounded) for the connection to close; true when it did. */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    await this.until(() => this.closed, timeoutMs);
    return this.closed;
  }

  goaway(): Frame | undefined {
    return this.frames.find((f) => f.type === T.GOAWAY);
  }

  rst(stream: number): Frame | undefined {
    return this.frames.find((f) => f.type === T.RST_STREAM && f.stream === stream);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

import { connect, type Socket } from 'node:net';

/**
 * A raw client connection for protocol tests: write bytes, wait (bounded) for what comes
 * back, keep the connection for a next request.
 */
export class RawConn {
  readonly socket: Socket;
  readonly ready: Promise<void>;
  #chunks: Buffer[] = [];
  #data: Buffer = Buffer.alloc(0);
  #ended = false;
  #waiters = new Set<() => void>();

  constructor(port: number, opts: { host?: string; localAddress?: string } = {}) {
    this.socket = connect({ port, host: opts.host ?? '127.0.0.1', localAddress: opts.localAddress });
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('error', reject);
    });
    this.socket.on('error', () => {
      this.#ended = true;
      this.#notify();
    });
    this.socket.on('data', (d: Buffer) => {
      this.#chunks.push(d);
      this.#data = Buffer.concat(this.#chunks);
      this.#chunks = [this.#data];
      this.#notify();
    });
    this.socket.on('close', () => {
      this.#ended = true;
      this.#notify();
    });
  }

  #notify(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Everything received so far. */
  get data(): Buffer {
    return this.#data;
  }

  get text(): string {
    return this.#data.toString('latin1');
  }

  /** The peer closed (or the socket failed). */
  get ended(): boolean {
    return this.#ended;
  }

  async write(bytes: string | Buffer): Promise<void> {
    await this.ready;
    await new Promise<void>((resolve, reject) => this.socket.write(bytes, (err) => (err ? reject(err) : resolve())));
  }

  /** Wait until `ok(text)` holds; rejects after `timeoutMs` with what was received. */
  waitFor(ok: (text: string, ended: boolean) => boolean, timeoutMs = 3000, what = 'the expected bytes'): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (ok(this.text, this.#ended)) {
          clearTimeout(timer);
          this.#waiters.delete(check);
          resolve(this.text);
        }
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`${what} did not arrive within ${timeoutMs} ms; received ${JSON.stringify(this.text.slice(0, 600))}${this.#ended ? ' (connection closed)' : ''}`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  /** Wait for the peer to close. */
  closed(timeoutMs = 3000): Promise<string> {
    return this.waitFor((_t, ended) => ended, timeoutMs, 'the connection closing');
  }

  /** Forget what was received (before the next request on this connection). */
  clear(): void {
    this.#chunks = [];
    this.#data = Buffer.alloc(0);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** One parsed response head. */
export interface Head {
  status: number;
  /** Lower-case names, values in order (repeated fields kept apart). */
  fields: Array<[string, string]>;
  get(name: string): string | undefined;
  all(name: string): string[];
  /** Offset just past the head's empty line. */
  end: number;
}

/** Parse the response head that starts at `from`; undefined while incomplete. */
export function parseHead(text: string, from = 0): Head | undefined {
  const end = text.indexOf('\r\n\r\n', from);
  if (end < 0) return undefined;
  const lines = text.slice(from, end).split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]!);
  if (!m) throw new Error(`not a status line: ${JSON.stringify(lines[0])}`);
  const fields: Array<[string, string]> = [];
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    fields.push([l.slice(0, c).toLowerCase(), l.slice(c + 1).trim()]);
  }
  return {
    status: Number(m[1]),
    fields,
    get: (n) => fields.find(([k]) => k === n)?.[1],
    all: (n) => fields.filter(([k]) => k === n).map(([, v]) => v),
    end: end + 4,
  };
}

/**
 * Decode a chunked body strictly (plain hex sizes, no extensions, CRLF everywhere) from
 * `from`; returns the data, the trailer fields and where it ended, or throws.
 */
export function decodeChunkedStrict(text: string, from: number): { body: string; trailers: Array<[string, string]>; end: number } {
  let pos = from;
  let body = '';
  for (;;) {
    const nl = text.indexOf('\r\n', pos);
    if (nl < 0) throw new Error(`incomplete chunk size line at ${pos}`);
    const line = text.slice(pos, nl);
    if (!/^[0-9a-fA-F]+$/.test(line)) throw new Error(`chunk size line ${JSON.stringify(line)} is not plain hex`);
    const size = parseInt(line, 16);
    pos = nl + 2;
    if (size === 0) break;
    if (text.length < pos + size + 2) throw new Error('incomplete chunk');
    body += text.slice(pos, pos + size);
    pos += size;
    if (text.slice(pos, pos + 2) !== '\r\n') throw new Error(`chunk data not followed by CRLF at ${pos}`);
    pos += 2;
  }
  const trailers: Array<[string, string]> = [];
  for (;;) {
    const nl = text.indexOf('\r\n', pos);
    if (nl < 0) throw new Error('incomplete trailer section');
    const line = text.slice(pos, nl);
    pos = nl + 2;
    if (line === '') break;
    const c = line.indexOf(':');
    trailers.push([line.slice(0, c).toLowerCase(), line.slice(c + 1).trim()]);
  }
  return { body, trailers, end: pos };
}

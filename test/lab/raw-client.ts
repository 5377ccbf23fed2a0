import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

/** What a raw exchange saw on the wire. */
export interface RawResult {
  /** Every byte received. */
  data: Buffer;
  /** How the connection ended: the peer's FIN, an error (e.g. ECONNRESET), or our own deadline. */
  end: 'closed' | 'error' | 'deadline';
  errorCode?: string;
  /** ms from sending the request to the first byte, if any. */
  firstByteMs?: number;
  /** ms from sending the request to the end. */
  ms: number;
  /** (ms, bytes) per data event, to see pauses on the wire. */
  arrivals: Array<{ ms: number; bytes: number }>;
}

export interface RawOptions {
  port: number;
  host?: string;
  /** Give up (and destroy) after this long; the result's end is then 'deadline'. */
  deadlineMs?: number;
  /** TLS with this CA / name. */
  tls?: { ca?: string; servername?: string; rejectUnauthorized?: boolean };
  /** Stop as soon as the received bytes contain this string (end is then 'deadline' too, with the early stop). */
  until?: string;
}

/** Send `request` bytes, collect everything until the peer closes, errors, or the deadline passes. */
export function rawExchange(request: string | Buffer, opts: RawOptions): Promise<RawResult> {
  const host = opts.host ?? '127.0.0.1';
  const deadlineMs = opts.deadlineMs ?? 2000;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const arrivals: Array<{ ms: number; bytes: number }> = [];
    let t0 = Date.now();
    let firstByteMs: number | undefined;
    let errorCode: string | undefined;
    let settled = false;
    let received = 0;
    const socket: Socket = opts.tls
      ? tlsConnect({ port: opts.port, host, ca: opts.tls.ca, servername: opts.tls.servername, rejectUnauthorized: opts.tls.rejectUnauthorized ?? true }, send)
      : connect(opts.port, host, send);
    function send(): void {
      t0 = Date.now();
      socket.write(request);
    }
    const finish = (end: RawResult['end']): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ data: Buffer.concat(chunks), end, errorCode, firstByteMs, ms: Date.now() - t0, arrivals });
    };
    const timer = setTimeout(() => finish('deadline'), deadlineMs);
    socket.on('data', (d: Buffer) => {
      const ms = Date.now() - t0;
      if (firstByteMs === undefined) firstByteMs = ms;
      chunks.push(d);
      received += d.length;
      arrivals.push({ ms, bytes: d.length });
      if (opts.until !== undefined && received < 1_000_000 && Buffer.concat(chunks).includes(opts.until)) finish('deadline');
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      errorCode = e.code;
      finish('error');
    });
    socket.on('close', () => finish('closed'));
  });
}

/** A minimal GET request. */
export function get(path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: lab\r\n${extra}\r\n`;
}

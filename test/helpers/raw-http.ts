import { Socket, connect } from 'node:net';
import { readResponses, type ReceivedResponse } from './http1-check.js';

/** What one raw exchange saw. */
export interface RawReplay {
  data: Buffer;
  /** How it ended: the peer closed, a socket error, quiet after a complete response, or our deadline. */
  end: 'closed' | 'error' | 'idle' | 'deadline';
  errorCode?: string;
  responses: ReceivedResponse[];
  /** The local address the connection came from. */
  localAddress: string | undefined;
}

export interface RawReplayOptions {
  port: number;
  host?: string;
  /** Bind the client side to this address (e.g. a unique 127.x.y.z per case). */
  localAddress?: string;
  /** Hard cap, default 2000 ms: a case that leaves the connection waiting is cut here. */
  deadlineMs?: number;
  /** Done this long after the last byte once at least one complete final response arrived. Default 150 ms. */
  idleMs?: number;
  /** The request(s) are HEAD: responses carry no body. */
  head?: boolean;
}

/**
 * Send raw bytes over a fresh TCP connection and collect what comes back, bounded in time.
 * The socket is always destroyed at the end.
 */
export function replayRaw(bytes: Buffer | string, opts: RawReplayOptions): Promise<RawReplay> {
  const deadlineMs = opts.deadlineMs ?? 2000;
  const idleMs = opts.idleMs ?? 150;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    let idleTimer: NodeJS.Timeout | undefined;
    let errorCode: string | undefined;
    const socket: Socket = connect({ port: opts.port, host: opts.host ?? '127.0.0.1', localAddress: opts.localAddress }, () => {
      socket.write(bytes);
    });
    const finish = (end: RawReplay['end']): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      clearTimeout(idleTimer);
      const localAddress = socket.localAddress;
      socket.destroy();
      const data = Buffer.concat(chunks);
      resolve({ data, end, errorCode, localAddress, responses: readResponses(data, { closed: end === 'closed' || end === 'error', headRequests: opts.head }) });
    };
    const deadline = setTimeout(() => finish('deadline'), deadlineMs);
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      clearTimeout(idleTimer);
      const rs = readResponses(Buffer.concat(chunks), { closed: false, headRequests: opts.head });
      if (rs.some((r) => r.status >= 200 && r.complete)) idleTimer = setTimeout(() => finish('idle'), idleMs);
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      errorCode = e.code;
      finish('error');
    });
    socket.on('close', () => finish('closed'));
  });
}

/** Run `fn` over `items` with at most `limit` in flight; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      out[i] = await fn(items[i]!, i);
    }
  });
  await Promise.all(workers);
  return out;
}

/**
 * Destroy the sockets of this process whose local port is `port` (the server side of
 * connections to a listener of ours). For test teardown when a server under test leaks
 * connections; returns how many were destroyed.
 */
export function destroySocketsOnPort(port: number): number {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  let n = 0;
  for (const h of handles) {
    if (h instanceof Socket && h.localPort === port && !h.destroyed) {
      h.destroy();
      n++;
    }
  }
  return n;
}

/**
 * The status code of the first answer to `request`, sent on a fresh connection from the local
 * address `from` (a test's own 127.x.y.z source); 0 when the answer has no HTTP/1.1 status line.
 */
export function statusFrom(port: number, from: string, request: string, ms = 20_000): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: from });
    let got = '';
    const timer = setTimeout(() => (s.destroy(), reject(new Error(`no answer on port ${port} within ${ms} ms (from ${from})`))), ms);
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (!got.includes('\r\n\r\n')) return;
      clearTimeout(timer);
      s.destroy();
      resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0));
    });
    s.on('error', (err) => (clearTimeout(timer), reject(err)));
    s.write(request);
  });
}

import { REQUEST_END_CHANNEL } from '../../src/record/index.js';
import { channel, type Channel } from 'node:diagnostics_channel';
import { connect, type Socket } from 'node:net';
import type { Rng } from './mutate.js';

/** How one fuzz connection ended. */
export interface CaseResult {
  data: Buffer;
  /** closed: the server closed; granted: `granted(data)` said a tunnel opened (we closed); deadline: our cap. */
  end: 'closed' | 'granted' | 'deadline' | 'connect-error';
  ms: number;
}

export interface CaseOptions {
  port: number;
  localAddress: string;
  /** Cap for the whole case; a server that neither answers nor closes by then fails the case. */
  deadlineMs: number;
  /** True when the bytes so far show an open tunnel: the case ends there (our side closes). */
  granted?: (data: Buffer) => boolean;
  /** Split the input into up to this many writes (the server must cope with any split). */
  maxWrites?: number;
}

/** Send `bytes` (split at random points) on a fresh connection from `localAddress`, collect the answer. */
export function sendCase(bytes: Buffer, rng: Rng, o: CaseOptions): Promise<CaseResult> {
  const t0 = Date.now();
  const cuts = new Set<number>();
  const writes = 1 + rng.int(o.maxWrites ?? 3);
  for (let k = 1; k < writes && bytes.length > 1; k++) cuts.add(1 + rng.int(bytes.length - 1));
  const pieces: Buffer[] = [];
  let last = 0;
  for (const c of [...cuts].sort((a, b) => a - b)) {
    pieces.push(bytes.subarray(last, c));
    last = c;
  }
  pieces.push(bytes.subarray(last));
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const s: Socket = connect({ port: o.port, host: '127.0.0.1', localAddress: o.localAddress });
    const finish = (end: CaseResult['end']): void => {
      if (settled) return;
      settled = true;
      clearTimeout(cap);
      s.destroy();
      resolve({ data: Buffer.concat(chunks), end, ms: Date.now() - t0 });
    };
    const cap = setTimeout(() => finish('deadline'), o.deadlineMs);
    let connected = false;
    s.on('connect', () => {
      connected = true;
      // Each piece is its own write; the next goes once the previous one left (so splits reach the server as separate reads more often).
      const writeNext = (i: number): void => {
        if (i >= pieces.length || settled || s.destroyed) return;
        if (pieces[i]!.length === 0) return writeNext(i + 1);
        s.write(pieces[i]!, () => setImmediate(() => writeNext(i + 1)));
      };
      writeNext(0);
    });
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      if (o.granted?.(Buffer.concat(chunks))) finish('granted');
    });
    s.on('error', () => finish(connected ? 'closed' : 'connect-error'));
    s.on('close', () => finish('closed'));
  });
}

/** Records published on a diagnostics channel, grouped by client address; a waiter per address. */
export class RecordsByAddress<T extends { clientAddress?: string; face: string }> {
  readonly byAddress = new Map<string, T[]>();
  readonly all: T[] = [];
  readonly #channel: Channel;
  readonly #waiters = new Map<string, () => void>();
  readonly #onMessage = (m: unknown): void => {
    const r = m as T;
    if (r.face !== this.#face) return;
    this.all.push(r);
    const a = plain(r.clientAddress ?? '');
    let list = this.byAddress.get(a);
    if (!list) this.byAddress.set(a, (list = []));
    list.push(r);
    this.#waiters.get(a)?.();
  };

  readonly #face: T['face'];

  /** The records of one face (`reverse` or `forward`) published on the request-end channel. */
  constructor(face: T['face']) {
    this.#face = face;
    this.#channel = channel(REQUEST_END_CHANNEL);
    this.#channel.subscribe(this.#onMessage);
  }

  /** Forget what an address had (before a case reuses it). */
  reset(address: string): void {
    this.byAddress.delete(address);
  }

  /** Wait (bounded) until `address` has at least `n` records; returns what it has. */
  async wait(address: string, n: number, timeoutMs: number): Promise<T[]> {
    const have = (): T[] => this.byAddress.get(address) ?? [];
    if (have().length >= n) return have();
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, timeoutMs);
      const self = this;
      function done(): void {
        clearTimeout(t);
        self.#waiters.delete(address);
        resolve();
      }
      this.#waiters.set(address, () => {
        if (have().length >= n) done();
      });
    });
    return have();
  }

  close(): void {
    this.#channel.unsubscribe(this.#onMessage);
  }
}

export function plain(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/** The bytes' last request head announces more body than follows it (Content-Length or unterminated chunked). */
export function awaitsMoreBody(bytes: Buffer): boolean {
  const text = bytes.toString('latin1');
  let pos = 0;
  for (;;) {
    const end = text.indexOf('\r\n\r\n', pos);
    if (end < 0) return false;
    const head = text.slice(pos, end);
    const rest = text.slice(end + 4);
    const cl = /\r\ncontent-length[ \t]*:[ \t]*(\d+)/i.exec(head);
    if (/\r\ntransfer-encoding[ \t]*:[^\r\n]*chunked/i.test(head)) return !/(^|\r\n)0+(;[^\r\n]*)?\r\n/.test(rest) || !rest.includes('\r\n\r\n');
    if (cl) {
      const n = Number(cl[1]);
      if (n > rest.length) return true;
      pos = end + 4 + n;
      continue;
    }
    pos = end + 4;
  }
}


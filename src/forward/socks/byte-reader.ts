import type { Socket } from 'node:net';
import { timeout, type Timeout } from '../../timing/deadlines.js';

/** Why a handshake read ended without data. */
export type ReadEnd = 'closed' | 'timeout' | 'overflow';

export class HandshakeEnded extends Error {
  readonly reason: ReadEnd;
  readonly code: string;
  /**
   * A timeout that came while the proxy was at work (its password check), not waiting for
   * the client's bytes: the record says the proxy ended it.
   */
  readonly duringProxyWork: boolean;

  constructor(reason: ReadEnd, duringProxyWork = false) {
    super(`handshake ended: ${reason}`);
    this.name = 'HandshakeEnded';
    this.reason = reason;
    this.code = `GATEWISE_HANDSHAKE_${reason.toUpperCase()}`;
    this.duringProxyWork = duringProxyWork;
  }
}

/**
 * Exact-length reads from a socket during a SOCKS handshake, under one deadline for the
 * whole handshake. Bytes that arrive early (a client sending its request, or the first
 * bytes of a TLS hello, before our reply) are kept and handed back by `detach()`.
 *
 * The deadline holds whatever the front is doing: when it passes, the connection is closed
 * then (the socket destroyed), a read waiting rejects, and every later read or
 * `throwIfTimedOut` rejects too, bytes buffered or not. The fronts call `throwIfTimedOut`
 * after their password check and `handshakeRead` before they hand the request on, so a check
 * that outlasted the deadline leads nowhere: no dial, and one record (the front's, for the
 * timeout). Before, the deadline only rejected a read already waiting: a check that outlasted
 * it held the connection open until it answered, and a client that had sent its whole
 * request up front (or a SOCKS4 client, whose request comes before the check) got its tunnel
 * past the deadline (test/forward/socks-handshake-slow-check.test.ts).
 */
export class ByteReader {
  readonly #socket: Socket;
  readonly #maxBuffered: number;
  #chunks: Buffer[] = [];
  #length = 0;
  #waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  #ended: HandshakeEnded | undefined;
  /** The rejection of the proxy's work under way (`during`), which the deadline ends. */
  #work: ((e: Error) => void) | undefined;
  /** Undefined when the handshake has no time limit (`handshake: "0s"`). */
  readonly #timer: Timeout | undefined;
  readonly #onData = (c: Buffer): void => this.#push(c);
  readonly #onEnd = (): void => this.#end('closed');

  constructor(socket: Socket, first: Buffer, opts: { timeoutMs: number; maxBuffered?: number }) {
    this.#socket = socket;
    this.#maxBuffered = opts.maxBuffered ?? 64 * 1024;
    this.#timer = timeout(() => this.#end('timeout'), opts.timeoutMs);
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onEnd);
    this.#push(first);
  }

  #push(c: Buffer): void {
    if (c.length === 0) return;
    this.#chunks.push(c);
    this.#length += c.length;
    if (this.#length > this.#maxBuffered) this.#socket.pause();
    this.#serve();
  }

  #end(reason: ReadEnd): void {
    if (this.#ended) return;
    const w = this.#waiter;
    this.#ended = new HandshakeEnded(reason, reason === 'timeout' && w === undefined);
    this.#timer?.cancel();
    this.#waiter = undefined;
    w?.reject(this.#ended);
    if (reason === 'timeout') {
      // The deadline closes the connection now, not when the front next reads, and ends the
      // proxy's work it waits on (its password check), so the front records it now.
      const work = this.#work;
      this.#work = undefined;
      work?.(this.#ended);
      this.#socket.destroy();
    }
  }

  /**
   * The proxy's own work during the handshake (its password check): its result, or a
   * HandshakeEnded rejection as soon as the deadline passes, the work still under way, so the
   * front refuses and records at the deadline. Before, the front waited for the work to
   * answer: a check queued behind others (scrypt on a few threads) answered seconds after the
   * connection was closed, and the record came then (a fuzz run under load saw no record
   * within 2 s of the close; test/forward/socks-handshake-slow-check.test.ts). The work's
   * later answer is dropped, a failure too (an auth provider down, rejecting after the
   * deadline): the connection's one record is the deadline's, and the late failure is not
   * counted anywhere, deliberately: the gateway keeps no health or metric of its provider
   * beyond the records, and a provider that is down fails the checks that answer within
   * their time, each recorded as its 500 (test/forward/auth-provider-late-failure.test.ts).
   */
  during<T>(work: T | Promise<T>): T | Promise<T> {
    if (!(work instanceof Promise) || this.#timer === undefined) return work;
    if (this.#ended?.reason === 'timeout') return Promise.reject(this.#ended);
    return new Promise<T>((resolve, reject) => {
      this.#work = reject;
      work.then(
        (v) => {
          this.#work = undefined;
          resolve(v);
        },
        (e: unknown) => {
          this.#work = undefined;
          reject(e);
        },
      );
    });
  }

  /** Rejects (throws) once the handshake's deadline has passed: after the proxy's own work (its password check). */
  throwIfTimedOut(): void {
    if (this.#ended?.reason === 'timeout') throw this.#ended;
  }

  /**
   * The handshake has been read and checked: `throwIfTimedOut`, then the deadline stops (what
   * follows, hooks, admission and the dial, has its own limits). The reader stays attached
   * until the responder detaches it.
   */
  handshakeRead(): void {
    this.throwIfTimedOut();
    this.#timer?.cancel();
  }

  #take(n: number): Buffer {
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#length);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length ? [rest] : [];
    this.#length = rest.length;
    if (this.#length <= this.#maxBuffered && this.#socket.isPaused()) this.#socket.resume();
    return out;
  }

  #serve(): void {
    const w = this.#waiter;
    if (w && this.#length >= w.n) {
      this.#waiter = undefined;
      w.resolve(this.#take(w.n));
    }
  }

  /** Exactly `n` bytes, or a HandshakeEnded rejection. */
  read(n: number): Promise<Buffer> {
    if (this.#ended?.reason === 'timeout') return Promise.reject(this.#ended);
    if (this.#length >= n) return Promise.resolve(this.#take(n));
    if (this.#ended) return Promise.reject(this.#ended);
    if (n > this.#maxBuffered) return Promise.reject(new HandshakeEnded('overflow'));
    return new Promise((resolve, reject) => {
      this.#waiter = { n, resolve, reject };
    });
  }

  async byte(): Promise<number> {
    return (await this.read(1))[0]!;
  }

  /** Stop reading; returns the bytes received but not read. The socket is left paused. */
  detach(): Buffer {
    this.#timer?.cancel();
    this.#socket.off('data', this.#onData);
    this.#socket.off('end', this.#onEnd);
    this.#socket.off('close', this.#onEnd);
    this.#socket.pause();
    this.#ended ??= new HandshakeEnded('closed');
    const rest = this.#length ? Buffer.concat(this.#chunks, this.#length) : Buffer.alloc(0);
    this.#chunks = [];
    this.#length = 0;
    return rest;
  }
}

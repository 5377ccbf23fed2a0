import { Worker } from 'node:worker_threads';
import { scryptMemoryFor, type ParsedHash } from './password-hash.js';
import type { ScryptAnswer, ScryptJob } from './scrypt-worker.js';

/** A password-check thread stopped while it held a job (crashed, or closed). */
export class ScryptThreadError extends Error {
  readonly code: string;
  constructor(code: string, message: string, cause?: unknown) {
    super(message, cause !== undefined ? { cause } : undefined);
    this.name = 'ScryptThreadError';
    this.code = code;
  }
}

interface Slot {
  worker: Worker;
  job: { id: number; resolve: (ok: boolean) => void; reject: (err: Error) => void } | undefined;
  /** The uncaught error that is ending the thread, if any. */
  error?: unknown;
}

/**
 * A small fixed set of worker threads that run scrypt, one job per thread at a time.
 * They are started on first use, hold the process open only while they work (an idle
 * thread is unref'd), and end with close().
 *
 * Why not `crypto.scrypt`: it runs on libuv's thread pool (four threads by default),
 * where `dns.lookup` (getaddrinfo) and file system calls wait too, so a flood of wrong
 * passwords used to delay name resolution for everyone.
 */
export class ScryptThreads {
  readonly size: number;
  readonly #slots: Slot[] = [];
  #nextId = 1;
  #closed = false;

  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`scrypt threads: ${size} is not a positive integer`);
    this.size = size;
  }

  /** Threads started and not ended. */
  get threads(): number {
    return this.#slots.length;
  }

  /** Check a password against a stored hash on a free thread (the caller runs at most `size` at once). */
  run(password: string, stored: ParsedHash): Promise<boolean> {
    if (this.#closed) return Promise.reject(new ScryptThreadError('ERR_SCRYPT_THREADS_CLOSED', 'password checks are closed'));
    const slot = this.#slots.find((s) => s.job === undefined) ?? this.#start();
    if (!slot) return Promise.reject(new ScryptThreadError('ERR_SCRYPT_THREADS_BUSY', 'every password-check thread is busy'));
    const id = this.#nextId++;
    const job: ScryptJob = {
      id,
      password,
      // Copies: a small Buffer is a view on Node's shared 8 KiB pool, which would be cloned whole.
      salt: new Uint8Array(stored.salt),
      hash: new Uint8Array(stored.hash),
      N: stored.N,
      r: stored.r,
      p: stored.p,
      maxmem: scryptMemoryFor(stored),
    };
    return new Promise<boolean>((resolve, reject) => {
      slot.job = { id, resolve, reject };
      slot.worker.ref();
      slot.worker.postMessage(job);
    });
  }

  #start(): Slot | undefined {
    if (this.#slots.length >= this.size) return undefined;
    // No execArgv of ours: flags such as --input-type (with -e) would stop the thread at start.
    const worker = new Worker(new URL('./scrypt-worker.js', import.meta.url), { name: 'gatewise-scrypt', execArgv: [] });
    worker.unref();
    const slot: Slot = { worker, job: undefined };
    worker.on('message', (a: ScryptAnswer) => {
      const job = slot.job;
      if (!job || job.id !== a.id) return;
      slot.job = undefined;
      worker.unref();
      if ('ok' in a) job.resolve(a.ok);
      else job.reject(new ScryptThreadError(a.code, `password check failed (${a.code})`));
    });
    // An uncaught error is followed by 'exit'; the job is failed there.
    worker.on('error', (err) => {
      slot.error = err;
    });
    worker.on('exit', (exitCode) => {
      const i = this.#slots.indexOf(slot);
      if (i >= 0) this.#slots.splice(i, 1);
      const job = slot.job;
      slot.job = undefined;
      job?.reject(new ScryptThreadError(this.#closed ? 'ERR_SCRYPT_THREADS_CLOSED' : 'ERR_SCRYPT_THREAD_EXIT', `password-check thread ended (exit code ${exitCode})`, slot.error));
    });
    this.#slots.push(slot);
    return slot;
  }

  /** End every thread; jobs still running fail with ERR_SCRYPT_THREADS_CLOSED. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#slots.map((s) => s.worker.terminate()));
  }
}

import fs from 'node:fs';
import tty from 'node:tty';

/**
 * Where every log line goes: a batched writer of whole lines to a file or a file
 * descriptor. Lines gather in a buffer and go out in one write once `minBytes` have
 * gathered (16 KiB; 32 KiB when written directly, see `direct`), or after `flushMs` at most; `sync` writes each line at once
 * (tests, short-lived commands).
 *
 * Written here rather than using pino's destination (sonic-boom) because of what that
 * cost on the hot path: sonic-boom appends each line to a string and converts the batch
 * when it writes, measured at ~10 µs of CPU per 600-byte line on the benchmark machine,
 * against ~1 µs for encoding the line straight into a buffer (bench/log-writer.ts). In
 * the reverse 1 KiB duel that was most of the access log's cost (default against
 * `--no-access-log`: 0.76×, 0.75×, 0.82×).
 *
 * Lines are never split across writes; a write that the kernel takes partly is finished
 * before the next one starts. When the destination cannot keep up and `maxPendingBytes`
 * are waiting, further lines are dropped and counted (`dropped`); a note saying how many
 * is written once the backlog has gone.
 */
export interface LineWriterOptions {
  /** A path (opened for appending) or a file descriptor; default 1 (standard output). */
  dest?: string | number;
  sync?: boolean;
  minBytes?: number;
  flushMs?: number;
  maxPendingBytes?: number;
  /**
   * Write each batch with a synchronous write(2) on the event loop instead of on libuv's
   * thread pool. Default: yes for a regular file or a character device that is not a
   * terminal (`/dev/null`), where write(2) only copies into the page cache; no for pipes,
   * sockets and terminals, whose reader can make a write wait.
   */
  direct?: boolean;
}

/**
 * Whether batches to `fd` are written on the event loop (see `direct`). Why: an asynchronous
 * fs.write hands every batch to a thread-pool thread, and that handoff (a wake-up and two
 * context switches, on the same core when the process is pinned) cost more than the write
 * itself. Measured in the reverse 1 KiB duel (default against `--no-access-log`, both pinned
 * to one core, log to /dev/null): 5.5 % of the main thread's time sat in fs.write's handoff;
 * a 16 KiB write(2) to a file takes a few µs, once per ~28 lines (nginx writes its access
 * log the same way, synchronously, from its buffer).
 */
function writesDirect(fd: number): boolean {
  try {
    const st = fs.fstatSync(fd);
    return st.isFile() || (st.isCharacterDevice() && !tty.isatty(fd));
  } catch {
    return false;
  }
}

const CHUNK = 64 * 1024;

export class LineWriter {
  #fd: number;
  readonly #path: string | undefined;
  readonly #sync: boolean;
  readonly #direct: boolean;
  readonly #minBytes: number;
  readonly #maxPending: number;
  #buf = Buffer.allocUnsafe(CHUNK);
  #used = 0;
  /** Filled buffers waiting for the write in flight. */
  readonly #queue: Buffer[] = [];
  #queuedBytes = 0;
  #writing = false;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #reopenPending = false;
  #drainWaiters: Array<() => void> = [];
  /** Writers of lines held back (`addSource`), asked for them before any other line and every flush. */
  #sources: Array<() => void> = [];
  #pulling = false;
  /** Lines dropped because the destination could not keep up. */
  dropped = 0;
  #droppedReported = 0;

  constructor(opts: LineWriterOptions = {}) {
    const dest = opts.dest ?? 1;
    this.#path = typeof dest === 'string' ? dest : undefined;
    this.#fd = typeof dest === 'string' ? fs.openSync(dest, 'a') : dest;
    this.#sync = opts.sync ?? false;
    this.#direct = !this.#sync && (opts.direct ?? writesDirect(this.#fd));
    // Direct mode writes from its one 64 KiB buffer at 32 KiB: a write(2) per ~55 reverse
    // lines instead of per ~28. In the reverse 1 KiB duel's profile the 16 KiB batches' writeSync
    // calls took ~0.5 % of the main thread (docs/benchmarks.md §14); lines still go out
    // within `flushMs`.
    this.#minBytes = opts.minBytes ?? (this.#direct ? CHUNK / 2 : 16 * 1024);
    this.#maxPending = opts.maxPendingBytes ?? 16 * 1024 * 1024;
    if (!this.#sync) {
      this.#timer = setInterval(() => this.flush(), opts.flushMs ?? 1000);
      this.#timer.unref();
    }
  }

  /** Whether lines wait in a buffer (not `sync`): a source may hold its lines until the writer flushes. */
  get batching(): boolean {
    return !this.#sync;
  }

  /**
   * A writer of lines that holds them back (the forward access log's records, `AccessLog`):
   * `pull` writes what it holds, and is called before any other line is written and before
   * every flush (the interval's, `flush`, `flushSync`, `end`, `reopen`). So a source's lines
   * keep their own order and come before any line written directly after them; a line that
   * another holder kept back (the reverse access log's batch, written at its `setImmediate`)
   * may come after a forward line made later. Returns a function that removes it.
   */
  addSource(pull: () => void): () => void {
    this.#sources.push(pull);
    return () => {
      const i = this.#sources.indexOf(pull);
      if (i !== -1) this.#sources.splice(i, 1);
    };
  }

  #pull(): void {
    if (this.#pulling) return;
    this.#pulling = true;
    try {
      for (let i = 0; i < this.#sources.length; i++) this.#sources[i]!();
    } finally {
      this.#pulling = false;
    }
  }

  /** Write one or more whole lines (each ending in a newline). */
  write(line: string): boolean {
    if (this.#closed) return false;
    if (this.#sources.length !== 0) this.#pull();
    if (this.#sync) return this.#writeNow(Buffer.from(line));
    // Worst case three bytes per UTF-16 unit; most lines are ASCII and take one.
    if (this.#used + line.length * 3 > this.#buf.length) {
      this.#seal();
      if (line.length * 3 > this.#buf.length) this.#buf = Buffer.allocUnsafe(line.length * 3);
    }
    if (this.#queuedBytes > this.#maxPending) {
      this.dropped++;
      return false;
    }
    this.#used += this.#buf.write(line, this.#used);
    if (this.#used >= this.#minBytes) this.flush();
    return true;
  }

  /** Start writing what has gathered (asynchronously). */
  flush(cb?: (err?: Error) => void): void {
    if (this.#sources.length !== 0) this.#pull();
    this.#seal();
    this.#pump();
    if (cb) {
      if (!this.#writing) queueMicrotask(() => cb());
      else this.#drainWaiters.push(() => cb()); // called once everything queued is written
    }
  }

  /** Write everything now, synchronously (before exit). */
  flushSync(): void {
    if (this.#sources.length !== 0) this.#pull();
    this.#seal();
    // A write in flight holds the buffer before these; the ones queued after it go now.
    // (At exit that write is usually done; if not, its lines may follow these.)
    this.#writeQueuedNow();
  }

  /** Close the file and reopen it by its path (log rotation: after the file was moved). */
  reopen(): void {
    if (this.#path === undefined || this.#closed) return;
    if (this.#writing) {
      // Lines already waiting finish in the old file; the switch happens once they are out.
      if (this.#sources.length !== 0) this.#pull();
      this.#seal();
      this.#reopenPending = true;
      return;
    }
    this.flushSync();
    this.#swapFile();
  }

  #swapFile(): void {
    const old = this.#fd;
    this.#fd = fs.openSync(this.#path!, 'a');
    fs.closeSync(old);
  }

  /** Write what waits, stop the timer and close a file this writer opened. */
  end(): void {
    if (this.#closed) return;
    if (this.#sources.length !== 0) this.#pull();
    this.#closed = true;
    clearInterval(this.#timer);
    if (this.#writing) {
      // The write in flight goes on with the rest, in order, and closes the file after.
      this.#seal();
      return;
    }
    this.flushSync();
    if (this.#path !== undefined) fs.closeSync(this.#fd);
  }

  #seal(): void {
    if (this.#used === 0) return;
    if (this.#direct) {
      this.#writeBufferNow();
      return;
    }
    const full = this.#buf.subarray(0, this.#used);
    this.#queue.push(full);
    this.#queuedBytes += full.length;
    this.#buf = Buffer.allocUnsafe(CHUNK);
    this.#used = 0;
  }

  #pump(): void {
    if (this.#writing || this.#queue.length === 0) return;
    // (After end(), only the lines written before it are left to go.)
    if (this.dropped > this.#droppedReported && this.#queuedBytes < this.#maxPending / 2) {
      const n = this.dropped - this.#droppedReported;
      this.#droppedReported = this.dropped;
      this.#queue.push(droppedNote(n));
    }
    if (this.#direct) {
      this.#writeQueuedNow();
      return;
    }
    const next = this.#queue.length === 1 ? this.#queue[0]! : Buffer.concat(this.#queue.slice(0, 16));
    const taken = this.#queue.length === 1 ? 1 : Math.min(16, this.#queue.length);
    this.#queue.splice(0, taken);
    this.#queuedBytes -= next.length;
    this.#writing = true;
    this.#writeFrom(next, 0);
  }

  /**
   * Direct mode: the batch is written from the buffer it was encoded into, and the buffer
   * is kept for the next batch. Why: a fresh 64 KiB buffer per batch (every ~28 access
   * lines) was 1.4 µs per request of the main thread in the reverse 1 KiB duel's profile,
   * and its external memory made V8 collect more often.
   */
  #writeBufferNow(): void {
    if (this.#queue.length > 0) this.#writeQueuedNow(); // lines sealed before (none in direct mode but a dropped note)
    const used = this.#used;
    this.#used = 0;
    let written = true;
    try {
      writeAllSync(this.#fd, this.#buf, used);
    } catch {
      written = false;
      this.dropped += countLines(this.#buf.subarray(0, used), 0);
    }
    // A line longer than a batch grew the buffer; the next batches go back to the usual size.
    if (this.#buf.length > CHUNK) this.#buf = Buffer.allocUnsafe(CHUNK);
    // Once the destination takes lines again, say how many it lost.
    if (written && this.dropped > this.#droppedReported) {
      try {
        writeAllSync(this.#fd, droppedNote(this.dropped - this.#droppedReported));
        this.#droppedReported = this.dropped;
      } catch {
        // still refusing: told with the next batch that goes through
      }
    }
  }

  /** Every waiting batch, now, in order (direct mode, and the exit path). */
  #writeQueuedNow(): void {
    const q = this.#queue.splice(0);
    this.#queuedBytes = 0;
    for (const b of q) this.#writeNow(b);
  }

  /** A synchronous write; what the destination refuses (a full disk, a closed pipe) is lost and counted, never thrown at the caller. */
  #writeNow(b: Buffer): boolean {
    try {
      writeAllSync(this.#fd, b);
      return true;
    } catch {
      this.dropped += countLines(b, 0);
      return false;
    }
  }

  #writeFrom(b: Buffer, off: number): void {
    fs.write(this.#fd, b, off, b.length - off, null, (err, n) => {
      if (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
          // A non-blocking pipe that is full: try again shortly (a timer, not a spin).
          setTimeout(() => this.#writeFrom(b, off), 10).unref();
          return;
        }
        // The destination is gone (a closed pipe, a full disk): lose this batch, keep serving.
        this.dropped += countLines(b, off);
      } else if (off + n < b.length) {
        this.#writeFrom(b, off + n);
        return;
      }
      this.#writing = false;
      if (this.#queue.length > 0) {
        this.#pump();
        return;
      }
      if (this.#reopenPending && !this.#closed) {
        this.#reopenPending = false;
        this.#swapFile();
      }
      const waiters = this.#drainWaiters;
      this.#drainWaiters = [];
      for (const w of waiters) w();
      if (this.#closed && this.#path !== undefined) fs.close(this.#fd, () => {});
    });
  }
}

function droppedNote(n: number): Buffer {
  return Buffer.from(`{"level":"warn","time":"${new Date().toISOString()}","component":"log","dropped":${n},"msg":"${n} log lines dropped: the log destination did not keep up or refused them"}\n`);
}

/** `b` up to `end` (default its length), all of it. */
function writeAllSync(fd: number, b: Buffer, end = b.length): void {
  let off = 0;
  while (off < end) {
    try {
      off += fs.writeSync(fd, b, off, end - off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue; // a non-blocking pipe: retry until the reader takes it
      throw err;
    }
  }
}

function countLines(b: Buffer, from: number): number {
  let n = 0;
  for (let i = b.indexOf(10, from); i !== -1; i = b.indexOf(10, i + 1)) n++;
  return n;
}

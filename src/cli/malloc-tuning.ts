import { MessageChannel } from 'node:worker_threads';
import zlib from 'node:zlib';

let tuned = false;

/**
 * Keep glibc's malloc from handing the heap's top back to the kernel after every GC, which
 * made a large stream pay a page fault per 4 KiB it relayed.
 *
 * Why: every socket read allocates a fresh 64 KiB buffer (malloc, main arena). V8 frees them in
 * batches of ~64 MB (a GC on "external memory pressure"); the freed top of the heap exceeds glibc's
 * trim threshold (128 KiB by default) and is returned with brk(), so the next reads fault the
 * same pages in again, zero-filled. Measured on a 1 GiB download through `gatewise proxy`
 * (bench/stream.ts, proxy pinned to one core): ~200,000 minor faults per GiB and 1.3–1.9 s of
 * system CPU, against ~300 faults and 0.6–0.65 s with the threshold raised (upload: 1.2–1.35 s
 * → 0.47–0.48 s); nginx spends 1.0–1.3 s (download) and 0.65–0.77 s (upload) in all.
 *
 * How: glibc has no switch a running process can reach (MALLOC_TRIM_THRESHOLD_ is read at
 * start), but it raises the threshold by itself ("dynamic mmap threshold") when a chunk that
 * was mmap()ed is freed: mmap threshold = that chunk's size (at most 32 MiB), trim threshold =
 * twice that. One synchronous Brotli call with a 15 MiB input allocates and frees a ~31.5 MiB
 * ring buffer, so the trim threshold becomes ~63 MiB (64 MiB measured: as good as 256 MiB).
 * It costs ~10 ms and a transient ~31.5 MiB once per process; on musl it is a harmless Brotli
 * call (not made off Linux). The price: up to ~63 MiB that a burst freed may stay mapped to the
 * process instead of going back to the kernel. Skipped when the operator set the variable.
 *
 * The 15 MiB input is released as soon as the call returns, not at V8's next collection: Brotli
 * reads every page of it, so it was resident, and an idle gateway may not collect for a long
 * time (~15 MiB of the idle RSS: 104 → 89 MiB for `gatewise proxy`, docs/benchmarks.md §25).
 * JavaScript cannot free a buffer, but transferring its ArrayBuffer into a message that is never
 * received hands the memory to that message, and closing the channel drops it (an unused
 * `MessageChannel`: nothing leaves the process). Resolves once the input is gone.
 */
export function raiseMallocTrimThreshold(): Promise<void> {
  if (tuned || process.platform !== 'linux') return Promise.resolve();
  tuned = true;
  if (process.env.MALLOC_TRIM_THRESHOLD_ !== undefined || process.env.MALLOC_TOP_PAD_ !== undefined) return Promise.resolve();
  // Not zero-filled: its content does not matter, and a larger-than-pool buffer owns its
  // ArrayBuffer whole, so it can be transferred.
  const input = Buffer.allocUnsafe(15 * 2 ** 20);
  zlib.brotliCompressSync(input, {
    params: { [zlib.constants.BROTLI_PARAM_LGWIN]: 24, [zlib.constants.BROTLI_PARAM_QUALITY]: 0 },
  });
  const { port1, port2 } = new MessageChannel();
  const released = new Promise<void>((resolve) => port2.once('close', () => resolve()));
  try {
    port1.postMessage(input.buffer, [input.buffer]);
  } catch {
    // Not transferable (a Node that marks it so): freed at the next collection, as before.
  }
  port1.close();
  port2.close(); // drops the undelivered message, and with it the memory
  return released;
}

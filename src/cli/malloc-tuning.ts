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
 * It costs ~10 ms and a transient 15 MiB once per process; on musl it is a harmless Brotli call
 * (not made off Linux). The price: up to ~63 MiB that a burst freed may stay mapped to the
 * process instead of going back to the kernel. Skipped when the operator set the variable.
 */
export function raiseMallocTrimThreshold(): void {
  if (tuned || process.platform !== 'linux') return;
  tuned = true;
  if (process.env.MALLOC_TRIM_THRESHOLD_ !== undefined || process.env.MALLOC_TOP_PAD_ !== undefined) return;
  zlib.brotliCompressSync(Buffer.alloc(15 * 2 ** 20), {
    params: { [zlib.constants.BROTLI_PARAM_LGWIN]: 24, [zlib.constants.BROTLI_PARAM_QUALITY]: 0 },
  });
}

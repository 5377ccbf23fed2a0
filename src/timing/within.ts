import { DeadlineEntry, deadlines } from './deadlines.js';

/** How long asynchronous request hooks may take by default (the reverse gateway's and the forward proxy's `hookTimeoutMs`). */
export const DEFAULT_HOOK_TIMEOUT_MS = 10_000;

/**
 * `p`, or `timedOut()`'s value once `ms` have passed without `p` settling (`ms` ≤ 0: `p`
 * itself, unbounded). What `p` does later is ignored. For work the gateway waits on but does
 * not own, such as an asynchronous hook calling an outside service: without a bound, one that
 * never settles held its request, its client connection and the graceful drain for ever (the
 * reverse gateway's `onRequest`, the forward proxy's `authorize`). Timed on the process
 * deadline list (./deadlines.ts), like every other wait of a request.
 */
export function within<T>(p: Promise<T>, ms: number, timedOut: () => T): Promise<T> {
  if (!(ms > 0)) return p;
  return new Promise<T>((resolve, reject) => {
    const w = new Within(() => resolve(timedOut()));
    deadlines.add(w, performance.now(), ms);
    p.then(
      (v) => {
        if (w.settle()) resolve(v);
      },
      (err: unknown) => {
        if (w.settle()) reject(err);
      },
    );
  });
}

class Within extends DeadlineEntry {
  #done = false;
  readonly #expire: () => void;

  constructor(expire: () => void) {
    super();
    this.#expire = expire;
  }

  /** The promise settled: true when in time (the deadline is taken out). */
  settle(): boolean {
    if (this.#done) return false;
    this.#done = true;
    deadlines.remove(this);
    return true;
  }

  deadlineReached(): void {
    if (this.#done) return;
    this.#done = true;
    this.#expire();
  }
}

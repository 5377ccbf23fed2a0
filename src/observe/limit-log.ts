import type { Logger } from 'pino';
import type { LimitCause, LimitEvent } from '../upstream/admission.js';

/** Changes of one cluster's limit since its last line. */
interface Pending {
  /** The limit the last line left it at. */
  from: number;
  to: number;
  min: number;
  max: number;
  changes: number;
  causes: Map<LimitCause, number>;
  reason: string;
}

interface ClusterState {
  lastLineAt: number;
  pending: Pending | undefined;
  timer: NodeJS.Timeout | undefined;
}

/**
 * The log lines of adaptive concurrency limit changes (`gatewise:upstream:limit`), at most
 * one per cluster per `intervalMs`. A busy AIMD limit moves every limit-many requests (many
 * times a second under load): a line per change would flood the log and say less. So the
 * first change after a quiet interval is a line at once (old → new, why); changes within
 * the interval after it are gathered and written as one summary line when it ends
 * (first → last, how many changes, lowest and highest, the causes counted, the last reason).
 */
export class LimitLog {
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #clusters = new Map<string, ClusterState>();

  constructor(logger: Logger, intervalMs = 5000) {
    this.#logger = logger;
    this.#intervalMs = intervalMs;
  }

  readonly onEvent = (msg: unknown): void => {
    const e = msg as LimitEvent;
    const name = e.cluster ?? '';
    let st = this.#clusters.get(name);
    if (st === undefined) this.#clusters.set(name, (st = { lastLineAt: -Infinity, pending: undefined, timer: undefined }));
    const now = performance.now();
    if (st.pending === undefined && now - st.lastLineAt >= this.#intervalMs) {
      st.lastLineAt = now;
      this.#write(name, { from: e.previous, to: e.limit, min: e.limit, max: e.limit, changes: 1, causes: new Map([[e.cause, 1]]), reason: e.reason });
      return;
    }
    const p = (st.pending ??= { from: e.previous, to: e.limit, min: e.limit, max: e.limit, changes: 0, causes: new Map(), reason: e.reason });
    p.to = e.limit;
    if (e.limit < p.min) p.min = e.limit;
    if (e.limit > p.max) p.max = e.limit;
    p.changes++;
    p.causes.set(e.cause, (p.causes.get(e.cause) ?? 0) + 1);
    p.reason = e.reason;
    if (st.timer === undefined) {
      const state = st;
      state.timer = setTimeout(() => this.#flushCluster(name, state), Math.max(1, st.lastLineAt + this.#intervalMs - now));
      state.timer.unref();
    }
  };

  #flushCluster(name: string, st: ClusterState): void {
    st.timer = undefined;
    const p = st.pending;
    if (p === undefined) return;
    st.pending = undefined;
    st.lastLineAt = performance.now();
    this.#write(name, p);
  }

  #write(cluster: string, p: Pending): void {
    const causes = Object.fromEntries(p.causes);
    const fields = { component: 'upstream', type: 'limit', cluster, from: p.from, to: p.to, changes: p.changes, min: p.min, max: p.max, causes, reason: p.reason };
    const where = cluster ? `cluster ${cluster}` : 'a cluster';
    const text =
      p.changes === 1
        ? `concurrency limit of ${where} ${p.from} → ${p.to}: ${p.reason}`
        : `concurrency limit of ${where} ${p.from} → ${p.to} in ${p.changes} changes (between ${p.min} and ${p.max}); last: ${p.reason}`;
    if (p.to < p.from) this.#logger.warn(fields, text);
    else this.#logger.info(fields, text);
    this.#logger.flush();
  }

  /** Write what is gathered now and stop the timers. */
  close(): void {
    for (const [name, st] of this.#clusters) {
      if (st.timer !== undefined) clearTimeout(st.timer);
      this.#flushCluster(name, st);
    }
  }
}

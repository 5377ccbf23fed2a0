import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { REQUEST_END_CHANNEL, type RequestRecord, type ReverseRecord } from '../../src/record/index.js';

/** The records the gateway publishes as requests end (its diagnostics channel), and a wait for one. */
export function endedRecords() {
  const seen: ReverseRecord[] = [];
  const waiters: Array<{ pred: (r: ReverseRecord) => boolean; resolve: (r: ReverseRecord) => void }> = [];
  const on = (m: unknown): void => {
    const r = m as RequestRecord;
    if (r.face !== 'reverse') return;
    seen.push(r);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]!.pred(r)) {
        waiters[i]!.resolve(r);
        waiters.splice(i, 1);
      }
    }
  };
  subscribe(REQUEST_END_CHANNEL, on);
  return {
    /** The record `pred` picks: one already published, or the next one. */
    wait(pred: (r: ReverseRecord) => boolean): Promise<ReverseRecord> {
      const r = seen.find(pred);
      if (r !== undefined) return Promise.resolve(r);
      return new Promise((resolve) => waiters.push({ pred, resolve }));
    },
    /** The records published so far that `pred` picks (a count of what happened, not a wait). */
    matching(pred: (r: ReverseRecord) => boolean): ReverseRecord[] {
      return seen.filter(pred);
    },
    close: () => unsubscribe(REQUEST_END_CHANNEL, on),
  };
}

/** Wait for `p`, or fail after `ms` saying what did not come (the test ends instead of hanging). */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

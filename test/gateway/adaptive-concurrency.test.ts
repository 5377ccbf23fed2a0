import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Agent, request } from 'undici';
import { startLab, type Lab } from '../../src/lab/index.js';
import { LIMIT_CHANNEL, type LimitEvent } from '../../src/upstream/admission.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

/**
 * The adaptive concurrency limit end to end (issue 15, left from the first pass): real
 * traffic through the gateway to the lab; the lab's service time (`/work?ms=N`) goes up,
 * the limit must come down; it goes back down, the limit must rise again. The test waits
 * on the limit's own change events (`gatewise:upstream:limit`), never on a sleep.
 *
 * The service times are large against what a loaded machine adds to a request's round trip
 * (the client, the gateway and the lab share this process, and CI runs the suite at a load
 * of ~20 on 2 cores). They were 5 ms and 150 ms: a few milliseconds of work against tens of
 * milliseconds of scheduling noise, so the gradient limit, which compares each window's
 * round trip with the lowest seen, read the machine's noise as a slow upstream and would not
 * rise again (`limit × noLoad/rtt + √limit` grows at a limit of 14 only while the round trip
 * stays within ~1.36× the lowest; at 5 ms that is 2 ms of noise, at 400 ms ~140 ms). The
 * ratio of slow to fast is unchanged in kind (4×, the gradient's floor of 0.5 reached either
 * way) and the aimd target sits between them, so each limit still has to fall when the lab
 * slows and rise when it recovers.
 */
const FAST_MS = 400;
const SLOW_MS = 1600;
/** aimd's target: between the two service times, far from each (the fast one plus the noise of a loaded machine stays under it). */
const TARGET_MS = 1000;

const opened: Array<{ close(): Promise<void> }> = [];
after(async () => {
  for (const o of opened.reverse()) await o.close();
});

/** Resolves with the first limit event of `cluster` that satisfies `pred`; rejects after `guardMs` (a failure, not a synchronisation). */
function limitEvent(cluster: string, pred: (e: LimitEvent) => boolean, guardMs: number, what: string): Promise<LimitEvent> {
  return new Promise((resolve, reject) => {
    const seen: number[] = [];
    const on = (m: unknown): void => {
      const e = m as LimitEvent;
      if (e.cluster !== cluster) return;
      seen.push(e.limit);
      if (!pred(e)) return;
      done();
      resolve(e);
    };
    const guard = setTimeout(() => {
      done();
      reject(new Error(`${what}: not within ${guardMs} ms; limits seen: ${seen.join(' ') || 'none'}`));
    }, guardMs);
    const done = (): void => {
      clearTimeout(guard);
      unsubscribe(LIMIT_CHANNEL, on);
    };
    subscribe(LIMIT_CHANNEL, on);
  });
}

/** Load: `n` clients in loops on the lab's /work with the service time `ms()` says now, until stopped. */
function load(gw: TestGateway, n: number, ms: () => number): { stop(): Promise<Map<number, number>> } {
  const client = new Agent({ connections: n });
  const statuses = new Map<number, number>();
  let stopped = false;
  const loops = Array.from({ length: n }, async () => {
    while (!stopped) {
      const res = await request(`${gw.url}/work?ms=${ms()}`, { dispatcher: client });
      await res.body.text();
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
    }
  });
  return {
    async stop() {
      stopped = true;
      await Promise.all(loops);
      await client.close();
      return statuses;
    },
  };
}

describe('adaptive concurrency against the lab (issue 15)', () => {
  for (const kind of ['aimd', 'gradient'] as const) {
    test(`${kind}: the limit drops when the lab slows and rises again when it recovers`, { timeout: 120_000 }, async () => {
      const lab: Lab = await startLab({ capacity: 200, queue: 1000 });
      opened.push(lab);
      const cluster = `adaptive-${kind}`;
      const gw = await startTestGateway({
        clusters: {
          [cluster]: {
            endpoints: [lab.url],
            // The queue timeout is past any queueing here (32 clients at a limit of a few, 1.6 s each), so every request is served.
            limits: { adaptive: { kind, min: 2, max: 64, initial: 24, targetLatency: `${TARGET_MS}ms` }, maxQueued: 500, queueTimeout: '120s' },
          },
        },
        routes: [{ cluster, retry: { tries: 1 } }],
      });
      opened.push(gw);
      const admission = gw.gw.ctx.clusters.get(cluster)!.admission!;
      let serviceMs = FAST_MS;
      const running = load(gw, 32, () => serviceMs);
      try {
        // Slow: every request now takes SLOW_MS at the lab.
        serviceMs = SLOW_MS;
        const before = admission.limit;
        const low = await limitEvent(cluster, (e) => e.limit <= before * 0.6, 40_000, `${kind} limit falls from ${before} as the lab slows`);
        // Recovered: fast again; the limit must climb back.
        serviceMs = FAST_MS;
        const floor = admission.limit;
        const high = await limitEvent(cluster, (e) => e.limit >= floor + 4, 40_000, `${kind} limit rises from ${floor} as the lab recovers`);
        console.log(`${kind}: limit ${before} → ${low.limit} (lab at ${SLOW_MS} ms, last sample ${Math.round(low.latencyMs)} ms) → ${high.limit} (lab at ${FAST_MS} ms again, from ${floor})`);
        assert.ok(high.limit > low.limit);
      } finally {
        const statuses = await running.stop();
        assert.deepEqual([...statuses.keys()].filter((s) => s !== 200), [], `every request served: ${JSON.stringify([...statuses])}`);
      }
    });
  }
});

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
 */

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
    test(`${kind}: the limit drops when the lab slows and rises again when it recovers`, async () => {
      const lab: Lab = await startLab({ capacity: 200, queue: 1000 });
      opened.push(lab);
      const cluster = `adaptive-${kind}`;
      const gw = await startTestGateway({
        clusters: {
          [cluster]: {
            endpoints: [lab.url],
            limits: { adaptive: { kind, min: 2, max: 64, initial: 24, targetLatency: '60ms' }, maxQueued: 500, queueTimeout: '10s' },
          },
        },
        routes: [{ cluster, retry: { tries: 1 } }],
      });
      opened.push(gw);
      const admission = gw.gw.ctx.clusters.get(cluster)!.admission!;
      let serviceMs = 5;
      const running = load(gw, 32, () => serviceMs);
      try {
        // Slow: every request now takes 150 ms at the lab.
        serviceMs = 150;
        const before = admission.limit;
        const low = await limitEvent(cluster, (e) => e.limit <= before * 0.6, 40_000, `${kind} limit falls from ${before} as the lab slows`);
        // Recovered: fast again; the limit must climb back.
        serviceMs = 5;
        const floor = admission.limit;
        const high = await limitEvent(cluster, (e) => e.limit >= floor + 4, 40_000, `${kind} limit rises from ${floor} as the lab recovers`);
        console.log(`${kind}: limit ${before} → ${low.limit} (lab at 150 ms, last sample ${Math.round(low.latencyMs)} ms) → ${high.limit} (lab at 5 ms again, from ${floor})`);
        assert.ok(high.limit > low.limit);
      } finally {
        const statuses = await running.stop();
        assert.deepEqual([...statuses.keys()].filter((s) => s !== 200), [], `every request served: ${JSON.stringify([...statuses])}`);
      }
    });
  }
});

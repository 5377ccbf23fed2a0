import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Admission, QueueTimeoutError } from '../../src/upstream/admission.js';

function waiting(r: Promise<void> | 'full'): Promise<void> {
  assert.notEqual(r, 'full');
  return r as Promise<void>;
}

describe('admission: fixed limit and queue', () => {
  test('never more than the limit in flight', async () => {
    const adm = new Admission({ maxConcurrent: 3, maxQueued: 100, queueTimeoutMs: 5000 });
    let running = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        await waiting(adm.acquire());
        running++;
        peak = Math.max(peak, running);
        assert.ok(adm.inflight <= 3);
        await sleep(1 + (i % 4));
        running--;
        adm.release(1, false);
      }),
    );
    assert.equal(peak, 3);
    assert.equal(adm.inflight, 0);
    assert.equal(adm.queued, 0);
  });

  test('the queue is FIFO and tryAcquire does not jump it', async () => {
    const adm = new Admission({ maxConcurrent: 1, maxQueued: 10, queueTimeoutMs: 5000 });
    assert.equal(adm.tryAcquire(), true);
    assert.equal(adm.tryAcquire(), false);
    const order: number[] = [];
    const all = [0, 1, 2, 3, 4].map((i) => waiting(adm.acquire()).then(() => order.push(i)));
    assert.equal(adm.queued, 5);
    for (let i = 0; i < 5; i++) {
      adm.release(1, false);
      assert.equal(adm.tryAcquire(), false, 'the freed slot went to a waiter');
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(all);
    assert.deepEqual(order, [0, 1, 2, 3, 4]);
    assert.equal(adm.inflight, 1);
  });

  test("'full' comes back synchronously when the queue is full, and a free slot resolves at once", async () => {
    const adm = new Admission({ maxConcurrent: 1, maxQueued: 2, queueTimeoutMs: 5000 });
    await waiting(adm.acquire());
    const a = adm.acquire();
    const b = adm.acquire();
    assert.ok(a instanceof Promise && b instanceof Promise);
    assert.equal(adm.acquire(), 'full');
    assert.equal(adm.queued, 2);
    adm.release(1, false);
    adm.release(1, false);
    adm.release(1, false);
    await Promise.all([a, b]);
    assert.equal(adm.inflight, 0);
  });

  test('a queued request times out with QueueTimeoutError; later ones keep their own deadline', async () => {
    const adm = new Admission({ maxConcurrent: 1, maxQueued: 10, queueTimeoutMs: 60 });
    assert.equal(adm.tryAcquire(), true);
    const t0 = performance.now();
    const first = waiting(adm.acquire());
    await sleep(30);
    const second = waiting(adm.acquire());
    await assert.rejects(first, (err: unknown) => err instanceof QueueTimeoutError && err.code === 'GATEWISE_QUEUE_TIMEOUT');
    const t1 = performance.now() - t0;
    assert.ok(t1 >= 55 && t1 < 300, `first timed out after ${t1} ms`);
    assert.equal(adm.queued, 1, 'the second is still waiting');
    await assert.rejects(second, QueueTimeoutError);
    const t2 = performance.now() - t0;
    assert.ok(t2 >= 85 && t2 < 400, `second timed out after ${t2} ms`);
    assert.equal(adm.queued, 0);
    assert.equal(adm.inflight, 1, 'timeouts never take a slot');
  });

  test('an aborted waiter leaves the queue; the slot goes to the next one', async () => {
    const adm = new Admission({ maxConcurrent: 1, maxQueued: 10, queueTimeoutMs: 5000 });
    assert.equal(adm.tryAcquire(), true);
    const ac = new AbortController();
    const aborted = waiting(adm.acquire(ac.signal));
    const next = waiting(adm.acquire());
    ac.abort(new Error('client left'));
    await assert.rejects(aborted, /client left/);
    assert.equal(adm.queued, 1);
    adm.release(1, false);
    await next;
    assert.equal(adm.inflight, 1);
    assert.equal(adm.queued, 0);
    await assert.rejects(waiting(adm.acquire(ac.signal)), /client left/, 'an already aborted signal');
  });

  test('no limit configured: everything is admitted at once', () => {
    const adm = new Admission({ maxConcurrent: undefined, maxQueued: 0, queueTimeoutMs: 1000 });
    assert.equal(adm.limit, Infinity);
    for (let i = 0; i < 1000; i++) assert.equal(adm.tryAcquire(), true);
  });
});

describe('admission: adaptive limits', () => {
  test('aimd: drops cut the limit by 10%, once per limit-many samples; successes under load grow it by one per window', () => {
    const adm = new Admission({ maxConcurrent: undefined, maxQueued: 0, queueTimeoutMs: 1000, adaptive: { kind: 'aimd', min: 2, max: 100, initial: 20, targetLatencyMs: 100 } });
    for (let i = 0; i < 20; i++) assert.equal(adm.tryAcquire(), true);
    assert.equal(adm.tryAcquire(), false);
    adm.release(500, false); // over target
    assert.equal(adm.limit, 18);
    for (let i = 0; i < 5; i++) adm.release(10, true); // same congestion episode
    assert.equal(adm.limit, 18);
    assert.equal(adm.inflight, 14);
    // Idle-ish successes (inflight < limit/2 after cooldown) do not grow it.
    for (let i = 0; i < 14; i++) adm.release(10, false);
    assert.equal(adm.limit, 18);
    for (let i = 0; i < 18; i++) assert.equal(adm.tryAcquire(), true);
    for (let i = 0; i < 18; i++) {
      adm.release(10, false);
      adm.tryAcquire();
    }
    assert.equal(adm.limit, 19);
    assert.equal(adm.limit <= 100 && adm.limit >= 2, true);
  });

  test('maxConcurrent caps an adaptive limit', () => {
    const adm = new Admission({ maxConcurrent: 4, maxQueued: 0, queueTimeoutMs: 1000, adaptive: { kind: 'gradient', min: 1, max: 100, initial: 50 } });
    assert.equal(adm.limit, 4);
  });

  /**
   * A server with N workers: up to N requests take `BASE` ms; beyond that they queue inside it
   * and latency grows in proportion (BASE × inflight / N). Many closed-loop clients push as hard
   * as the limit lets them. Timers drive it, latencies reported are the simulated ones.
   */
  async function simulate(kind: 'aimd' | 'gradient', initial: number): Promise<{ limits: number[]; peakOver: number }> {
    const N = 20;
    const BASE = 5;
    const adm = new Admission({ maxConcurrent: undefined, maxQueued: 1000, queueTimeoutMs: 10_000, adaptive: { kind, min: 1, max: 400, initial, targetLatencyMs: BASE * 1.5 } });
    let serverInflight = 0;
    let stop = false;
    const limits: number[] = [];
    const t0 = performance.now();
    const RUN_MS = 1500;
    const sampler = setInterval(() => {
      if (performance.now() - t0 > RUN_MS / 2) limits.push(adm.limit);
    }, 10);
    const client = async (): Promise<void> => {
      while (!stop) {
        const r = adm.acquire();
        if (r === 'full') {
          await sleep(1);
          continue;
        }
        await r;
        serverInflight++;
        const latency = BASE * Math.max(1, serverInflight / N);
        await sleep(latency);
        serverInflight--;
        adm.release(latency, false);
      }
    };
    const clients = Array.from({ length: 8 * N }, client);
    await sleep(RUN_MS);
    stop = true;
    clearInterval(sampler);
    await Promise.all(clients);
    return { limits, peakOver: N };
  }

  for (const kind of ['aimd', 'gradient'] as const) {
    for (const initial of [5, 150]) {
      test(`${kind} finds the capacity of a server with 20 workers (starting at ${initial})`, async () => {
        const { limits, peakOver: N } = await simulate(kind, initial);
        const mean = limits.reduce((a, b) => a + b, 0) / limits.length;
        assert.ok(limits.length > 20);
        assert.ok(mean >= 0.5 * N && mean <= 2 * N, `${kind}: mean limit ${mean.toFixed(1)} (samples ${limits.slice(-10)})`);
        for (const l of limits) assert.ok(l >= 0.5 * N && l <= 2 * N, `${kind}: limit ${l} in the second half`);
      });
    }
  }
});

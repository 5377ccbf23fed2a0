import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GatewiseProcess, processOf } from '../helpers/gatewise-process.js';
import { freePort } from '../helpers/redis.js';
import { proxyGet, whoAmI, type WhoAmI } from '../egress/helpers.js';
import { PASSWORD, PASSWORD2, USER, USER2, userHashes } from '../forward/helpers.js';

/**
 * --workers N without Redis: the workers share the primary's state over IPC, so a plan's
 * rate and a sticky session mean the same at 1 and 2 workers (real processes, real
 * connections, the kernel spreading them over the workers).
 */
describe('--workers 2 shares state through the primary', { timeout: 120_000 }, () => {
  let origin: WhoAmI;
  let dir: string;
  before(async () => {
    origin = await whoAmI();
    dir = mkdtempSync(join(tmpdir(), 'gatewise-workers-'));
  });
  after(async () => {
    await origin.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function config(port: number): Promise<unknown> {
    const [h1, h2] = await userHashes();
    return {
      forward: {
        listeners: [{ address: '127.0.0.1', port, protocols: ['http'] }],
        auth: { users: [{ name: USER, password: h1, plan: 'ten' }, { name: USER2, password: h2 }] },
        plans: { ten: { requestsPerSecond: 10 } },
        rules: { allowPrivate: true },
        egress: { pools: { dc: { addresses: ['127.0.0.2', '127.0.0.3', '127.0.0.4'] } }, defaultPool: 'dc' },
        // A generous budget: this test is about sharing, and the test machine is shared (a loaded
        // primary answers late; degradation has its own tests in redis-store.test.ts).
        state: { timeout: '1s' },
      },
    };
  }

  /** 60 requests of a 10/s plan on fresh connections, 3 ms apart: how many pass, and over how long. */
  async function rateRun(port: number): Promise<{ ok: number; refused: number; elapsedMs: number }> {
    const url = `http://127.0.0.1:${origin.port}/`;
    const t0 = Date.now();
    const all: Array<Promise<number>> = [];
    for (let i = 0; i < 60; i++) {
      all.push(proxyGet(port, url, USER, PASSWORD).then((r) => r.status));
      await new Promise((r) => setTimeout(r, 3));
    }
    const statuses = await Promise.all(all);
    const elapsedMs = Date.now() - t0;
    return { ok: statuses.filter((s) => s === 200).length, refused: statuses.filter((s) => s === 429).length, elapsedMs };
  }

  /** At most this many pass a shared 10/s limit (burst 10) over a window of `elapsedMs`. */
  function sharedAtMost(elapsedMs: number): number {
    return 10 + Math.ceil(elapsedMs / 100) + 1;
  }

  /** One rate run on a fresh process group (and with 2 workers, the sticky-session check). */
  async function oneRun(workers: number): Promise<{ workers: number; ok: number; refused: number; elapsedMs: number; perWorker: number[]; conclusive: boolean }> {
    const port = await freePort();
    const gw = await GatewiseProcess.start(join(dir, `w${workers}.json`), await config(port), { workers });
    try {
      const r = await rateRun(port);
      await gw.waitFor(() => gw.access().filter((l) => l.user === USER).length >= 60, 10_000, '60 access lines');
      const byWorker = new Map<string, number>();
      for (const l of gw.access().filter((l) => l.user === USER)) byWorker.set(processOf(l.requestId), (byWorker.get(processOf(l.requestId)) ?? 0) + 1);
      const perWorker = [...byWorker.values()];
      const unsharedAtLeast = perWorker.reduce((n, taken) => n + Math.min(taken, 10), 0);
      // The primary answered every call within the budget (else the workers counted alone, and said so).
      assert.deepEqual(gw.lines.filter((l) => l.event === 'state-degraded').map((l) => l.reason), [], 'never degraded');
      assert.equal(r.ok + r.refused, 60, `${workers} worker(s): every request answered 200 or 429`);

      if (workers === 2) {
        // Sticky: 24 fresh connections with one session id leave through one exit, served by both workers.
        const exits = new Set<string>();
        for (let i = 0; i < 24; i++) {
          const res = await proxyGet(port, `http://127.0.0.1:${origin.port}/`, `${USER2}-session-w2`, PASSWORD2);
          assert.equal(res.status, 200);
          exits.add(res.body);
        }
        await gw.waitFor(() => gw.access().filter((l) => l.session === 'w2').length >= 24, 10_000, 'session access lines');
        const served = new Set(gw.access().filter((l) => l.session === 'w2').map((l) => processOf(l.requestId)));
        assert.equal(served.size, 2, `both workers served the session (${[...served].join(', ')})`);
        assert.equal(exits.size, 1, `one exit for the session across both workers: ${[...exits].join(', ')}`);
      }
      return { workers, ...r, perWorker, conclusive: unsharedAtLeast > sharedAtMost(r.elapsedMs) };
    } finally {
      assert.equal(await gw.stop(), 0);
    }
  }

  it('a 10/s plan holds across 2 workers (of 60 fresh requests at most the one shared allowance passes, fewer than unshared workers would admit); a sticky session keeps its exit on both workers', async (t) => {
    const results: Array<Awaited<ReturnType<typeof oneRun>>> = [];
    for (const workers of [1, 2]) {
      // A run proves sharing only if it was quick enough (see below); a stalled machine gets two more tries.
      for (let attempt = 1; attempt <= 3; attempt++) {
        const r = await oneRun(workers);
        results.push(r);
        if (workers === 1 || r.conclusive) break;
        console.log(`# 2 workers, run ${attempt}: too slow to tell shared from unshared (${r.ok} passed in ${r.elapsedMs} ms, per worker ${r.perWorker.join('/')}); again`);
      }
    }
    const one = results[0]!;
    const two = results[results.length - 1]!;
    console.log(`# rate 10/s, 60 requests: 1 process ${one.ok} passed in ${one.elapsedMs} ms; 2 workers ${two.ok} passed in ${two.elapsedMs} ms, per worker ${two.perWorker.join('/')}`);
    assert.equal(two.perWorker.length, 2, 'the 60 requests landed on both workers');
    // GCRA with a burst of one second's worth: 10 at once, then one per 100 ms. Every admission
    // happens inside the client's window, so a shared limit lets through at most this, whatever
    // the machine's stalls (sound on a slow machine: a longer window only loosens it).
    for (const r of [one, two]) assert.ok(r.ok >= 10 && r.ok <= sharedAtMost(r.elapsedMs), `${r.workers}: ${r.ok} passed in ${r.elapsedMs} ms`);
    // The proof that the workers share: a worker counting alone admits its first 10 whatever the
    // timing (a fresh cell's burst), so unshared workers let through at least the sum over workers
    // of min(requests it took, 10); a quick run puts that above the shared bound just asserted.
    // (Comparing the two runs' counts, as before, failed on a loaded machine: a stall that bunches
    // one run's admissions changes its count, not the sharing.)
    // A machine too slow for any of three runs to finish inside ~0.9 s cannot tell them apart: said, not passed.
    if (!two.conclusive) t.skip(`3 runs with 2 workers, none quick enough to tell shared from unshared: last ${two.ok} passed in ${two.elapsedMs} ms, per worker ${two.perWorker.join('/')}`);
  });
});

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { SharedState, creditBlock, rateOvershootBound, type AdmitResult, type CreditPolicy } from '../../src/state/index.js';
import { RedisStore } from '../../src/state/redis-store.js';
import { NO_REDIS, TestRedis } from '../helpers/redis.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * Credit blocks (src/state/credit.ts, docs/fleet.md): N nodes (SharedState over one real
 * Redis each) admit one user's requests and tunnels, each node spending up to a block of the
 * user's limits locally. Seeded over block sizes, node counts, limits and request timings:
 * requestsPerSecond is exceeded by at most N × block in any interval, maxConnections never,
 * and spare slots go back to Redis once the user is idle.
 */
const redis = await TestRedis.start();
let prefixN = 0;

interface Node {
  shared: SharedState;
  store: RedisStore;
}

async function nodes(n: number, credit: CreditPolicy, prefix: string): Promise<Node[]> {
  const out: Node[] = [];
  for (let i = 0; i < n; i++) {
    const store = new RedisStore({ url: redis!.url, keyPrefix: prefix });
    assert.ok(await store.connected(10_000), 'connected to the test Redis');
    // A generous budget: a stalled machine must not turn this into the degraded path.
    out.push({ store, shared: new SharedState(store, { backend: 'redis', budgetMs: 10_000, leaseTtlMs: 600, credit, holder: `node${i}` }) });
  }
  return out;
}

async function closeAll(ns: Node[]): Promise<void> {
  for (const n of ns) await n.shared.close();
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('credit blocks across nodes (seeded)', { skip: redis ? false : NO_REDIS, timeout: 240_000 }, () => {
  after(async () => {
    await redis?.stop();
  });

  it('requestsPerSecond: in every interval at most one GCRA cell\'s allowance plus N × block (block 0-16, 1-4 nodes, random arrivals)', async () => {
    await seededRun('credit rate bound', async (rand) => {
      for (let round = 0; round < 5; round++) {
        const n = between(rand, 1, 4);
        const perSecond = between(rand, 20, 120);
        const policy: CreditPolicy = { max: between(rand, 1, 16), share: [0.01, 0.05, 1][between(rand, 0, 2)]! };
        const block = creditBlock(policy, perSecond);
        const ns = await nodes(n, policy, `cr${prefixN++}:`);
        const admitted: number[] = [];
        let maxWait = 0;
        // A small burst (plans use one second's worth; the bound holds for any), so that the
        // allowance of an interval is tight and an overshoot past N × block would show.
        const burst = between(rand, 1, 8);
        const ask = { rate: { key: 'rate:u', perSecond, burst } };
        const record = async (node: Node, k: number): Promise<void> => {
          const t0 = performance.now();
          const rs = await Promise.all(Array.from({ length: k }, () => node.shared.admit(ask)));
          const t1 = performance.now();
          maxWait = Math.max(maxWait, t1 - t0);
          for (const r of rs) if (r.ok) admitted.push(t1);
        };
        try {
          // Phase 1: random arrivals on every node (a few admissions in one event-loop turn,
          // a random gap, now and then a pause and a burst past one block).
          const until = performance.now() + 400;
          await Promise.all(
            ns.map(async (node) => {
              while (performance.now() < until) {
                let k = between(rand, 1, 10);
                if (rand() < 0.2) {
                  await sleep(between(rand, 20, 120));
                  k = block + between(rand, 1, 10);
                }
                await record(node, k);
                await sleep(between(rand, 0, 8));
              }
            }),
          );
          // Phase 2: idle until the cell is full; each node admits one (taking its block while
          // there is room); idle until the cell is full again, each node still holding its spare
          // credit; then every node bursts at once: the worst case of the bound.
          const refill = (): Promise<void> => sleep(Math.ceil(((burst + 1) * 1000) / perSecond) + between(rand, 10, 60));
          await refill();
          for (const node of ns) await record(node, 1);
          await refill();
          await Promise.all(ns.map((node) => record(node, block + burst + between(rand, 1, 10))));
        } finally {
          await closeAll(ns);
        }
        admitted.sort((a, b) => a - b);
        const bound = rateOvershootBound(n, block);
        // Every interval [admitted[i], admitted[j]]: a grant is seen at most maxWait after Redis made it.
        for (let i = 0; i < admitted.length; i++) {
          for (let j = i; j < admitted.length; j++) {
            const span = admitted[j]! - admitted[i]! + maxWait;
            const allowance = burst + Math.ceil((span * perSecond) / 1000) + 1;
            assert.ok(
              j - i + 1 <= allowance + bound,
              `${n} nodes, ${perSecond}/s, burst ${burst}, block ${block}: ${j - i + 1} admitted in ${span.toFixed(1)} ms, allowance ${allowance} + bound ${bound}`,
            );
          }
        }
        assert.ok(admitted.length > 0, 'some admitted');
      }
    });
  });

  it('maxConnections: never more than max open across the nodes, and every spare slot back in Redis once idle (max 1-20, block 0-8, 1-4 nodes)', async () => {
    await seededRun('credit lease bound', async (rand) => {
      for (let round = 0; round < 5; round++) {
        const n = between(rand, 1, 4);
        const max = between(rand, 1, 20);
        const policy: CreditPolicy = { max: between(rand, 1, 8), share: [0.1, 0.5, 1][between(rand, 0, 2)]! };
        const prefix = `cl${prefixN++}:`;
        const ns = await nodes(n, policy, prefix);
        const ask = { leases: [{ key: 'conn:u', max }] };
        let open = 0;
        let most = 0;
        let granted = 0;
        let refused = 0;
        const until = performance.now() + 600;
        const check = new Redis(redis!.url);
        try {
          await Promise.all(
            ns.flatMap((node) =>
              Array.from({ length: between(rand, 1, 8) }, async () => {
                while (performance.now() < until) {
                  const r: AdmitResult = await node.shared.admit(ask);
                  if (!r.ok) {
                    refused++;
                    assert.equal(r.refused, 'lease');
                    await sleep(between(rand, 0, 5));
                    continue;
                  }
                  granted++;
                  open++;
                  most = Math.max(most, open);
                  assert.ok(open <= max, `${n} nodes, max ${max}, block ${creditBlock(policy, max)}: ${open} open`);
                  await sleep(between(rand, 0, 10));
                  open--;
                  r.release();
                }
              }),
            ),
          );
          assert.ok(granted > 0, 'some granted');
          // Idle: within a few heartbeats (every 200 ms) each node gives its spare slots back.
          const deadline = Date.now() + 20_000;
          let held = -1;
          while (Date.now() < deadline) {
            const h = await check.hgetall(`${prefix}lease:conn:u`);
            held = Object.values(h).reduce((a, v) => a + Number(v), 0);
            if (held === 0) break;
            await sleep(50);
          }
          assert.equal(held, 0, `every slot back in Redis once idle (granted ${granted}, refused ${refused}, most open ${most})`);
        } finally {
          check.disconnect();
          await closeAll(ns);
        }
      }
    });
  });

  it('a busy user asks Redis far less than once per admission, and the blocks are bounded by the policy', async () => {
    const prefix = `cb${prefixN++}:`;
    const [node] = await nodes(1, { max: 32, share: 0.02 }, prefix);
    const monitor = new Redis(redis!.url);
    const calls = (await monitor.info('commandstats')).match(/cmdstat_evalsha:calls=(\d+)/);
    const before = Number(calls?.[1] ?? 0);
    try {
      const ask = { rate: { key: 'rate:u', perSecond: 100_000, burst: 100_000 }, leases: [{ key: 'conn:u', max: 10_000 }] };
      let ok = 0;
      for (let wave = 0; wave < 20; wave++) {
        const rs = await Promise.all(Array.from({ length: 10 }, () => node!.shared.admit(ask)));
        for (const r of rs) {
          assert.ok(r.ok, 'admitted');
          ok++;
          r.release();
        }
      }
      assert.equal(ok, 200);
      const after = Number((await monitor.info('commandstats')).match(/cmdstat_evalsha:calls=(\d+)/)?.[1] ?? 0);
      // Block 32 of each: at most one script per 32 admissions, plus the first wave's.
      assert.ok(after - before <= Math.ceil(200 / 32) + 2, `${after - before} scripts for 200 admissions`);
      // What the node holds in Redis is what it has open (0) plus at most one block.
      const h = await monitor.hgetall(`${prefix}lease:conn:u`);
      await sleep(100);
      const held = Number((await monitor.hgetall(`${prefix}lease:conn:u`)).node0 ?? 0);
      assert.ok(held <= 32, `held in Redis ${held} (${JSON.stringify(h)}) ≤ one block`);
    } finally {
      monitor.disconnect();
      await closeAll([node!]);
    }
  });

  it('steady traffic under a block writes the lease hash only while the node gathers its block: a rate refill asks no lease slots the node holds spare (seeded block, concurrency, rounds)', async () => {
    // Found by bench/redis-trips.ts (docs/benchmarks.md, issue 19): each refill of the rate
    // cell asked `n` new lease slots as well, so the releases then trimmed the slots held past
    // the block with a write: two HSETs per refill, for nothing.
    await seededRun('credit lease refill', async (rand) => {
      const b = between(rand, 4, 16);
      const c = between(rand, 1, b);
      const rounds = Math.ceil((6 * b) / c) + between(rand, 0, 10);
      const prefix = `cl${prefixN++}:`;
      const [node] = await nodes(1, { max: b, share: 1 }, prefix);
      const monitor = new Redis(redis!.url);
      const hsets = async (): Promise<number> => Number((await monitor.info('commandstats')).match(/cmdstat_hset:calls=(\d+)/)?.[1] ?? 0);
      try {
        const ask = { rate: { key: 'rate:u', perSecond: 1_000_000, burst: 1_000_000 }, leases: [{ key: 'conn:u', max: 1_000_000 }] };
        // The first round gathers the block (one script) and gives back what it took past it (one release write).
        const first = await Promise.all(Array.from({ length: c }, () => node!.shared.admit(ask)));
        for (const r of first) (r.ok ? r.release : assert.fail)();
        await sleep(60);
        const before = await hsets();
        for (let round = 0; round < rounds; round++) {
          const rs = await Promise.all(Array.from({ length: c }, () => node!.shared.admit(ask)));
          for (const r of rs) assert.ok(r.ok, 'admitted');
          await sleep(between(rand, 0, 3));
          for (const r of rs) if (r.ok) r.release();
        }
        await sleep(60);
        const writes = (await hsets()) - before;
        // Rounds of c ≤ b open at once: the rate cell runs dry every ~b / c rounds; the lease never does.
        assert.equal(writes, 0, `${writes} HSETs of the lease hash over ${rounds} rounds of ${c} (block ${b})`);
        const held = Number((await monitor.hgetall(`${prefix}lease:conn:u`)).node0 ?? 0);
        assert.ok(held <= b, `held in Redis ${held} ≤ one block (${b})`);
      } finally {
        monitor.disconnect();
        await closeAll([node!]);
      }
    });
  });
});

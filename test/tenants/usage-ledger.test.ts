import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryStore } from '../../src/state/index.js';
import { PlanEnforcer, UsageLedger } from '../../src/tenants/index.js';
import { GUARD_MS, LATE_MS } from '../helpers/time-bounds.js';
import { until } from '../helpers/until.js';

const T0 = Date.parse('2026-03-10T23:59:59.000Z');

/** A MemoryStore that counts hincrby calls and can be told to fail the next N of them. */
class CountingStore extends MemoryStore {
  writes = 0;
  failNext = 0;
  override async hincrby(key: string, field: string, n: number, ttlMs?: number): Promise<number> {
    this.writes++;
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('store unreachable');
    }
    return super.hincrby(key, field, n, ttlMs);
  }
}

describe('usage ledger', () => {
  it('gathers counts and writes one increment per field and period', async () => {
    const clock = { t: T0 - 10_000 };
    const store = new CountingStore({ now: () => clock.t });
    const ledger = new UsageLedger(store, () => clock.t, { flushMs: 60_000 });
    for (let i = 0; i < 1000; i++) ledger.add('alice', 'down', 100);
    ledger.add('alice', 'up', 7);
    ledger.add('alice', 'requests', 1);
    assert.equal(store.writes, 0, 'nothing is written per chunk');
    assert.equal(ledger.estimate('alice', 'day', 'down'), 100_000);
    await ledger.flush();
    assert.equal(store.writes, 6, 'up, down and requests, for the day and the month');
    assert.deepEqual(await store.hgetall('usage:alice:day:2026-03-10'), { down: 100_000, up: 7, requests: 1 });
    assert.deepEqual(await store.hgetall('usage:alice:month:2026-03'), { down: 100_000, up: 7, requests: 1 });
    await store.close();
  });

  it('writes within flushMs by itself', async () => {
    const store = new CountingStore();
    const ledger = new UsageLedger(store, Date.now, { flushMs: 30 });
    const t0 = performance.now();
    ledger.add('bob', 'up', 5);
    // The ledger's own timer writes; the store tells of no event, so its write count is polled
    // (bounded by a failure guard; it slept 120 ms, which a loaded machine can overrun), and
    // the write is by the flush time, give or take the lateness of a loaded machine.
    assert.ok(await until(() => store.writes > 0, GUARD_MS), 'the ledger wrote by itself');
    assert.ok(performance.now() - t0 < 30 + LATE_MS, `written ${Math.round(performance.now() - t0)} ms after the count (flushMs 30)`);
    const day = Object.values(await store.keys('usage:bob:day:'));
    assert.equal(day.length, 1);
    assert.deepEqual(await store.hgetall(day[0]!), { up: 5 });
    await store.close();
  });

  it('estimates from the last store total plus what waits, and reports totals that include other nodes', async () => {
    const clock = { t: T0 - 10_000 };
    const store = new MemoryStore({ now: () => clock.t });
    const totals: number[] = [];
    const ledger = new UsageLedger(store, () => clock.t, { flushMs: 60_000, onTotal: (user, span, dir, total) => span.period === 'day' && dir === 'down' && totals.push(total) });
    // Another node already counted 1,000 bytes today.
    await store.hincrby('usage:carol:day:2026-03-10', 'down', 1000);
    const read = await ledger.read('carol', 'day');
    assert.equal(read.down, 1000);
    ledger.add('carol', 'down', 50);
    assert.equal(ledger.estimate('carol', 'day', 'down'), 1050);
    await store.hincrby('usage:carol:day:2026-03-10', 'down', 500); // the other node again
    await ledger.flush();
    assert.deepEqual(totals, [1550]);
    assert.equal(ledger.estimate('carol', 'day', 'down'), 1550);
    await store.close();
  });

  it('writes counts under the day they were made in, also when the day ends before the write', async () => {
    const clock = { t: T0 };
    const store = new MemoryStore({ now: () => clock.t });
    const ledger = new UsageLedger(store, () => clock.t, { flushMs: 60_000 });
    ledger.add('dave', 'down', 10);
    clock.t += 2000; // 2026-03-11 00:00:01
    ledger.add('dave', 'down', 20);
    assert.equal(ledger.estimate('dave', 'day', 'down'), 20, 'a new day starts from what was counted in it');
    await ledger.flush();
    assert.deepEqual(await store.hgetall('usage:dave:day:2026-03-10'), { down: 10 });
    assert.deepEqual(await store.hgetall('usage:dave:day:2026-03-11'), { down: 20 });
    assert.deepEqual(await store.hgetall('usage:dave:month:2026-03'), { down: 30 });
    await store.close();
  });

  it('keeps a count whose write failed for the next write of that period only', async () => {
    const clock = { t: T0 - 10_000 };
    const store = new CountingStore({ now: () => clock.t });
    const ledger = new UsageLedger(store, () => clock.t, { flushMs: 60_000 });
    ledger.add('erin', 'up', 40);
    store.failNext = 1; // the day's write fails, the month's goes through
    await ledger.flush();
    assert.deepEqual(await store.hgetall('usage:erin:day:2026-03-10'), {});
    assert.deepEqual(await store.hgetall('usage:erin:month:2026-03'), { up: 40 });
    assert.equal(ledger.estimate('erin', 'day', 'up'), 40, 'still counted while it waits');
    ledger.add('erin', 'up', 2);
    await ledger.flush();
    assert.deepEqual(await store.hgetall('usage:erin:day:2026-03-10'), { up: 42 });
    assert.deepEqual(await store.hgetall('usage:erin:month:2026-03'), { up: 42 }, 'the month is not counted twice');
    await store.close();
  });
});

describe('plans with the ledger', () => {
  it('blocks at the chunk that crosses a byte quota, before anything is written', async () => {
    const clock = { t: T0 - 10_000 };
    const store = new CountingStore({ now: () => clock.t });
    const plans = new PlanEnforcer(new Map([['small', { bytesPerDay: { down: 1000 } }]]), new Map([['alice', 'small']]), store, () => clock.t);
    assert.equal(await plans.admit('alice'), undefined);
    plans.record('alice', 'down', 600);
    assert.equal(plans.allowBytes('alice', 'down'), undefined);
    plans.record('alice', 'down', 600);
    const refusal = plans.allowBytes('alice', 'down');
    assert.ok(refusal, 'over the quota at once');
    assert.equal(refusal.status, 429);
    assert.match(refusal.detail ?? '', /bytesPerDay\.down limit of 1000 B reached; resets at 2026-03-11T00:00:00\.000Z/);
    assert.equal(plans.allowBytes('alice', 'up'), undefined, 'the other direction is not limited');
    assert.equal(store.writes, 0);
    const again = await plans.admit('alice');
    assert.equal(again?.status, 429);
    await plans.flush();
    assert.deepEqual(await store.hgetall('usage:alice:day:2026-03-10'), { down: 1200, requests: 1 });
    await store.close();
  });

  it("blocks when a write brings back another node's bytes over the quota", async () => {
    const clock = { t: T0 - 10_000 };
    const store = new MemoryStore({ now: () => clock.t });
    const plans = new PlanEnforcer(new Map([['small', { bytesPerMonth: { up: 1000 } }]]), new Map([['bob', 'small']]), store, () => clock.t);
    assert.equal(await plans.admit('bob'), undefined);
    await store.hincrby('usage:bob:month:2026-03', 'up', 990); // another node
    plans.record('bob', 'up', 20);
    assert.equal(plans.allowBytes('bob', 'up'), undefined, 'this node alone is under the quota');
    await plans.flush();
    assert.match(plans.allowBytes('bob', 'up')?.detail ?? '', /bytesPerMonth\.up limit/);
    await store.close();
  });
});

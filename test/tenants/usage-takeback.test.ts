import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { MemoryStore, type Store } from '../../src/state/index.js';
import { RedisStore } from '../../src/state/redis-store.js';
import { UsageLedger } from '../../src/tenants/index.js';
import { between, seededRun } from '../helpers/seeded.js';
import { NO_REDIS, TestRedis } from '../helpers/redis.js';

/**
 * Bytes taken back from the usage (MeterSession.undelivered: counted down, never delivered),
 * through the real ledger over its real stores (review finding, take-back):
 *  - a take-back sticks: the estimate after the write is the store's lowered total (before, the
 *    write's reply was kept as the maximum of it and the old estimate, so the estimate went back
 *    up to the bytes taken back while the store held the lower total);
 *  - it is booked under the period the bytes were counted in, or dropped for a period that
 *    ended since (before, it lowered the NEW period, even below 0: quota given away, while the
 *    old period kept the bytes);
 *  - a period's total never goes below 0 (the store lost its counts, a take-back larger than it).
 * Seeded over the amounts; the period edges with the ledger's injected clock.
 */

const redis = await TestRedis.start();
const stores: Store[] = [];
let prefixN = 0;

async function storesUnder(clock: { t: number }): Promise<Array<[string, Store]>> {
  const out: Array<[string, Store]> = [['memory', new MemoryStore({ now: () => clock.t })]];
  if (redis !== undefined) {
    const r = new RedisStore({ url: redis.url, keyPrefix: `takeback${prefixN++}:` });
    assert.ok(await r.connected(5000), 'redis connected');
    out.push(['redis', r]);
  }
  for (const [, s] of out) stores.push(s);
  return out;
}

after(async () => {
  for (const s of stores) await s.close();
  await redis?.stop();
});

describe('usage ledger: bytes taken back', () => {
  if (redis === undefined) it.skip(`redis cases: ${NO_REDIS}`, () => {});

  it('a take-back sticks after its write: the estimate is the store\'s lowered total (seeded)', async () => {
    await seededRun('ledger take-back sticks', async (rand) => {
      const clock = { t: Date.parse('2026-03-10T12:00:00.000Z') };
      for (const [name, store] of await storesUnder(clock)) {
        for (let i = 0; i < 8; i++) {
          const user = `u${i}`;
          const ledger = new UsageLedger(store, () => clock.t, { flushMs: 60_000 });
          const counted = between(rand, 1, 10_000_000);
          const back = between(rand, 1, counted);
          const what = `${name}: ${counted} counted, ${back} taken back`;
          ledger.add(user, 'down', counted);
          if (rand() < 0.5) await ledger.flush(); // the take-back in its own write, or with the count
          ledger.add(user, 'down', -back, clock.t);
          for (const period of ['day', 'month'] as const) assert.equal(ledger.estimate(user, period, 'down'), counted - back, `${what}: before the write (${period})`);
          await ledger.flush();
          for (const period of ['day', 'month'] as const) {
            assert.equal(ledger.estimate(user, period, 'down'), counted - back, `${what}: after the write (${period})`);
            const span = ledger.span(period);
            assert.equal((await store.hgetall(`usage:${user}:${period}:${span.id}`)).down, counted - back, `${what}: the store (${period})`);
            assert.equal((await ledger.read(user, period)).down, counted - back, `${what}: read back (${period})`);
            assert.equal(ledger.estimate(user, period, 'down'), counted - back, `${what}: after a read (${period})`);
          }
          // More bytes after it: counted on the lowered total.
          const more = between(rand, 1, 100_000);
          ledger.add(user, 'down', more);
          await ledger.flush();
          assert.equal(ledger.estimate(user, 'day', 'down'), counted - back + more, `${what}, then ${more}`);
        }
      }
    });
  });

  it('a take-back after the period ended lowers only a period the bytes were counted in, never below 0 (seeded)', async () => {
    await seededRun('ledger take-back across a period edge', async (rand) => {
      for (const edge of ['day', 'month'] as const) {
        // One second before midnight: 10 March (the day ends), or 31 March (the month ends too).
        const clock = { t: Date.parse(edge === 'day' ? '2026-03-10T23:59:59.000Z' : '2026-03-31T23:59:59.000Z') };
        const t0 = clock.t;
        for (const [name, store] of await storesUnder(clock)) {
          clock.t = t0;
          const ledger = new UsageLedger(store, () => clock.t, { flushMs: 60_000 });
          const user = `edge-${edge}`;
          const counted = between(rand, 1000, 10_000_000);
          const back = between(rand, 1, counted);
          const newer = rand() < 0.5 ? 0 : between(rand, 1, back - 1 > 0 ? back - 1 : 1);
          const what = `${name}, ${edge} edge: ${counted} counted before midnight, ${newer} after, ${back} taken back after`;
          ledger.add(user, 'down', counted);
          if (rand() < 0.5) await ledger.flush();
          const oldDay = ledger.span('day').id;
          const oldMonth = ledger.span('month').id;
          clock.t += 2000; // past midnight
          if (newer > 0) ledger.add(user, 'down', newer);
          ledger.add(user, 'down', -back, t0); // bytes counted before midnight
          await ledger.flush();
          const day = (id: string) => store.hgetall(`usage:${user}:day:${id}`);
          const month = (id: string) => store.hgetall(`usage:${user}:month:${id}`);
          const newDay = ledger.span('day').id;
          const newMonth = ledger.span('month').id;
          assert.notEqual(newDay, oldDay);
          // The new day got none of it: its own bytes only, never less.
          assert.equal((await day(newDay)).down ?? 0, newer, `${what}: the new day`);
          assert.equal(ledger.estimate(user, 'day', 'down'), newer, `${what}: the new day's estimate`);
          // The old day keeps its bytes or has them taken back; never below 0.
          const old = (await day(oldDay)).down ?? 0;
          assert.ok(old === counted || old === counted - back, `${what}: the old day holds ${old}`);
          if (edge === 'month') {
            assert.notEqual(newMonth, oldMonth);
            assert.equal((await month(newMonth)).down ?? 0, newer, `${what}: the new month`);
            assert.equal(ledger.estimate(user, 'month', 'down'), newer, `${what}: the new month's estimate`);
          } else {
            assert.equal(newMonth, oldMonth);
            // Same month: the bytes were counted in it, so it is taken back from it.
            assert.equal((await month(newMonth)).down, counted + newer - back, `${what}: the month`);
            assert.equal(ledger.estimate(user, 'month', 'down'), counted + newer - back, `${what}: the month's estimate`);
          }
        }
      }
    });
  });

  it('a take-back larger than the store holds leaves the period at 0, not below (seeded)', async () => {
    await seededRun('ledger take-back floor', async (rand) => {
      const clock = { t: Date.parse('2026-03-10T12:00:00.000Z') };
      for (const [name, store] of await storesUnder(clock)) {
        const ledger = new UsageLedger(store, () => clock.t, { flushMs: 60_000 });
        const user = 'floor';
        const counted = between(rand, 1000, 1_000_000);
        const back = between(rand, 1, counted);
        ledger.add(user, 'down', counted);
        await ledger.flush();
        // The store lost the counts (a Redis restart without persistence, a key expired).
        for (const period of ['day', 'month'] as const) await store.del(`usage:${user}:${period}:${ledger.span(period).id}`);
        ledger.add(user, 'down', -back, clock.t);
        await ledger.flush();
        for (const period of ['day', 'month'] as const) {
          const held = (await store.hgetall(`usage:${user}:${period}:${ledger.span(period).id}`)).down ?? 0;
          assert.equal(held, 0, `${name}: ${counted} counted, the store emptied, ${back} taken back: the ${period} holds ${held}`);
          assert.equal(ledger.estimate(user, period, 'down'), 0, `${name}: the ${period}'s estimate`);
        }
      }
    });
  });
});

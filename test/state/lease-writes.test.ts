import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { SharedState, creditBlock, type CreditPolicy } from '../../src/state/index.js';
import { RedisStore } from '../../src/state/redis-store.js';
import type { StoreAdmitAnswer, StoreAdmitAsk } from '../../src/state/store.js';
import { NO_REDIS, TestRedis } from '../helpers/redis.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * A lease count a node writes to Redis (a release batch, `leaseSet`) while one of its own
 * lease asks is in flight states the count the ask would make, optimistically, so that a
 * grant is never under-counted. When that ask is then refused, or granted fewer slots than it
 * asked for, the node must state its count again: before, it only lowered its own count, and
 * Redis kept the refused slots as this holder's for good (a seeded CI run of the credit-block
 * test once found 9 slots held 20 s after the nodes went idle).
 *
 * Real Redis; the store below runs every command for real and only holds the answer of an
 * ask back until the node has written a release batch, the order a loaded machine produces.
 */
const redis = await TestRedis.start();
let prefixN = 0;

/** A RedisStore whose lease asks' answers wait (after Redis ran them) until `open()`; `leaseSet` emits 'written' once Redis has it. */
class HeldAnswers extends RedisStore {
  readonly events = new EventEmitter();
  hold = false;
  #waiting: Array<() => void> = [];

  open(): void {
    this.hold = false;
    for (const go of this.#waiting.splice(0)) go();
  }

  async #held<T>(p: Promise<T>): Promise<T> {
    if (!this.hold) return p;
    const v = await p;
    this.events.emit('asked');
    await new Promise<void>((r) => this.#waiting.push(r));
    return v;
  }

  override admit(ask: StoreAdmitAsk): Promise<StoreAdmitAnswer> {
    return this.#held(super.admit(ask));
  }

  override leaseAcquire(key: string, holder: string, count: number, max: number): Promise<boolean> {
    return this.#held(super.leaseAcquire(key, holder, count, max));
  }

  override async leaseSet(key: string, holder: string, count: number): Promise<void> {
    await super.leaseSet(key, holder, count);
    this.events.emit('written', count);
  }
}

type Path = 'acquire' | 'admit' | 'credit';

/** One slot of `key` (max `max`) through `path`: its release, or undefined when refused. */
async function take(shared: SharedState, path: Path, max: number): Promise<(() => void) | undefined> {
  if (path === 'acquire') return await shared.acquire('conn:u', max);
  const r = await shared.admit({ leases: [{ key: 'conn:u', max }] });
  return r.ok ? r.release : undefined;
}

describe('lease counts written while an ask is in flight (seeded)', { skip: redis ? false : NO_REDIS, timeout: 120_000 }, () => {
  after(async () => {
    await redis?.stop();
  });

  it('an ask refused after a release batch went out leaves no slot held in Redis (acquire, admit, credit blocks; max 2-12)', async () => {
    await seededRun('lease re-stated after a refusal', async (rand) => {
      for (let round = 0; round < 12; round++) {
        const path: Path = (['acquire', 'admit', 'credit'] as const)[round % 3]!;
        const max = between(rand, 2, 12);
        // Block 0 (every admission asks) or a block smaller than what A releases, so a release batch goes out.
        const credit: CreditPolicy | undefined = path === 'credit' ? { max: between(rand, 0, 1) === 0 ? 0 : 1, share: 1 } : undefined;
        const block = credit === undefined ? 0 : creditBlock(credit, max);
        const mine = between(rand, block + 1, max - 1);
        const prefix = `lw${prefixN++}:`;
        const stores = [new HeldAnswers({ url: redis!.url, keyPrefix: prefix }), new HeldAnswers({ url: redis!.url, keyPrefix: prefix })];
        for (const s of stores) assert.ok(await s.connected(10_000), 'connected to the test Redis');
        const [a, b] = stores.map((s, i) => new SharedState(s, { backend: 'redis', budgetMs: 10_000, leaseTtlMs: 600, holder: `node${i}`, credit }));
        const check = new Redis(redis!.url);
        const what = `${path}, max ${max}, block ${block}, A holds ${mine}`;
        try {
          // A holds `mine`, B the rest: full.
          const aOpen: Array<() => void> = [];
          for (let i = 0; i < mine; i++) {
            const r = await take(a!, path, max);
            assert.ok(r, `${what}: A granted slot ${i + 1}`);
            aOpen.push(r);
          }
          const bOpen: Array<() => void> = [];
          for (let i = mine; i < max; i++) {
            const r = await take(b!, path, max);
            assert.ok(r, `${what}: B granted slot ${i + 1}`);
            bOpen.push(r);
          }
          // A asks once more (refused: full); Redis has run it when 'asked' comes, its answer held.
          stores[0]!.hold = true;
          const asked = once(stores[0]!.events, 'asked');
          const refusedP = take(a!, path, max);
          await asked;
          // Meanwhile A gives back all it holds; its release batch reaches Redis.
          const written = once(stores[0]!.events, 'written');
          for (const r of aOpen) r();
          await written;
          stores[0]!.open();
          assert.equal(await refusedP, undefined, `${what}: the extra ask refused`);
          for (const r of bOpen) r();
          // Idle: every slot back in Redis within a few heartbeats (every 200 ms).
          const deadline = Date.now() + 5_000;
          let held: Record<string, string> = {};
          while (Date.now() < deadline) {
            held = await check.hgetall(`${prefix}lease:conn:u`);
            if (Object.keys(held).length === 0) break;
            await new Promise((r) => setTimeout(r, 25));
          }
          assert.deepEqual(held, {}, `${what}: no slot held in Redis once idle`);
        } finally {
          check.disconnect();
          await a!.close();
          await b!.close();
        }
      }
    });
  });
});

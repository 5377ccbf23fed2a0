import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { RedisStore } from '../../src/state/redis-store.js';
import type { LockoutNews } from '../../src/state/store.js';
import { NO_REDIS, TestRedis } from '../helpers/redis.js';
import { between, seededRun } from '../helpers/seeded.js';

// RedisStore.lockoutFailed, the fleet's wrong-credential count (net/auth-lockout-fleet.ts), as
// AuthLockout counts in one process: maxFailures in a window lock the key out for lockoutMs,
// each next lockout doubled up to maxLockoutMs; failures while locked out are not counted; the
// lockout is published to the other stores on the prefix (not to the one that tripped it).

const redis = await TestRedis.start();
after(() => redis?.stop());

test('RedisStore.lockoutFailed: maxFailures lock out, doubling up to maxLockout, published to the other stores; failures while locked out are not counted (seeded maxFailures)', { skip: redis ? false : NO_REDIS, timeout: 60_000 }, async () => {
  await seededRun('redis-lockout', async (rand) => {
    const maxFailures = between(rand, 2, 6);
    const prefix = `rl-${maxFailures}:`;
    const a = new RedisStore({ url: redis!.url, keyPrefix: prefix });
    const b = new RedisStore({ url: redis!.url, keyPrefix: prefix });
    const other = new RedisStore({ url: redis!.url, keyPrefix: 'another-fleet:' });
    const raw = new Redis(redis!.url);
    const heard: { a: LockoutNews[]; b: LockoutNews[]; other: LockoutNews[] } = { a: [], b: [], other: [] };
    a.onLockout((n) => heard.a.push(n));
    b.onLockout((n) => heard.b.push(n));
    other.onLockout((n) => heard.other.push(n));
    try {
      assert.ok((await a.connected(5000)) && (await b.connected(5000)) && (await other.connected(5000)));
      // The subscriptions are made on their own connections: wait until Redis counts them (bounded).
      for (let t = 0; t < 100; t++) {
        const [, n] = (await raw.pubsub('NUMSUB', `${prefix}lockout`)) as [string, number];
        if (Number(n) >= 2) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const settings = { maxFailures, windowMs: 600_000, lockoutMs: 300, maxLockoutMs: 1000 };
      const key = '127.0.80.1';
      const hashKey = `${prefix}lockout:forward:${key}`;
      const redisNow = async (): Promise<number> => {
        const [s, us] = await raw.time();
        return Number(s) * 1000 + Math.floor(Number(us) / 1000);
      };
      // [strike, its length, the one before]: 300 ms, doubled, capped at 1 s.
      for (const [strike, ms, before] of [
        [1, 300, 0],
        [2, 600, 300],
        [3, 1000, 600],
      ] as const) {
        // Spread over both stores: one count.
        for (let i = 1; i < maxFailures; i++) {
          const v = await (i % 2 === 0 ? b : a).lockoutFailed('forward', key, key, settings);
          assert.deepEqual(v, { ms: 0, strike: strike - 1, lastLockoutMs: before, failures: i, tripped: false }, `failure ${i} of lockout ${strike}`);
        }
        const trip = await a.lockoutFailed('forward', key, key, settings);
        assert.deepEqual(trip, { ms, strike, lastLockoutMs: ms, failures: maxFailures, tripped: true }, `lockout ${strike}`);
        // Heard by b (bounded wait), not by a (its own) nor by another prefix's store.
        for (let t = 0; t < 100 && heard.b.length < strike; t++) await new Promise((r) => setTimeout(r, 20));
        assert.deepEqual(heard.b[strike - 1], { name: 'forward', key, address: key, ms, strike, failures: maxFailures });
        // Failures while locked out: answered with what is left, not counted.
        const during = await b.lockoutFailed('forward', key, key, settings);
        assert.equal(during.tripped, false);
        assert.ok(during.ms > 0 && during.ms <= ms, `left of lockout ${strike}: ${during.ms}`);
        assert.equal(await raw.hget(hashKey, 'f'), '0', 'not counted while locked out');
        // Kept for its window, and after a lockout for twice its length.
        const pttl = await raw.pttl(hashKey);
        assert.ok(pttl > 0 && pttl <= Math.max(settings.windowMs, 2 * ms), `expiry ${pttl}`);
        // Wait out the lockout on Redis's clock (bounded).
        const until = Number(await raw.hget(hashKey, 'until'));
        for (let t = 0; t < 200 && (await redisNow()) < until; t++) await new Promise((r) => setTimeout(r, 10));
      }
      assert.deepEqual(heard.a, [], 'a store does not hear its own lockouts');
      assert.deepEqual(heard.other, [], 'another prefix hears nothing');
      // The admin face is another count.
      assert.equal((await a.lockoutFailed('admin', key, key, settings)).failures, 1);
    } finally {
      raw.disconnect();
      await Promise.all([a.close(), b.close(), other.close()]);
    }
  });
});

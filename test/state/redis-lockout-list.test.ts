import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { RedisStore } from '../../src/state/redis-store.js';
import type { LockoutNews } from '../../src/state/store.js';
import { NO_REDIS, TestRedis } from '../helpers/redis.js';
import { between, seededRun } from '../helpers/seeded.js';

// The lockouts in force that Redis lists for the nodes that could not hear them
// (RedisStore.lockoutsInForce), and a lockout a node decided alone handed to Redis when it is
// back (RedisStore.lockoutImpose): listed, published to the other stores, not taken again when
// Redis holds one that ends as late.

const redis = await TestRedis.start();
after(() => redis?.stop());

test('RedisStore lists the lockouts in force with what is left of each, drops ended ones, and takes a lockout decided alone unless it holds one ending as late (seeded lengths, IPv4 and IPv6 keys)', { skip: redis ? false : NO_REDIS, timeout: 60_000 }, async () => {
  await seededRun('redis-lockout-list', async (rand) => {
    const maxFailures = between(rand, 1, 4);
    const lockoutMs = between(rand, 200, 400);
    const prefix = `rll-${maxFailures}-${lockoutMs}:`;
    const a = new RedisStore({ url: redis!.url, keyPrefix: prefix });
    const b = new RedisStore({ url: redis!.url, keyPrefix: prefix });
    const raw = new Redis(redis!.url);
    const heard: LockoutNews[] = [];
    b.onLockout((n) => heard.push(n));
    try {
      assert.ok((await a.connected(5000)) && (await b.connected(5000)));
      for (let t = 0; t < 100; t++) {
        const [, n] = (await raw.pubsub('NUMSUB', `${prefix}lockout`)) as [string, number];
        if (Number(n) >= 2) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const settings = { maxFailures, windowMs: 600_000, lockoutMs, maxLockoutMs: 3_600_000 };
      const v4 = '127.0.81.1';
      const v6 = '2001:db8:0:1::/64';
      assert.deepEqual(await b.lockoutsInForce(), [], 'nothing in force yet');
      for (let i = 0; i < maxFailures; i++) await a.lockoutFailed('forward', v4, v4, settings);
      for (let i = 0; i < maxFailures; i++) await a.lockoutFailed('admin', v6, '2001:db8:0:1::5', settings);
      const listed = await b.lockoutsInForce();
      assert.deepEqual(listed.map((n) => [n.name, n.key, n.strike, n.lastLockoutMs]).sort(), [['admin', v6, 1, lockoutMs], ['forward', v4, 1, lockoutMs]]);
      for (const n of listed) assert.ok(n.ms > 0 && n.ms <= lockoutMs, `what is left: ${n.ms}`);
      // Both ended (on Redis's clock, bounded): neither listed, the set emptied.
      const until = Math.max(...(await Promise.all([`forward:${v4}`, `admin:${v6}`].map(async (m) => Number(await raw.hget(`${prefix}lockout:${m}`, 'until'))))));
      for (let t = 0; t < 200; t++) {
        const [s, us] = await raw.time();
        if (Number(s) * 1000 + Number(us) / 1000 > until) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.deepEqual(await b.lockoutsInForce(), [], 'ended lockouts are not listed');
      assert.equal(await raw.zcard(`${prefix}lockouts`), 0, 'and are dropped from the set');

      // A lockout decided alone: taken, listed, published to b (the two above were heard too: set aside).
      for (let t = 0; t < 100 && heard.length < 2; t++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(heard.length, 2, 'both trips heard by b');
      heard.length = 0;
      const alone = '127.0.81.2';
      const ms = between(rand, 60_000, 120_000);
      assert.equal(await a.lockoutImpose('forward', alone, alone, { ms, lastLockoutMs: ms, strike: 2 }, settings), true, 'taken');
      for (let t = 0; t < 100 && heard.length === 0; t++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(heard.length, 1, 'published');
      assert.deepEqual({ ...heard[0]!, ms: 0 }, { name: 'forward', key: alone, address: alone, ms: 0, strike: 2, failures: 0 });
      assert.ok(heard[0]!.ms === ms, `its length: ${heard[0]!.ms}`);
      const [one] = await b.lockoutsInForce();
      assert.ok(one !== undefined && one.key === alone && one.ms > ms - 5_000 && one.ms <= ms && one.strike === 2);
      // The same again (another node heard it and hands it back): not taken, not published again.
      assert.equal(await b.lockoutImpose('forward', alone, alone, { ms: ms - 200, lastLockoutMs: ms, strike: 2 }, settings), false, 'one ending as late is held');
      // A longer one: taken; the strike never goes down.
      assert.equal(await b.lockoutImpose('forward', alone, alone, { ms: ms + 10_000, lastLockoutMs: ms + 10_000, strike: 1 }, settings), true, 'a longer one is taken');
      assert.equal(await raw.hget(`${prefix}lockout:forward:${alone}`, 'strikes'), '2');
      // While it stands, a wrong credential is not counted and is answered with what is left.
      const during = await a.lockoutFailed('forward', alone, alone, settings);
      assert.ok(during.ms > ms && !during.tripped, `left: ${during.ms}`);
    } finally {
      raw.disconnect();
      await Promise.all([a.close(), b.close()]);
    }
  });
});

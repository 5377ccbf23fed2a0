import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MemoryStore, SharedState, type Store } from '../../src/state/index.js';
import { RedisStore } from '../../src/state/redis-store.js';
import { UsageLedger } from '../../src/tenants/index.js';
import { startAdmin } from '../../src/observe/admin.js';
import { AddressExit, ExitPool } from '../../src/egress/index.js';
import { NO_REDIS, TestRedis } from '../helpers/redis.js';
import { seededRun } from '../helpers/seeded.js';

/** Poll `cond` until true or `ms` pass. */
async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const redis = await TestRedis.start();

describe('RedisStore and MemoryStore: the same fleet operations', { skip: redis ? false : NO_REDIS }, () => {
  const stores: Store[] = [];
  let prefixN = 0;
  const fresh = async (): Promise<Array<[string, Store]>> => {
    const r = new RedisStore({ url: redis!.url, keyPrefix: `t${prefixN++}:` });
    assert.ok(await r.connected(5000));
    const m = new MemoryStore();
    stores.push(r, m);
    return [['redis', r], ['memory', m]];
  };
  before(async () => {
    const probe = new RedisStore({ url: redis!.url });
    assert.ok(await probe.connected(5000));
    await probe.close();
  });
  after(async () => {
    for (const s of stores) await s.close();
    await redis?.stop();
  });

  it('GCRA: a burst of exactly `burst` passes at once, then one per interval (rates 1 to 200, seeded)', async () => {
    await seededRun('gcra', async (rnd) => {
      for (let round = 0; round < 12; round++) {
      const perSecond = 1 + Math.floor(rnd() * 200);
      const burst = 1 + Math.floor(rnd() * perSecond);
      for (const [name, s] of await fresh()) {
        const t0 = performance.now();
        const verdicts = await Promise.all(Array.from({ length: burst + 5 }, () => s.rate('rate:u', perSecond, burst)));
        const elapsed = performance.now() - t0;
        const allowed = verdicts.filter((w) => w === 0).length;
        // Sent together: only the cells that dripped in while they were answered (one per interval) may pass beyond the burst.
        const drip = Math.ceil(elapsed / (1000 / perSecond)) + 1;
        assert.ok(allowed >= burst && allowed <= burst + drip, `${name}: rate ${perSecond}/s burst ${burst}: ${allowed} allowed in ${elapsed.toFixed(1)} ms`);
        const wait = verdicts.find((w) => w > 0)!;
        assert.ok(wait > 0 && wait <= Math.ceil(1000 / perSecond), `${name}: wait ${wait} ms at ${perSecond}/s`);
      }
      }
    });
  });

  it('sticky sessions: pinned, kept while used, moved off an unusable exit with the first lifetime, gone when idle', async () => {
    for (const [name, s] of await fresh()) {
      assert.deepEqual(await s.sessionPick('p:k', 'a', [], 10_000, 300), { exitId: 'a', repinned: false }, name);
      assert.deepEqual(await s.sessionPick('p:k', 'b', [], 10_000, 300), { exitId: 'a', repinned: false }, `${name}: the pin wins over a new candidate`);
      assert.deepEqual(await s.sessionPick('p:k', 'b', ['a'], 10_000, 300), { exitId: 'b', repinned: true }, `${name}: moved off an unusable exit`);
      assert.equal(await s.sessionPick('p:k', '', ['b'], 10_000, 300), undefined, `${name}: no candidate, no usable pin`);
      // Idle expiry: untouched for longer than idleMs.
      await s.sessionPick('p:idle', 'c', [], 10_000, 150);
      await new Promise((r) => setTimeout(r, 400));
      assert.deepEqual(await s.sessionPick('p:idle', 'd', [], 10_000, 150), { exitId: 'd', repinned: false }, `${name}: idle session expired`);
      // Lifetime: ends even when used.
      await s.sessionPick('p:life', 'e', [], 300, 10_000);
      await new Promise((r) => setTimeout(r, 150));
      assert.equal((await s.sessionPick('p:life', 'f', [], 300, 10_000))!.exitId, 'e');
      await new Promise((r) => setTimeout(r, 250));
      assert.equal((await s.sessionPick('p:life', 'f', [], 300, 10_000))!.exitId, 'f', `${name}: lifetime over`);
    }
  });

  it('leases: counted across holders within max; a holder whose heartbeat lapses stops counting', async () => {
    for (const [name, s] of await fresh()) {
      await s.heartbeat('A', 300);
      await s.heartbeat('B', 60_000);
      assert.equal(await s.leaseAcquire('conn:u', 'A', 1, 3), true);
      assert.equal(await s.leaseAcquire('conn:u', 'A', 2, 3), true);
      assert.equal(await s.leaseAcquire('conn:u', 'B', 1, 3), true);
      assert.equal(await s.leaseAcquire('conn:u', 'B', 2, 3), false, `${name}: 4 > 3`);
      await s.leaseSet('conn:u', 'A', 1);
      assert.equal(await s.leaseAcquire('conn:u', 'B', 2, 3), true, `${name}: A gave one back`);
      assert.equal(await s.leaseAcquire('conn:u', 'B', 3, 3), false);
      // A dies (no more heartbeats): its lease lapses.
      await new Promise((r) => setTimeout(r, 450));
      assert.equal(await s.leaseAcquire('conn:u', 'B', 3, 3), true, `${name}: A's lease lapsed with its heartbeat`);
    }
  });

  it('an exit one node finds dead cools down on the other node too (exit pools over SharedState)', async () => {
    const mk = async (): Promise<{ pool: ExitPool; shared: SharedState }> => {
      const remote = new RedisStore({ url: redis!.url, keyPrefix: 'pools:' });
      assert.ok(await remote.connected(5000));
      const shared = new SharedState(remote, { backend: 'redis' });
      const exits = ['127.0.0.2', '127.0.0.3'].map((a) => new AddressExit(a));
      const pool = new ExitPool(exits, { name: 'dc', strategy: 'request', sessionTtlMs: 60_000, sessionIdleMs: 60_000, maxAttempts: 2, failure: { threshold: 2, cooldownMs: 5000, maxCooldownMs: 60_000 }, shared });
      return { pool, shared };
    };
    const a = await mk();
    const b = await mk();
    try {
      const dead = a.pool.exits[0]!;
      // Publish until heard (the subscriber connections may still be subscribing).
      await until(() => {
        a.pool.failed(dead, 'example.com', 'exit');
        a.pool.failed(dead, 'example.com', 'exit');
        return b.pool.marker.down(dead.id);
      }, 5000, 'the cool-down reached the other node');
      assert.ok(b.pool.marker.coolingFor(dead.id) > 3000 && b.pool.marker.coolingFor(dead.id) <= 60_000);
      assert.deepEqual(b.pool.candidates('example.com').map((e) => e.id), [a.pool.exits[1]!.id]);
      // A sticky session on b moves off the exit a found dead.
      const pick = await b.pool.select({ host: 'example.com', user: 'u', session: 's' });
      assert.equal(pick!.exit.id, a.pool.exits[1]!.id);
    } finally {
      await a.shared.close();
      await b.shared.close();
    }
  });

  it('cool-downs reach the other stores, not the one that published', async () => {
    const a = new RedisStore({ url: redis!.url, keyPrefix: 'cool:' });
    const b = new RedisStore({ url: redis!.url, keyPrefix: 'cool:' });
    stores.push(a, b);
    assert.ok((await a.connected(5000)) && (await b.connected(5000)));
    const heardA: string[] = [];
    a.onCooldown((scope) => heardA.push(scope));
    const heard = new Promise<[string, number]>((resolve) => b.onCooldown((scope, ms) => resolve([scope, ms])));
    // The subscriber connection may still be subscribing: publish until heard.
    let got: [string, number] | undefined;
    void heard.then((v) => (got = v));
    await until(async () => {
      await a.publishCooldown('dc\n127.0.0.2\n', 5000);
      return got !== undefined;
    }, 5000, 'cool-down heard');
    assert.deepEqual(got, ['dc\n127.0.0.2\n', 5000]);
    assert.deepEqual(heardA, []);
  });
});

describe('SharedState: Redis trouble is not an outage', { skip: redis ? false : NO_REDIS }, () => {
  it('Redis killed: answers from local state within the budget, degraded in health; back: recovers and the ledger writes what it owed', { timeout: 60_000 }, async () => {
    const r = (await TestRedis.start())!;
    const warns: string[] = [];
    const infos: string[] = [];
    const remote = new RedisStore({ url: r.url, keyPrefix: 'deg:' });
    assert.ok(await remote.connected(5000));
    const shared = new SharedState(remote, {
      backend: 'redis',
      budgetMs: 50,
      probeMs: 200,
      log: { warn: (o) => warns.push(String(o.event)), info: (o) => infos.push(String(o.event)) },
    });
    const ledger = new UsageLedger(shared.usage, Date.now, { flushMs: 100 });
    try {
      assert.equal(await shared.rate('rate:u', 100, 100), 0);
      ledger.add('u', 'down', 1000);
      await ledger.flush();
      const key = `usage:u:day:${ledger.span('day').id}`;
      assert.deepEqual(await remote.hgetall(key), { down: 1000 });

      await r.kill();
      // Every request-path operation answers within the budget (plus a timer tick) while Redis is gone.
      for (let i = 0; i < 20; i++) {
        const t0 = performance.now();
        const w = await shared.rate('rate:u', 1000, 1000);
        const release = await shared.acquire('conn:u', 5);
        const pick = await shared.sessionPick('dc:u|s', 'x', [], 60_000, 60_000);
        const took = performance.now() - t0;
        assert.equal(w, 0);
        assert.equal(typeof release, 'function');
        release!();
        assert.equal(pick!.exitId, 'x');
        // A dead Redis without the budget holds a request until ioredis gives up (seconds); the
        // slack over 3 × 50 ms is for a stalling machine.
        assert.ok(took < 3 * 50 + 400, `answered in ${took.toFixed(1)} ms (budget 50 ms each)`);
      }
      assert.equal(shared.health().degraded, true);
      assert.ok(shared.health().fallbacks > 0);
      assert.deepEqual(warns, ['state-degraded']);
      // /ready stays ready, and says the state is degraded.
      const admin = await startAdmin({ port: 0, state: () => shared.health() });
      try {
        const res = await fetch(`${admin.url}/ready`);
        assert.equal(res.status, 200);
        assert.match(await res.text(), /^ready: accepting traffic\nstate: degraded \(redis unavailable since .*\)/);
      } finally {
        await admin.close();
      }
      // Usage counted meanwhile stays owed.
      ledger.add('u', 'down', 234);
      ledger.flushNow();

      await r.restart();
      await until(() => !shared.health().degraded, 10_000, 'recovered');
      assert.ok(infos.includes('state-recovered'));
      // The owed usage reaches the new (empty) Redis with the ledger's next writes.
      await until(async () => (await remote.hgetall(key)).down === 234, 10_000, 'owed usage written');
    } finally {
      await shared.close();
      await r.stop();
    }
  });

  it('a slow store (answers after the budget) is the same as a dead one for requests', async () => {
    class Slow extends MemoryStore {
      override readonly shared: boolean = true;
      override rate(key: string, perSecond: number, burst: number): Promise<number> {
        return new Promise((res) => setTimeout(() => res(super.rateSync(key, perSecond, burst)), 500));
      }
    }
    const shared = new SharedState(new Slow(), { backend: 'ipc', budgetMs: 30 });
    try {
      const t0 = performance.now();
      assert.equal(await shared.rate('k', 10, 10), 0);
      const took = performance.now() - t0;
      // The store answers after 500 ms; the slack over the 30 ms budget is for a stalling machine.
      assert.ok(took < 30 + 300, `waited ${took.toFixed(1)} ms with a 30 ms budget`);
      assert.equal(shared.health().degraded, true);
      assert.match(shared.health().reason ?? '', /no answer within 30 ms/);
    } finally {
      await shared.close();
    }
  });
});


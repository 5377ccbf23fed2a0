import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { request } from 'undici';
import { cacheKey } from '../../src/cache/index.js';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { within } from '../helpers/ended-records.js';
import { until } from '../helpers/until.js';
import { withCacheGateway } from './cache-gateway.js';

/**
 * What a collapsed waiter (a miss that waited for another request's fetch of its key,
 * `src/cache/collapse.ts`) is told and recorded as. RFC 9211 §2.7: `collapsed` is only valid
 * with `fwd` (the request went forward, in the leader's request), and says whether the
 * leader's response was reused (`collapsed`) or a new request had to be made (`collapsed=?0`);
 * `hit` (§2.1) is a response obtained from the cache without going forward. Before session 32
 * a waiter answered from the leader's response said `hit; ttl=…; collapsed` (invalid: no
 * `fwd`) and was recorded and counted as a `hit`; one that had to go upstream itself did not
 * say it had waited. The header, the record's `cache` and `gatewise_cache_responses_total`
 * must say the same thing. Seeded over the number of waiters and whether the leader's
 * response is stored.
 */
test('a collapsed waiter: Cache-Status fwd=…; collapsed (reused) or collapsed=?0 (went itself), never hit; the record and the metric agree (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const held = new Map<string, (res: ServerResponse) => void>();
  const noStore = new Set<string>();
  const up = await startScriptedUpstream((req, res) => {
    const path = req.url!;
    req.resume();
    const w = held.get(path);
    if (w !== undefined) {
      held.delete(path);
      w(res);
      return;
    }
    res.writeHead(200, { 'cache-control': noStore.has(path) ? 'no-store' : 'max-age=60', 'content-length': String(Buffer.byteLength(`again ${path}`)) });
    res.end(`again ${path}`);
  });
  await withCacheGateway(up, { routes: [{ name: 'c', cache: { collapseWait: '30s' } }] }, async ({ g: gw, base, records }) => {
    const cache = gw.gw.ctx.cache!;
    const counted = async (result: string): Promise<number> => {
      const m = await gw.registry.getSingleMetric('gatewise_cache_responses_total')!.get();
      let n = 0;
      for (const v of m.values) if ((v.labels as Record<string, unknown>).result === result) n += v.value;
      return n;
    };
    await withSeed(rand, async () => {
      for (let i = 0; i < 8; i++) {
        const path = `/k${i}-${rand.seed}`;
        const waiters = 1 + rand.int(5);
        const stored = rand.next() < 0.5;
        const what = `case ${i}: ${waiters} waiter(s), leader's response ${stored ? 'stored' : 'not stored (no-store)'}`;
        if (!stored) noStore.add(path);
        const leaderRes = new Promise<ServerResponse>((resolve) => held.set(path, resolve));
        const before = { collapsed: await counted('collapsed'), miss: await counted('miss'), hit: await counted('hit') };
        const leader = request(base + path);
        const res = await within(leaderRes, 10_000, `${what}: the leader at the origin`);
        const key = cacheKey(`127.0.0.1${path}`, 'c');
        const rest = Array.from({ length: waiters }, () => request(base + path));
        assert.ok(await until(() => cache.collapser.waiting(key) === waiters, 10_000), `${what}: the waiters queued (${cache.collapser.waiting(key)})`);
        res.writeHead(200, { 'cache-control': stored ? 'max-age=60' : 'no-store', 'content-length': String(Buffer.byteLength(`first ${path}`)) });
        res.end(`first ${path}`);
        const answers = await Promise.all([leader, ...rest].map(async (p) => {
          const r = await p;
          const body = await r.body.text();
          return { cs: String(r.headers['cache-status']), id: String(r.headers['x-request-id']), body };
        }));
        const [lead, ...others] = answers;
        assert.match(lead!.cs, stored ? /; fwd=uri-miss; fwd-status=200; stored$/ : /; fwd=uri-miss; fwd-status=200$/, `${what}: the leader`);
        for (const a of [lead!, ...others]) {
          const rec = await within(records.wait((r) => r.requestId === a.id), 10_000, `${what}: the record of ${a.id}`);
          // The header and the record say the same thing.
          assert.equal(/; hit\b/.test(a.cs), rec.cache === 'hit', `${what}: ${a.cs} recorded ${String(rec.cache)}`);
          assert.equal(/; collapsed(;|$)/.test(a.cs), rec.cache === 'collapsed', `${what}: ${a.cs} recorded ${String(rec.cache)}`);
        }
        for (const a of others) {
          assert.doesNotMatch(a.cs, /; hit\b/, `${what}: a waiter is not a hit (it went forward in the leader's request): ${a.cs}`);
          if (stored) {
            assert.match(a.cs, /^[^;]+; fwd=uri-miss; ttl=\d+; collapsed$/, `${what}: a waiter answered from the leader's response`);
            assert.equal(a.body, `first ${path}`, what);
          } else {
            assert.match(a.cs, /^[^;]+; fwd=uri-miss; fwd-status=200; collapsed=\?0$/, `${what}: a waiter that had to go upstream itself`);
            assert.equal(a.body, `again ${path}`, what);
          }
        }
        assert.equal(await counted('collapsed'), before.collapsed + (stored ? waiters : 0), `${what}: counted as collapsed`);
        assert.equal(await counted('miss'), before.miss + 1 + (stored ? 0 : waiters), `${what}: counted as misses`);
        assert.equal(await counted('hit'), before.hit, `${what}: no hit counted`);
        assert.equal(up.received.filter((r) => r.url === path).length, stored ? 1 : 1 + waiters, `${what}: requests at the origin`);
      }
    });
  });
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cacheKey } from '../../src/cache/index.js';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { within } from '../helpers/ended-records.js';
import { until } from '../helpers/until.js';
import { answerStale, cacheGet, counterSum, fillStale, Holds, STALE_ETAG, type Got } from './stale-entry.js';
import { withCacheGateway } from './cache-gateway.js';

/**
 * A stale-while-revalidate hit while the key's fetch is already in flight: a client's request
 * that went upstream for it (a `no-cache` request leading the key's collapsed requests) or the
 * background revalidation another stale hit started. Such a hit starts no request of its own
 * (Varnish answers from grace behind its busy object, nginx's `proxy_cache_use_stale updating`
 * and `proxy_cache_lock` likewise: the fetch in flight brings the new copy), and its record says
 * so: `cache: updating` (nginx's `UPDATING`), not `stale` as a hit that started the key's
 * revalidation. Before, both were `stale`, and a stale hit behind a client's fetch was recorded
 * exactly as one that revalidated, though nothing it did brought a fresh copy. What the fetch
 * brings decides the next answer: stored (a 304 or a new 200), a fresh hit; not stored
 * (`no-store`), the next stale hit starts the revalidation itself (`stale`). Seeded over which
 * fetch is in flight, how many stale hits come while it is, and what it brings.
 */
type Fetch = 'client' | 'background';
type Brings = '304' | '200' | 'no-store';

test('a stale-while-revalidate hit while the key\'s fetch is in flight starts no request, is recorded updating, and the fetch\'s answer decides what follows (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const holds = new Holds();
  const up = await startScriptedUpstream((req, res) => {
    const path = req.url!;
    req.resume();
    if (holds.take(req, res)) return;
    if (req.headers['if-none-match'] !== undefined) {
      res.writeHead(304, { etag: STALE_ETAG, 'cache-control': 'max-age=600' });
      res.end();
      return;
    }
    answerStale(res, `old ${path}`);
  });
  await withCacheGateway(up, { routes: [{ name: 'c', cache: { collapseWait: '30s' } }] }, async ({ g: gw, base, records }) => {
    const cache = gw.gw.ctx.cache!;
    const at = (path: string) => up.received.filter((r) => r.url === path);
    const counted = (result: string) => counterSum(gw.registry, 'gatewise_cache_responses_total', { route: 'c', result });
    const get = (path: string, headers: Record<string, string> = {}) => cacheGet(base, path, headers);
    await withSeed(rand, async () => {
      for (let i = 0; i < 10; i++) {
        const fetch: Fetch = rand.pick(['client', 'background'] as const);
        const brings: Brings = rand.pick(['304', '200', 'no-store'] as const);
        const hits = 1 + rand.int(5);
        const path = `/s${i}-${rand.seed}`;
        const what = `case ${i}: ${fetch} fetch in flight, ${hits} stale hit(s), it brings ${brings}`;
        const key = cacheKey(`127.0.0.1${path}`, 'c');
        await fillStale(base, path, what);
        // The key's fetch, held at the origin until the stale hits are answered.
        const atOrigin = holds.hold(path);
        let first: Promise<Got>;
        let starter: string | undefined;
        if (fetch === 'client') {
          // A request that may not be answered from the store leads the key's fetch.
          first = get(path, { 'cache-control': 'no-cache' });
          // Awaited below; if an assertion fails first, the gateway's close cuts it, and that must
          // not be reported in place of the assertion.
          first.catch(() => undefined);
        } else {
          // A stale hit starts the key's background revalidation.
          const s = await get(path);
          assert.match(s.cs, /; hit; ttl=-?\d+; detail=stale-while-revalidate$/, `${what}: the starter`);
          starter = s.id;
          first = Promise.resolve(s);
        }
        const res = await within(atOrigin, 10_000, `${what}: the key's fetch at the origin`);
        assert.equal(cache.collapser.inflight, 1, `${what}: the key's fetch holds its slot`);
        const sentBefore = at(path).length;
        const updatingBefore = await counted('updating');
        const ids = new Set<string>();
        for (let h = 0; h < hits; h++) {
          const s = await get(path);
          assert.equal(s.body, `old ${path}`, `${what}: hit ${h} answered from the stale copy`);
          assert.match(s.cs, /; hit; ttl=-?\d+; detail=stale-while-revalidate$/, `${what}: hit ${h}: ${s.cs}`);
          ids.add(s.id);
          const rec = await within(records.wait((x) => x.requestId === s.id), 10_000, `${what}: hit ${h}'s record`);
          assert.equal(rec.cache, 'updating', `${what}: hit ${h}'s record`);
          assert.equal((await gw.logFor(s.id)).cache, 'updating', `${what}: hit ${h}'s access line`);
        }
        assert.equal(at(path).length, sentBefore, `${what}: the stale hits sent nothing upstream`);
        assert.equal(await counted('updating'), updatingBefore + hits, `${what}: gatewise_cache_responses_total{result="updating"}`);
        // The fetch in flight answers.
        if (brings === '304') res.writeHead(304, { etag: STALE_ETAG, 'cache-control': 'max-age=600' }).end();
        else if (brings === '200') res.writeHead(200, { etag: '"b"', 'cache-control': 'max-age=600' }).end(`new ${path}`);
        else res.writeHead(200, { etag: '"b"', 'cache-control': 'no-store' }).end(`unstored ${path}`);
        const firstId = (await first).id;
        if (starter !== undefined) {
          const bg = await within(records.wait((x) => x.background === 'revalidation' && x.triggeredBy === starter), 10_000, `${what}: the revalidation's record`);
          assert.equal(bg.revalidation, brings === '304' ? 'refreshed' : brings === '200' ? 'replaced' : 'kept', what);
        } else {
          const rec = await within(records.wait((x) => x.requestId === firstId), 10_000, `${what}: the client fetch's record`);
          assert.equal(rec.cache, brings === '304' ? 'revalidated' : 'miss', `${what}: the client fetch`);
        }
        assert.ok(await until(() => cache.collapser.inflight === 0, 10_000), `${what}: the key's fetch released its slot`);
        assert.equal(records.matching((x) => x.background === 'revalidation' && ids.has(x.triggeredBy ?? '')).length, 0, `${what}: no revalidation started by the stale hits`);
        const after = await get(path);
        if (brings === 'no-store') {
          // Nothing fresh came: this stale hit is the one that revalidates.
          assert.match(after.cs, /; hit; ttl=-?\d+; detail=stale-while-revalidate$/, `${what}: after: ${after.cs}`);
          const rec = await within(records.wait((x) => x.requestId === after.id), 10_000, `${what}: the next hit's record`);
          assert.equal(rec.cache, 'stale', `${what}: the next stale hit starts the revalidation`);
          const bg = await within(records.wait((x) => x.background === 'revalidation' && x.triggeredBy === after.id), 10_000, `${what}: the next hit's revalidation`);
          assert.equal(bg.revalidation, 'refreshed', what);
        } else {
          assert.match(after.cs, /; hit; ttl=\d+$/, `${what}: a fresh hit after the fetch stored: ${after.cs}`);
          assert.equal(after.body, brings === '200' ? `new ${path}` : `old ${path}`, what);
        }
      }
    });
  });
});

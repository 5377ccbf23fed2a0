import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cacheKey } from '../../src/cache/index.js';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { within } from '../helpers/ended-records.js';
import { sizeBoundRoutes, withCacheGateway } from './cache-gateway.js';
import { answerStale, cacheGet, counterSum, fillStale, isFill, STALE_ETAG } from './stale-entry.js';

/**
 * What a background revalidation records when its answer does not fit: the response is
 * larger than the store's whole bound (`cache.maxSize`, refused by the store itself) or than
 * the route's `maxObjectSize`, or a 304's fields make the freshened response too large for the
 * store. Before session 33 the first was recorded `replaced` (the store had refused it: the
 * stale response was still the one stored), the second `kept`, and the third `dropped`
 * (nothing was dropped). Now all three are `too-large`, in the record, the access log and
 * `gatewise_cache_revalidations_total`, and the stored response stays as it was; one that
 * fits is `replaced` or `refreshed` as before. Seeded over the new body's size and what it is
 * measured against, and the size of the 304's fields.
 */
type Case = 'fits' | 'over-store' | 'over-object' | '304-fits' | '304-over-store';
const CASES: readonly Case[] = ['fits', 'over-store', 'over-object', '304-fits', '304-over-store'];

const MAX_SIZE = 4096;

test('a revalidation whose answer is too large for the store is recorded too-large, never replaced or dropped, and the stored response stays (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const plan = new Map<string, { kind: Case; bytes: number }>();
  const up = await startScriptedUpstream((req, res) => {
    req.resume();
    const path = req.url!.split('?')[0]!;
    const p = plan.get(path)!;
    if (isFill(up, req)) {
      answerStale(res, 'A');
      return;
    }
    if (p.kind.startsWith('304')) {
      res.writeHead(304, { etag: STALE_ETAG, 'cache-control': 'max-age=600', 'x-pad': 'p'.repeat(p.bytes) });
      res.end();
      return;
    }
    res.writeHead(200, { etag: '"b"', 'cache-control': 'max-age=600' });
    res.end(Buffer.alloc(p.bytes, 0x62));
  });
  await withCacheGateway(up, sizeBoundRoutes(MAX_SIZE), async ({ g: gw, base, records }) => {
    const cache = gw.gw.ctx.cache!;
    const counted = (route: string, result: string) => counterSum(gw.registry, 'gatewise_cache_revalidations_total', { route, result });
    const get = (path: string) => cacheGet(base, path);
    await withSeed(rand, async () => {
      for (let i = 0; i < 10; i++) {
        const kind = rand.pick(CASES);
        // Sizes: what fits either bound, what is over the store's whole bound (within maxObjectSize
        // on /big), what is over the small route's maxObjectSize (well within the store).
        const bytes =
          kind === 'fits' ? 1 + rand.int(MAX_SIZE / 8)
          : kind === 'over-store' ? MAX_SIZE + rand.int(2 * MAX_SIZE)
          : kind === 'over-object' ? MAX_SIZE / 4 + 1 + rand.int(MAX_SIZE / 4)
          : kind === '304-fits' ? 1 + rand.int(MAX_SIZE / 8)
          : MAX_SIZE + rand.int(MAX_SIZE);
        const route = kind === 'over-object' ? 'small' : 'big';
        const path = `${route === 'big' ? '/big' : ''}/t${i}-${rand.seed}`;
        plan.set(path, { kind, bytes });
        const what = `case ${i}: ${kind}, ${bytes} bytes`;
        const key = cacheKey(`127.0.0.1${path}`, route);
        await fillStale(base, path, what);
        const result = kind === 'fits' ? 'replaced' : kind === '304-fits' ? 'refreshed' : 'too-large';
        const before = await counted(route, result);
        const hit = await get(path);
        assert.match(hit.cs, /detail=stale-while-revalidate$/, what);
        const rec = await within(records.wait((x) => x.background === 'revalidation' && x.triggeredBy === hit.id), 10_000, `${what}: the revalidation's record`);
        assert.equal(rec.revalidation, result, what);
        const line = await gw.logFor(rec.requestId);
        assert.equal(line.revalidation, result, `${what}: the access log`);
        assert.equal(await counted(route, result), before + 1, `${what}: the metric`);
        const stored = cache.store.get(key);
        assert.ok(stored !== undefined && stored.length === 1, `${what}: a response stays stored`);
        const e = stored[0]!;
        if (result === 'replaced') assert.equal(e.etag, '"b"', what);
        else if (result === 'refreshed') assert.ok(e.ttlMs(Date.now()) > 0, what);
        else {
          assert.equal(e.etag, STALE_ETAG, `${what}: the stored response as it was`);
          assert.equal(e.body.toString(), 'A', what);
          assert.ok(e.ttlMs(Date.now()) <= 0, `${what}: still stale`);
          assert.equal(e.header('x-pad'), undefined, what);
        }
      }
    });
  });
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cacheKey } from '../../src/cache/index.js';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { within } from '../helpers/ended-records.js';
import { sizeBoundRoutes, withCacheGateway } from './cache-gateway.js';
import { cacheGet, counterSum } from './stale-entry.js';

/**
 * A client's request whose storable answer the cache could not keep for its size: a
 * `Content-Length` above the route's `maxObjectSize`, a body without one that grows past it on
 * its way, a body over the whole store (`cache.maxSize`, which a route's `maxObjectSize` may
 * exceed: the store itself refuses it at the end), or a 304 to the cache's validators whose
 * fields make the freshened response too large for the store. The background revalidation
 * records these `too-large` (RevalidationResult); the client path recorded nothing: a plain
 * `miss` (or `revalidated`), as if the answer had been stored, and nothing in the log or the
 * metrics said the key would miss again. Now the record's `storeRefused` is `too-large` (the
 * value the revalidation uses, from one list), the access line has it and
 * `gatewise_cache_store_refused_total{route,reason}` counts it; an answer that fits, or one that
 * may not be stored at all (`no-store`: nothing was refused), has none. Seeded over the case
 * and the sizes.
 */
type Case = 'fits' | 'no-store' | 'over-object-length' | 'over-object-chunked' | 'over-store' | '304-over-store';
const CASES: readonly Case[] = ['fits', 'no-store', 'over-object-length', 'over-object-chunked', 'over-store', '304-over-store'];

const MAX_SIZE = 4096;

test('a client\'s storable answer the store refuses for its size is recorded too-large in the record, the access log and the metric (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const plan = new Map<string, { kind: Case; bytes: number }>();
  const up = await startScriptedUpstream((req, res) => {
    req.resume();
    const path = req.url!;
    const p = plan.get(path)!;
    if (p.kind === '304-over-store') {
      if (req.headers['if-none-match'] === undefined) {
        res.writeHead(200, { etag: '"a"', 'cache-control': 'max-age=0', 'content-length': '1' });
        res.end('A');
      } else {
        res.writeHead(304, { etag: '"a"', 'cache-control': 'max-age=600', 'x-pad': 'p'.repeat(p.bytes) });
        res.end();
      }
      return;
    }
    const body = Buffer.alloc(p.bytes, 0x62);
    if (p.kind === 'over-object-chunked') {
      // No Content-Length: the size is known only as the body passes.
      res.writeHead(200, { 'cache-control': 'max-age=600' });
      res.write(body.subarray(0, 1));
      res.end(body.subarray(1));
      return;
    }
    res.writeHead(200, { 'cache-control': p.kind === 'no-store' ? 'no-store' : 'max-age=600', 'content-length': String(p.bytes) });
    res.end(body);
  });
  await withCacheGateway(up, sizeBoundRoutes(MAX_SIZE), async ({ g: gw, base, records }) => {
    const cache = gw.gw.ctx.cache!;
    const refused = (route: string) => counterSum(gw.registry, 'gatewise_cache_store_refused_total', { route, reason: 'too-large' });
    const get = (path: string) => cacheGet(base, path);
    await withSeed(rand, async () => {
      for (let i = 0; i < 12; i++) {
        const kind = rand.pick(CASES);
        const bytes =
          kind === 'fits' || kind === 'no-store' ? 1 + rand.int(MAX_SIZE / 8)
          : kind === 'over-object-length' || kind === 'over-object-chunked' ? MAX_SIZE / 4 + 1 + rand.int(MAX_SIZE / 4)
          : MAX_SIZE + rand.int(2 * MAX_SIZE);
        const route = kind === 'over-store' || kind === '304-over-store' ? 'big' : 'small';
        const path = `${route === 'big' ? '/big' : ''}/r${i}-${rand.seed}`;
        plan.set(path, { kind, bytes });
        const what = `case ${i}: ${kind}, ${bytes} bytes`;
        const key = cacheKey(`127.0.0.1${path}`, route);
        if (kind === '304-over-store') assert.match((await get(path)).cs, /; stored$/, `${what}: filled`);
        const tooLarge = kind !== 'fits' && kind !== 'no-store';
        const before = await refused(route);
        const r = await get(path);
        assert.equal(r.status, 200, what);
        assert.equal(r.body.length, kind === '304-over-store' ? 1 : bytes, `${what}: the client got the whole body`);
        // Cache-Status names the refusal when the head decided it (RFC 9211 detail; session 38:
        // only set-cookie was named); a body without Content-Length is refused after the head is sent.
        if (kind === 'over-object-length' || kind === 'over-store' || kind === '304-over-store') {
          assert.match(r.cs, /; detail=too-large$/, `${what}: Cache-Status ${r.cs}`);
          assert.doesNotMatch(r.cs, /; stored/, `${what}: Cache-Status ${r.cs}`);
        }
        const rec = await within(records.wait((x) => x.requestId === r.id), 10_000, `${what}: the record`);
        assert.equal(rec.cache, kind === '304-over-store' ? 'revalidated' : 'miss', what);
        assert.equal(rec.storeRefused, tooLarge ? 'too-large' : undefined, `${what}: the record's storeRefused`);
        const line = await gw.logFor(r.id);
        assert.equal(line.storeRefused, tooLarge ? 'too-large' : undefined, `${what}: the access line`);
        assert.equal(await refused(route), before + (tooLarge ? 1 : 0), `${what}: gatewise_cache_store_refused_total`);
        const stored = cache.store.get(key);
        if (kind === 'fits') assert.equal(stored?.[0]?.body.length, bytes, `${what}: stored`);
        else if (kind === '304-over-store') assert.equal(stored?.[0]?.header('x-pad'), undefined, `${what}: the stored response as it was`);
        else assert.equal(stored, undefined, `${what}: nothing stored`);
      }
    });
  });
});

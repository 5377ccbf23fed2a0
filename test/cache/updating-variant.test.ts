import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { within } from '../helpers/ended-records.js';
import { until } from '../helpers/until.js';
import { cacheGet, Holds } from './stale-entry.js';
import { withCacheGateway } from './cache-gateway.js';

/**
 * `updating` (test/cache/stale-while-fetching.test.ts) says a stale-while-revalidate hit started
 * no revalidation because a fetch in flight brings the new copy of what it answered. It was
 * given whenever the key had a fetch in flight, whatever that fetch was for: a key stores its
 * `Vary` variants under one collapsing slot, so a stale hit on one variant while another
 * variant's fetch was in flight (its background revalidation, or a client's `no-cache` request
 * leading the key), or while a client's `Range` request led the key (its 206 is never stored),
 * was recorded `updating` and started nothing: that stale variant stayed stale, and was served
 * so, for as long as the other fetch took, though no fetch would ever refresh it. Now a stale
 * hit is `updating` only while a fetch of the very stored response it answered with is in
 * flight; otherwise it is `stale` and starts that response's own revalidation (beside the key's
 * fetch, whose slot it does not take). Seeded over the fetch in flight, the variants' order and
 * how many stale hits come while it is held.
 */
type Fetch = 'background' | 'client' | 'client-range';
const FETCHES: readonly Fetch[] = ['background', 'client', 'client-range'];

test('a stale-while-revalidate hit is recorded updating only while a fetch of the stored response it answered with is in flight; otherwise it revalidates that response (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const holds = new Holds();
  const up = await startScriptedUpstream((req, res) => {
    req.resume();
    if (holds.take(req, res)) return;
    const lang = String(req.headers['accept-language']);
    const tag = `"${lang}"`;
    if (req.headers['if-none-match'] === tag) {
      res.writeHead(304, { etag: tag, vary: 'accept-language', 'cache-control': 'max-age=600' });
      res.end();
      return;
    }
    // Stored stale at once, within stale-while-revalidate.
    res.writeHead(200, { etag: tag, vary: 'accept-language', 'cache-control': 'max-age=0, stale-while-revalidate=600', 'content-length': String(Buffer.byteLength(`old ${lang}`)) });
    res.end(`old ${lang}`);
  });
  await withCacheGateway(up, { routes: [{ name: 'v', cache: { collapseWait: '30s' } }] }, async ({ g: gw, base, records }) => {
    const cache = gw.gw.ctx.cache!;
    const get = (path: string, headers: Record<string, string>) => cacheGet(base, path, headers);
    await withSeed(rand, async () => {
      for (let i = 0; i < 8; i++) {
        const fetch = rand.pick(FETCHES);
        const [a, b] = rand.next() < 0.5 ? ['fr', 'en'] : ['en', 'fr'];
        const hits = 1 + rand.int(3);
        const path = `/v${i}-${rand.seed}`;
        const what = `case ${i}: ${fetch} fetch of variant ${a} in flight, ${hits} stale hit(s) on ${b} and on ${a}`;
        for (const lang of [a, b]) assert.match((await get(path, { 'accept-language': lang })).cs, /; stored$/, `${what}: ${lang} filled`);
        // The fetch of variant a, held at the origin.
        const atOrigin = holds.hold(path);
        let first: Promise<unknown> = Promise.resolve();
        if (fetch === 'background') {
          const s = await get(path, { 'accept-language': a });
          assert.match(s.cs, /detail=stale-while-revalidate$/, `${what}: the starter`);
        } else {
          first = get(path, { 'accept-language': a, 'cache-control': 'no-cache', ...(fetch === 'client-range' ? { range: 'bytes=0-1' } : {}) });
          // Awaited below; a failed assertion first lets the gateway's close cut it.
          first.catch(() => undefined);
        }
        const held = await within(atOrigin, 10_000, `${what}: the fetch at the origin`);
        assert.equal(cache.collapser.inflight, 1, `${what}: the fetch holds the key's slot`);
        // Hits on the other variant: nothing in flight refreshes it, so each is stale and the first revalidates it.
        const started: string[] = [];
        for (let h = 0; h < hits; h++) {
          const s = await get(path, { 'accept-language': b });
          assert.equal(s.body, `old ${b}`, `${what}: ${b} hit ${h}`);
          // The first is stale; its revalidation (a 304) refreshed b before the next.
          assert.match(s.cs, h === 0 ? /; hit; ttl=-?\d+; detail=stale-while-revalidate$/ : /; hit; ttl=\d+$/, `${what}: ${b} hit ${h}: ${s.cs}`);
          const rec = await within(records.wait((x) => x.requestId === s.id), 10_000, `${what}: ${b} hit ${h}'s record`);
          if (h === 0) {
            assert.equal(rec.cache, 'stale', `${what}: ${b} hit ${h}'s record (no fetch of ${b} in flight)`);
            started.push(s.id);
            const bg = await within(records.wait((x) => x.background === 'revalidation' && x.triggeredBy === s.id), 10_000, `${what}: ${b}'s own revalidation`);
            assert.equal(bg.revalidation, 'refreshed', `${what}: ${b}'s revalidation`);
          } else {
            // The first hit's revalidation refreshed b: a fresh hit now.
            assert.equal(rec.cache, 'hit', `${what}: ${b} hit ${h} after its revalidation`);
          }
        }
        // A hit on variant a itself: updating behind a fetch that may refresh it (a conditional
        // or plain GET of a); a Range request's 206 refreshes nothing, so then it revalidates a.
        const sa = await get(path, { 'accept-language': a });
        const reca = await within(records.wait((x) => x.requestId === sa.id), 10_000, `${what}: ${a} hit's record`);
        assert.equal(reca.cache, fetch === 'client-range' ? 'stale' : 'updating', `${what}: ${a} hit's record`);
        if (fetch === 'client-range') await within(records.wait((x) => x.background === 'revalidation' && x.triggeredBy === sa.id), 10_000, `${what}: ${a}'s own revalidation`);
        // Let the held fetch go.
        if (fetch === 'client-range') held.writeHead(206, { 'content-range': `bytes 0-1/5`, etag: `"${a}"`, vary: 'accept-language' }).end('ne');
        else held.writeHead(304, { etag: `"${a}"`, vary: 'accept-language', 'cache-control': 'max-age=600' }).end();
        await first;
        assert.ok(await until(() => cache.collapser.inflight === 0 && cache.collapser.refreshingCount === 0 && cache.keysUnderway === 0, 10_000), `${what}: every fetch of the key finished and gave back its marks`);
        for (const lang of [a, b]) assert.match((await get(path, { 'accept-language': lang })).cs, /; hit; ttl=\d+$/, `${what}: ${lang} fresh after its fetch`);
      }
    });
  });
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cacheKey } from '../../src/cache/index.js';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { within } from '../helpers/ended-records.js';
import { answerStale, cacheGet, fillStale, Holds, isFill, STALE_ETAG } from './stale-entry.js';
import { withCacheGateway } from './cache-gateway.js';

/**
 * A background (stale-while-revalidate) revalidation answered with a 304 whose `ETag` names no
 * stored response (RFC 9111 §4.3.4: it freshens nothing). Before session 33 it stopped there,
 * `kept`: the entry stayed stale, and every later stale-while-revalidate hit started one more
 * revalidation that got the same 304 and changed nothing, for the whole window (one upstream
 * request per hit, one at a time per key; found by this test: 2..6 sequential hits, 2..6
 * revalidations, none stored). Now it does what a client's request does after such a 304:
 * sends the request again, once, without its validators, and stores the answer by the usual
 * rules (`replaced`), so the hits after it are fresh hits; an answer that may not be stored
 * leaves the entry as it was (`kept`), and stale hits that come while the revalidation runs
 * start none of their own (one in flight per key, both tries in its one record).
 *
 * Seeded over the stored response's stale-while-revalidate, the new response's max-age and
 * whether it may be stored, the size of a burst of concurrent stale hits and the number of
 * sequential hits after it.
 */
test('a background revalidation whose 304 names no stored response sends the request again without validators: its answer replaces the entry, and later stale hits start no revalidation storm (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const holds = new Holds();
  const newCc = new Map<string, string>();
  const swrOf = new Map<string, number>();
  const up = await startScriptedUpstream((req, res) => {
    req.resume();
    const path = req.url!;
    if (req.headers['if-none-match'] !== undefined) {
      if (holds.take(req, res)) return;
      // The upstream says its current representation is another one ("b"), in a 304.
      res.writeHead(304, { etag: '"b"', 'cache-control': 'max-age=600', 'x-from-304': '1' });
      res.end();
      return;
    }
    if (isFill(up, req)) {
      answerStale(res, 'A', swrOf.get(path)!);
      return;
    }
    res.writeHead(200, { etag: '"b"', 'cache-control': newCc.get(path)! });
    res.end('B');
  });
  await withCacheGateway(up, { routes: [{ name: 'c', cache: {} }] }, async ({ g, base, records }) => {
    const cache = g.gw.ctx.cache!;
    const get = (path: string) => cacheGet(base, path);
    const at = (path: string) => up.received.filter((r) => r.url === path);
    const revalidations = (ids: ReadonlySet<string>) => records.matching((x) => x.background === 'revalidation' && ids.has(x.triggeredBy ?? ''));
    await withSeed(rand, async () => {
      for (let i = 0; i < 6; i++) {
        const path = `/m${i}-${rand.seed}`;
        const swr = 60 + rand.int(541);
        const maxAge = 60 + rand.int(541);
        const storable = rand.next() < 0.6;
        const burst = 2 + rand.int(5);
        const after = 2 + rand.int(5);
        swrOf.set(path, swr);
        newCc.set(path, storable ? `max-age=${maxAge}` : 'no-store');
        const what = `case ${i}: stale-while-revalidate=${swr}, the new response ${storable ? `max-age=${maxAge}` : 'no-store'}, a burst of ${burst} stale hits, ${after} hits after`;
        const key = cacheKey(`127.0.0.1${path}`, 'c');
        await fillStale(base, path, what);

        // A burst of stale hits while the revalidation's 304 is held at the origin: one revalidation.
        const release = holds.hold(path);
        const hits = await Promise.all(Array.from({ length: burst }, () => get(path)));
        for (const h of hits) {
          assert.equal(h.body, 'A', `${what}: the stale copy answers at once`);
          assert.match(h.cs, /; hit; ttl=-?\d+; detail=stale-while-revalidate$/, `${what}: ${h.cs}`);
        }
        const res304 = await within(release, 10_000, `${what}: the revalidation at the origin`);
        res304.writeHead(304, { etag: '"b"', 'cache-control': 'max-age=600', 'x-from-304': '1' });
        res304.end();
        const ids = new Set(hits.map((h) => h.id));
        const rec = await within(records.wait((x) => x.background === 'revalidation' && ids.has(x.triggeredBy ?? '')), 10_000, `${what}: the revalidation's record`);
        assert.deepEqual(rec.attempts.map((a) => a.status), [304, 200], `${what}: the 304, then the request again (${String(rec.revalidation)})`);
        assert.equal(rec.revalidation, storable ? 'replaced' : 'kept', what);
        assert.equal(at(path).length, 3, `${what}: the fill, the conditional request, the request again`);
        assert.equal(at(path)[1]!.headers['if-none-match'], STALE_ETAG, `${what}: validated with the stored tag`);
        assert.equal(at(path)[2]!.headers['if-none-match'], undefined, `${what}: sent again without the validator`);
        assert.equal(revalidations(ids).length, 1, `${what}: one revalidation for the whole burst`);
        assert.equal(cache.collapser.inflight, 0, `${what}: nothing left in flight`);
        const [e] = cache.store.get(key)!;
        assert.equal(e!.header('x-from-304'), undefined, `${what}: the 304's fields were never merged`);
        if (storable) {
          assert.equal(e!.etag, '"b"', `${what}: the new representation stored`);
          assert.ok(e!.ttlMs(Date.now()) > 0, `${what}: fresh`);
        } else {
          assert.equal(e!.etag, STALE_ETAG, `${what}: the stored response as it was`);
          assert.ok(e!.ttlMs(Date.now()) <= 0, `${what}: still stale`);
        }

        // The hits after it: fresh hits when the new response was stored (nothing more upstream);
        // otherwise each stale hit starts one revalidation (the entry is still stale), never more.
        for (let n = 0; n < after; n++) {
          const h = await get(path);
          if (storable) {
            assert.match(h.cs, /; hit; ttl=\d+$/, `${what}: hit ${n} after`);
            assert.equal(h.body, 'B', `${what}: hit ${n} after`);
            continue;
          }
          assert.match(h.cs, /detail=stale-while-revalidate$/, `${what}: hit ${n} after`);
          const r = await within(records.wait((x) => x.background === 'revalidation' && x.triggeredBy === h.id), 10_000, `${what}: the revalidation of hit ${n} after`);
          assert.equal(r.revalidation, 'kept', `${what}: hit ${n} after`);
          assert.equal(revalidations(new Set([h.id])).length, 1, `${what}: hit ${n} after`);
        }
        assert.equal(at(path).length, storable ? 3 : 3 + 2 * after, `${what}: requests at the origin`);
      }
    });
  });
});

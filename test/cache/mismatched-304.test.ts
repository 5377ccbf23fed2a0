import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { cacheKey } from '../../src/cache/index.js';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { within } from '../helpers/ended-records.js';
import { withCacheGateway } from './cache-gateway.js';

/**
 * RFC 9111 §4.3.4: a 304 to the cache's own conditional request updates the stored response
 * its validator identifies. A strong `ETag` in the 304 identifies the stored responses with
 * that strong validator; a weak one the newest whose tag matches by weak comparison; "if none
 * of the stored responses contain the same strong validator, then the cache MUST NOT use the
 * new response to update any stored responses". Before session 32 a 304 naming another entity
 * tag than the one stored (and sent in If-None-Match) freshened the stored response anyway (its
 * old ETag kept) and the client got the old body as revalidated; a background revalidation
 * recorded it `refreshed`. Now nothing is freshened: a client's request is sent again as the
 * client sent it (once), and its answer (a 200 here) is passed on and stored; a background
 * revalidation is sent again without its validators (once), and its answer is stored
 * (`replaced`; before session 33 it stopped at the 304, `kept`, and the entry stayed stale:
 * test/cache/mismatched-304-background.test.ts).
 *
 * Seeded over the 304's ETag (the stored one, its weak form, another strong or weak one,
 * none) and who validates (the client's request, or a stale-while-revalidate background one).
 */
type Tag304 = 'same' | 'same-weak' | 'other' | 'other-weak' | 'none';
const TAGS: readonly Tag304[] = ['same', 'same-weak', 'other', 'other-weak', 'none'];
const ETAG: Record<Tag304, string | undefined> = { same: '"a"', 'same-weak': 'W/"a"', other: '"b"', 'other-weak': 'W/"b"', none: undefined };

test('a 304 whose entity tag names no stored response freshens nothing: the client request and a background revalidation go again without the cache\'s validators (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const tag304 = new Map<string, Tag304>();
  const up = await startScriptedUpstream((req, res) => {
    req.resume();
    const path = req.url!;
    if (req.headers['if-none-match'] !== undefined) {
      const t = ETAG[tag304.get(path)!];
      res.writeHead(304, { 'cache-control': 'max-age=600', 'x-from-304': '1', ...(t === undefined ? {} : { etag: t }) });
      res.end();
      return;
    }
    const first = !up.received.slice(0, -1).some((r) => r.url === path);
    // The first fill: "a", stale at once (swr for the background form); afterwards the representation is "b".
    if (first) res.writeHead(200, { etag: '"a"', 'cache-control': path.includes('/bg') ? 'max-age=0, stale-while-revalidate=600' : 'max-age=0', 'content-length': '1' });
    else res.writeHead(200, { etag: '"b"', 'cache-control': 'max-age=600', 'content-length': '1' });
    res.end(first ? 'A' : 'B');
  });
  await withCacheGateway(up, { routes: [{ name: 'c', cache: {} }] }, async ({ g, base, records }) => {
    const cache = g.gw.ctx.cache!;
    const get = async (path: string) => {
      const r = await request(base + path);
      return { status: r.statusCode, body: await r.body.text(), cs: String(r.headers['cache-status']), id: String(r.headers['x-request-id']), from304: r.headers['x-from-304'] };
    };
    const at = (path: string) => up.received.filter((r) => r.url === path);
    await withSeed(rand, async () => {
      for (let i = 0; i < 10; i++) {
        const tag = rand.pick(TAGS);
        const background = rand.next() < 0.5;
        const path = `/${background ? 'bg' : 'fg'}${i}-${rand.seed}`;
        const matches = tag === 'same' || tag === 'same-weak' || tag === 'none';
        const what = `case ${i}: ${background ? 'background revalidation' : "the client's request"}, 304 with ${ETAG[tag] ?? 'no ETag'}`;
        tag304.set(path, tag);
        const key = cacheKey(`127.0.0.1${path}`, 'c');
        assert.match((await get(path)).cs, /stored$/, `${what}: filled`);
        const r = await get(path);
        // The validation went with the stored tag (the background one once its record is out).
        const validated = (): void => assert.equal(at(path)[1]?.headers['if-none-match'], '"a"', `${what}: validated with the stored tag`);
        if (background) {
          assert.equal(r.body, 'A', `${what}: the stale copy answers at once`);
          assert.match(r.cs, /detail=stale-while-revalidate/, what);
          const rec = await within(records.wait((x) => x.background === 'revalidation' && x.triggeredBy === r.id), 10_000, `${what}: the revalidation's record`);
          validated();
          const [e] = cache.store.get(key)!;
          if (matches) {
            assert.equal(e!.etag, '"a"', what);
            assert.equal(rec.revalidation, 'refreshed', what);
            assert.ok(e!.ttlMs(Date.now()) > 0, `${what}: freshened`);
            assert.equal(e!.header('x-from-304'), '1', what);
            assert.equal(at(path).length, 2, `${what}: one fill, one revalidation`);
          } else {
            assert.equal(rec.revalidation, 'replaced', `${what}: the 304 names another representation: sent again, and its answer stored`);
            assert.deepEqual(rec.attempts.map((a) => a.status), [304, 200], `${what}: both tries recorded`);
            assert.equal(e!.etag, '"b"', what);
            assert.equal(e!.header('x-from-304'), undefined, `${what}: the 304's fields were not merged`);
            assert.equal(at(path).length, 3, `${what}: one fill, the revalidation sent twice`);
            assert.equal(at(path)[2]!.headers['if-none-match'], undefined, `${what}: sent again without the cache's validator`);
          }
        } else {
          const rec = await within(records.wait((x) => x.requestId === r.id), 10_000, `${what}: the record`);
          validated();
          if (matches) {
            assert.equal(r.body, 'A', what);
            assert.match(r.cs, /; fwd=stale; fwd-status=304; ttl=\d+$/, what);
            assert.equal(rec.cache, 'revalidated', what);
            assert.equal(at(path).length, 2, what);
          } else {
            assert.equal(r.status, 200, what);
            assert.equal(r.body, 'B', `${what}: the current representation, not the stored one`);
            assert.equal(r.from304, undefined, what);
            assert.match(r.cs, /; fwd=stale; fwd-status=200; stored$/, what);
            assert.equal(rec.cache, 'miss', what);
            assert.deepEqual(rec.attempts.map((a) => a.status), [304, 200], `${what}: both tries recorded`);
            assert.equal(at(path).length, 3, `${what}: sent again`);
            assert.equal(at(path)[2]!.headers['if-none-match'], undefined, `${what}: sent again without the cache's validator`);
          }
        }
        const next = await get(path);
        assert.match(next.cs, /; hit; ttl=\d+$/, `${what}: the next request`);
        assert.equal(next.body, matches ? 'A' : 'B', `${what}: the next request`);
        assert.equal(cache.store.get(key)![0]!.etag, matches ? '"a"' : '"b"', what);
      }
    });
  });
});

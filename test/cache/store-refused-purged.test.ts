import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { request } from 'undici';
import { cacheKey } from '../../src/cache/index.js';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed, type Rand } from '../helpers/seeded.js';
import { within } from '../helpers/ended-records.js';
import { Holds, counterSum } from './stale-entry.js';
import { withCacheGateway } from './cache-gateway.js';

/**
 * A client's storable answer that the store does not keep because a purge (the admin API's
 * `POST /cache/purge?key=` or `?prefix=`, which call `invalidateTarget` and `purgePrefix`)
 * cancelled its store while it was fetched: the purge before the origin's head, between two
 * body chunks the client already has, or before the 304 to the cache's own validators. The
 * answer is passed on and not stored (purge-inflight.test.ts); until now nothing said so on
 * the client path: the record had no `storeRefused` (its list had only `too-large`), while a
 * background revalidation so cut is recorded `purged`. Now the record, the access line and
 * `gatewise_cache_store_refused_total{route,reason="purged"}` say it. An answer that may not
 * be stored anyway (`no-store`) refused nothing: no `storeRefused`, whatever the purge did.
 * Seeded over the moment, the purge's form (key or any prefix that names the host) and the body.
 */
type Moment = 'before-head' | 'mid-body' | 'before-304';
const MOMENTS: readonly Moment[] = ['before-head', 'mid-body', 'before-304'];
type Form = 'key' | 'prefix';

test('a client\'s answer whose store a purge cancelled is recorded storeRefused: purged in the record, the access log and the metric (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const holds = new Holds();
  const up = await startScriptedUpstream((req, res) => {
    req.resume();
    if (holds.take(req, res)) return;
    // The fill of a before-304 case: stored, stale at once (no stale-while-revalidate), with a validator.
    res.writeHead(200, { etag: '"a"', 'cache-control': 'max-age=0', 'content-length': '1' });
    res.end('A');
  });
  await withCacheGateway(up, { routes: [{ name: 'pages', cache: {} }] }, async ({ g: gw, base, records }) => {
    const cache = gw.gw.ctx.cache!;
    const refused = (reason: string) => counterSum(gw.registry, 'gatewise_cache_store_refused_total', { route: 'pages', reason });
    const purge = (form: Form, path: string, r: Rand): string => {
      const target = `127.0.0.1${path}`;
      if (form === 'key') return `key ${target}: ${cache.invalidateTarget(target)}`;
      const cut = '127.0.0.1/'.length + r.int(target.length - '127.0.0.1/'.length + 1);
      const p = target.slice(0, cut);
      return `prefix ${p}: ${cache.purgePrefix(p)}`;
    };
    await withSeed(rand, async () => {
      for (let i = 0; i < 12; i++) {
        const moment = rand.pick(MOMENTS);
        const form = rand.pick(['key', 'prefix'] as const);
        // Only a storable answer has a store to cancel; a no-store one refuses nothing.
        const storable = moment === 'before-304' || rand.next() < 0.75;
        const chunks = Array.from({ length: 2 + rand.int(3) }, (_, c) => Buffer.alloc(1 + rand.int(2000), 97 + c));
        const length = chunks.reduce((n, c) => n + c.length, 0);
        const withLength = rand.next() < 0.5;
        const path = `/s${i}-${rand.seed}?q=${rand.int(100)}`;
        const what = `case ${i}: ${moment}, purge by ${form}, ${storable ? 'storable' : 'no-store'}${withLength ? ', with Content-Length' : ''}, ${chunks.length} chunks`;
        const key = cacheKey(`127.0.0.1${path}`, 'pages');
        if (moment === 'before-304') {
          const fill = await request(base + path);
          assert.match(String(fill.headers['cache-status']), /; stored$/, `${what}: filled`);
          await fill.body.text();
        }
        const held = holds.hold(path);
        const before = await refused('purged');
        const pending = request(base + path);
        const res: ServerResponse = await within(held, 10_000, `${what}: the request at the origin`);
        const head = (): void => {
          res.writeHead(200, { 'cache-control': storable ? 'max-age=600' : 'no-store', ...(withLength ? { 'content-length': String(length) } : {}) });
        };
        let purged = '';
        if (moment === 'before-304') {
          assert.equal(res.req.headers['if-none-match'], '"a"', `${what}: the request is the cache's validation`);
          purged = purge(form, path, rand);
          res.writeHead(304, { etag: '"a"', 'cache-control': 'max-age=600' });
          res.end();
        } else if (moment === 'before-head') {
          purged = purge(form, path, rand);
          head();
          for (const c of chunks) res.write(c);
          res.end();
        } else {
          head();
          res.write(chunks[0]);
        }
        const r = await within(pending, 10_000, `${what}: the answer's head`);
        const id = String(r.headers['x-request-id']);
        let got = 0;
        for await (const c of r.body) {
          got += (c as Buffer).length;
          if (moment === 'mid-body' && purged === '' && got >= chunks[0]!.length) {
            // The client has the first chunk: the body is on its way, not yet whole.
            purged = purge(form, path, rand);
            for (const c of chunks.slice(1)) res.write(c);
            res.end();
          }
        }
        assert.equal(r.statusCode, 200, what);
        // Cache-Status names a refusal decided by the head or the 304 (RFC 9211 detail; session 38:
        // only set-cookie was named); mid-body, the head had gone before the purge.
        if (storable && moment !== 'mid-body') assert.match(String(r.headers['cache-status']), /; detail=purged$/, `${what}: Cache-Status ${String(r.headers['cache-status'])}`);
        assert.equal(got, moment === 'before-304' ? 1 : length, `${what}: the client got the whole body`);
        const want = storable ? 'purged' : undefined;
        const rec = await within(records.wait((x) => x.requestId === id), 10_000, `${what}: the record`);
        assert.equal(rec.cache, moment === 'before-304' ? 'revalidated' : 'miss', `${what} (${purged})`);
        assert.equal(rec.storeRefused, want, `${what} (${purged}): the record's storeRefused`);
        const line = await gw.logFor(id);
        assert.equal(line.storeRefused, want, `${what}: the access line`);
        assert.equal(await refused('purged'), before + (storable ? 1 : 0), `${what}: gatewise_cache_store_refused_total{reason="purged"}`);
        assert.equal(cache.store.get(key), undefined, `${what}: nothing stored after the purge`);
        assert.equal(cache.keysUnderway, 0, `${what}: every store under way was finished`);
      }
    });
  });
});

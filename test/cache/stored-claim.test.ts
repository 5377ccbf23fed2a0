import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { cacheKey } from '../../src/cache/index.js';
import { startLab } from '../../src/lab/index.js';
import { startTestGateway } from '../helpers/gateway.js';
import { endedRecords, within } from '../helpers/ended-records.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * RFC 9211 §2.6: `stored` says the cache stored the response. The head is sent before the body
 * has passed, so a store refused while the body streams (a body without Content-Length that
 * grows past the route's `maxObjectSize`, or past the whole store) was still said `stored`
 * while the record, the access log and the metric said `too-large` (finding: the lead's list
 * of cache defects). Now a head says `stored` only when the store is decided with it (a
 * Content-Length within the limits); a body of unknown length says nothing of it there, and
 * the record says what happened. A Content-Length just under the whole store was said `stored`
 * too, and refused at its end: the store counts the entry's fields beside its body; the head
 * now counts them as the store does (`entrySize`). Seeded over the framing and the body's size around the
 * route's limit and around the whole store, against the lab origin (`/bytes`, a 200 the cache
 * stores with a heuristic lifetime). Whatever the case: a head that says `stored` names a key
 * the store holds after the response, and a Content-Length the store keeps says it.
 */
const MAX_SIZE = 8192;
const OBJECT = MAX_SIZE / 4;

test('Cache-Status says stored only of a response the store kept (seeded over framing and size)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const lab = await startLab();
  const records = endedRecords();
  const g = await startTestGateway({
    clusters: { lab: { endpoints: [lab.url], outlierDetection: { enabled: false } } },
    routes: [
      // `/big` may keep more than the whole store: the store itself refuses between the two.
      { name: 'big', match: { pathPrefix: '/big/' }, stripPrefix: true, cluster: 'lab', retry: { tries: 1 }, cache: { collapseWait: '0s', maxObjectSize: 4 * MAX_SIZE } },
      { name: 'small', cluster: 'lab', retry: { tries: 1 }, cache: { collapseWait: '0s', maxObjectSize: OBJECT } },
    ],
    cache: { maxSize: MAX_SIZE },
  } as never);
  const base = g.url.replace(/\/$/, '');
  const cache = g.gw.ctx.cache!;
  try {
    await withSeed(rand, async () => {
      for (let i = 0; i < 24; i++) {
        const big = rand.next() < 0.3;
        const chunked = rand.next() < 0.6;
        // Around the limit that decides, and further off: the route's maxObjectSize (a body
        // size), or the whole store, which counts the entry's fields and 256 bytes beside the
        // body (CacheEntry.size; the lab's fields here are some 150 bytes).
        const limit = big ? MAX_SIZE - 400 : OBJECT;
        const near = rand.next() < 0.7;
        const bytes = Math.max(1, near ? limit - (big ? 200 : 3) + rand.int(big ? 400 : 7) : 1 + rand.int(2 * limit));
        const target = `/bytes?n=${bytes}${chunked ? '&chunked=1' : ''}&i=${i}-${rand.seed}`;
        const path = (big ? '/big' : '') + target;
        const what = `case ${i}: ${big ? 'big' : 'small'} route, ${bytes} bytes, ${chunked ? 'chunked' : 'Content-Length'}`;
        const r = await request(base + path);
        const body = await r.body.arrayBuffer();
        assert.equal(r.statusCode, 200, what);
        assert.equal(body.byteLength, bytes, `${what}: the whole body`);
        const cs = String(r.headers['cache-status']);
        const id = String(r.headers['x-request-id']);
        const rec = await within(records.wait((x) => x.requestId === id), 10_000, `${what}: the record`);
        const kept = cache.store.get(cacheKey(`127.0.0.1${path}`, big ? 'big' : 'small')) !== undefined;
        if (!big) assert.equal(kept, bytes <= OBJECT, `${what}: stored iff within maxObjectSize`);
        if (big && bytes > MAX_SIZE) assert.equal(kept, false, `${what}: over the whole store`);
        assert.equal(rec.storeRefused, kept ? undefined : 'too-large', `${what}: the record's storeRefused`);
        const said = /; stored\b/.test(cs);
        if (said) assert.ok(kept, `${what}: Cache-Status ${cs} claims a store that did not happen`);
        // With a Content-Length the head decides the store: it says so whenever it stores.
        if (!chunked) assert.equal(said, kept, `${what}: a Content-Length the store keeps says stored (${cs})`);
        else assert.equal(said, false, `${what}: a body of unknown length says nothing of its store at the head (${cs})`);
        if (!said && kept) assert.doesNotMatch(cs, /detail=/, `${what}: ${cs}`);
        // The next store may evict this one: forget it so each case starts from an empty store.
        cache.invalidateTarget(`127.0.0.1${path}`);
      }
    });
  } finally {
    records.close();
    await g.close();
    await lab.close();
  }
});

import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { test } from 'node:test';
import { request } from 'undici';
import { cacheKey, HTTPS_TARGET, INVALIDATE_CHANNEL } from '../../src/cache/index.js';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { startTestGateway } from '../helpers/gateway.js';
import { endedRecords, within } from '../helpers/ended-records.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * RFC 9111 §4.4 after an unsafe request: each key is forgotten once. `invalidateAfterUnsafe`
 * forgot the request's target as the client wrote it on every cached route to the cluster, then
 * the upstream path it was sent, mapped into each route's path space: on a route without a
 * rewrite both name the same key, which was invalidated twice (and a Location or
 * Content-Location naming the request's own target a third and fourth time). Counted on
 * `gatewise:cache:invalidate` (one message per key forgotten). What is forgotten is the same as
 * before: the request's target on every route (each in its own path space) and what its fields
 * name. Seeded over the route the POST takes and the field its answer carries.
 */
const ROUTES = [
  { name: 'strip', match: { pathPrefix: '/api/' }, stripPrefix: true },
  { name: 'plain' },
];

test('an unsafe request forgets each key once (seeded over route and Location)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const fields = new Map<string, Record<string, string>>();
  const up = await startScriptedUpstream((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method !== 'GET') {
        res.writeHead(201, { ...fields.get(req.url!), 'content-length': '0' });
        res.end();
        return;
      }
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': '2' });
      res.end('ok');
    });
  });
  const records = endedRecords();
  const g = await startTestGateway({
    clusters: { up: { endpoints: [up.url], outlierDetection: { enabled: false } } },
    routes: ROUTES.map((r) => ({ ...r, cluster: 'up', retry: { tries: 1 }, cache: { collapseWait: '0s' } })),
  } as never);
  const base = g.url.replace(/\/$/, '');
  const seen: string[] = [];
  const on = (m: unknown): void => {
    seen.push((m as { key: string }).key);
  };
  subscribe(INVALIDATE_CHANNEL, on);
  try {
    await withSeed(rand, async () => {
      for (let i = 0; i < 12; i++) {
        const item = `/items/${i}-${rand.seed}`;
        const viaStrip = rand.next() < 0.5;
        const field = rand.pick(['none', 'location-self', 'content-location-self', 'location-other'] as const);
        const other = `/items/other-${i}-${rand.seed}`;
        fields.set(item, field === 'none' ? {} : field === 'location-other' ? { location: other } : { [field === 'location-self' ? 'location' : 'content-location']: item });
        const what = `case ${i}: POST via ${viaStrip ? 'strip' : 'plain'}, ${field}`;
        // Stored on both routes: /api/items/… (strip) and /items/… (plain), one upstream path.
        for (const p of ['/api' + item, item]) {
          await (await request(base + p)).body.text();
          const again = await request(base + p);
          await again.body.text();
          assert.match(String(again.headers['cache-status']), /; hit; /, `${what}: ${p} stored`);
        }
        seen.length = 0;
        const post = await request(base + (viaStrip ? '/api' + item : item), { method: 'POST', body: 'x' });
        await post.body.text();
        assert.equal(post.statusCode, 201, what);
        await within(records.wait((r) => r.requestId === String(post.headers['x-request-id'])), 10_000, `${what}: the record`);
        const mine = seen.filter((k) => k.includes(`${i}-${rand.seed}`));
        const counts = new Map<string, number>();
        for (const k of mine) counts.set(k, (counts.get(k) ?? 0) + 1);
        const twice = [...counts].filter(([, n]) => n > 1);
        assert.deepEqual(twice, [], `${what}: keys invalidated more than once: ${JSON.stringify(twice)}`);
        // What is forgotten is what was before: the target on both routes, both schemes.
        for (const [bare, route] of [[`127.0.0.1/api${item}`, 'strip'], [`127.0.0.1${item}`, 'plain']] as const) {
          assert.ok(counts.has(cacheKey(bare, route)), `${what}: ${bare} on ${route} forgotten`);
          assert.ok(counts.has(HTTPS_TARGET + cacheKey(bare, route)), `${what}: https ${bare} on ${route} forgotten`);
        }
        if (field === 'location-other') assert.ok(counts.has(cacheKey(`127.0.0.1${other}`, 'plain')), `${what}: the Location's target forgotten`);
        for (const p of ['/api' + item, item]) {
          const after = await request(base + p);
          await after.body.text();
          assert.match(String(after.headers['cache-status']), /fwd=uri-miss/, `${what}: ${p} gone from the store`);
        }
      }
    });
  } finally {
    unsubscribe(INVALIDATE_CHANNEL, on);
    records.close();
    await g.close();
    await up.close();
  }
});

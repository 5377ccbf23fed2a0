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
 * Collapsed waiters (misses that waited for another request's fetch of their key) woken to a
 * stale copy they may answer with under stale-while-revalidate (the leader stored a response
 * already stale on arrival: `max-age=0, stale-while-revalidate=…`). Serving a stale copy under
 * RFC 5861 §3 goes with a background revalidation, and a stale hit starts one; before session
 * 33 the waiters answered with it and started none, so the entry stayed stale until the next
 * request. Now the first waiter woken so starts one, and the others share it (one per key, not
 * one per waiter). A fresh stored response starts none. Seeded over the number of waiters, the
 * stale-while-revalidate window and whether the stored response is fresh.
 */
test('collapsed waiters answered with a stale-while-revalidate copy start one background revalidation for the key, not one each, and a fresh copy none (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const held = new Map<string, (res: ServerResponse) => void>();
  const up = await startScriptedUpstream((req, res) => {
    const path = req.url!;
    req.resume();
    if (req.headers['if-none-match'] !== undefined) {
      res.writeHead(304, { etag: '"a"', 'cache-control': 'max-age=600' });
      res.end();
      return;
    }
    const w = held.get(path);
    if (w !== undefined) {
      held.delete(path);
      w(res);
      return;
    }
    res.writeHead(200, { etag: '"a"', 'cache-control': 'max-age=600' });
    res.end(`again ${path}`);
  });
  await withCacheGateway(up, { routes: [{ name: 'c', cache: { collapseWait: '30s' } }] }, async ({ g, base, records }) => {
    const cache = g.gw.ctx.cache!;
    const at = (path: string) => up.received.filter((r) => r.url === path);
    await withSeed(rand, async () => {
      for (let i = 0; i < 8; i++) {
        const path = `/w${i}-${rand.seed}`;
        const waiters = 1 + rand.int(6);
        const stale = rand.next() < 0.7;
        const swr = 60 + rand.int(541);
        const cc = stale ? `max-age=0, stale-while-revalidate=${swr}` : `max-age=${swr}`;
        const what = `case ${i}: ${waiters} waiter(s), the leader's response ${cc}`;
        const leaderRes = new Promise<ServerResponse>((resolve) => held.set(path, resolve));
        const leader = request(base + path);
        const res = await within(leaderRes, 10_000, `${what}: the leader at the origin`);
        const key = cacheKey(`127.0.0.1${path}`, 'c');
        const rest = Array.from({ length: waiters }, () => request(base + path));
        assert.ok(await until(() => cache.collapser.waiting(key) === waiters, 10_000), `${what}: the waiters queued (${cache.collapser.waiting(key)})`);
        res.writeHead(200, { etag: '"a"', 'cache-control': cc });
        res.end(`first ${path}`);
        const answers = await Promise.all([leader, ...rest].map(async (p) => {
          const r = await p;
          return { cs: String(r.headers['cache-status']), id: String(r.headers['x-request-id']), body: await r.body.text() };
        }));
        const others = answers.slice(1);
        for (const a of others) {
          assert.equal(a.body, `first ${path}`, `${what}: answered from the leader's response`);
          // A stale copy answered under stale-while-revalidate says so, as a direct stale hit does
          // (before, a woken waiter's member lacked the detail).
          assert.match(a.cs, stale ? /; fwd=uri-miss; ttl=-?\d+; collapsed; detail=stale-while-revalidate$/ : /; fwd=uri-miss; ttl=\d+; collapsed$/, `${what}: ${a.cs}`);
        }
        const ids = new Set(others.map((a) => a.id));
        const started = () => records.matching((x) => x.background === 'revalidation' && ids.has(x.triggeredBy ?? ''));
        if (stale) {
          const rec = await within(records.wait((x) => x.background === 'revalidation' && ids.has(x.triggeredBy ?? '')), 10_000, `${what}: a background revalidation started by a waiter`);
          assert.equal(rec.revalidation, 'refreshed', what);
          assert.equal(at(path).length, 2, `${what}: the leader's request and one revalidation`);
          assert.equal(at(path)[1]!.headers['if-none-match'], '"a"', `${what}: the revalidation`);
          assert.ok(cache.store.get(key)![0]!.ttlMs(Date.now()) > 0, `${what}: freshened`);
        }
        // Every waiter was answered (and any revalidation started) in the leader's wake-up: what is
        // not in flight now was never started.
        assert.equal(cache.collapser.inflight, 0, `${what}: nothing in flight`);
        assert.equal(started().length, stale ? 1 : 0, `${what}: revalidations started by the waiters`);
        assert.equal(at(path).length, stale ? 2 : 1, `${what}: requests at the origin`);
      }
    });
  });
});

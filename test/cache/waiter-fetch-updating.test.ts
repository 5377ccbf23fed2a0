import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { cacheKey } from '../../src/cache/index.js';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom, shuffle, withSeed } from '../helpers/seeded.js';
import { within } from '../helpers/ended-records.js';
import { withCacheGateway } from './cache-gateway.js';
import { until } from '../helpers/until.js';
import { answerStale, cacheGet, fillStale, STALE_ETAG, type Got } from './stale-entry.js';

/**
 * Requests collapsed behind the leader of a stale stored response's key (each forwards: a
 * `no-cache` or `max-age=0` request) that end up fetching for themselves once the leader is
 * over: the leader failed (its answer not HTTP: a 502), its answer was not shareable (`private`),
 * or it was stored but their own request still goes forward (it was stored stale; `no-cache`
 * forwards anyway); or their wait ran out while the leader was held (answered, not stored,
 * before the stale hits). Such a waiter's fetch may refresh the stored response it matched, as the
 * leader's may, but it did not mark it so (`Collapser.refresh`): a stale-while-revalidate hit
 * arriving meanwhile found no fetch of it in flight, was recorded `stale` and started a
 * background revalidation, one more request to the origin beside the waiters' own. Now a waiter
 * going upstream for itself marks it, and such a hit is `updating` and starts none. Seeded over
 * the number of requests (2..6), the leader's fate, the waiters' directives, the stale hits that
 * come while the waiters' fetches are held, and the order and kind of the origin's answers.
 */
type Fate = 'failed' | 'private' | 'stored-stale';
const FATES: readonly Fate[] = ['failed', 'private', 'stored-stale'];

test('a collapsed waiter that fetches for itself marks its stored response refreshing: a stale hit meanwhile is updating and starts no second revalidation (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const origin = await holdingOrigin();
  const { up, held, arrived } = origin;
  const routes = [
    // Its waiters' wait runs out while the leader is held: they go upstream on their own.
    { name: 't', match: { pathPrefix: '/t' }, cache: { collapseWait: '100ms' } },
    { name: 'w', cache: { collapseWait: '60s' } },
  ];
  await withCacheGateway(up, { routes }, async ({ g: gw, base, records }) => {
    const cache = gw.gw.ctx.cache!;
    const collapser = cache.collapser;
    const at = (path: string) => up.received.filter((r) => r.url === path).length;
    await withSeed(rand, async () => {
      for (let i = 0; i < 10; i++) {
        origin.holding = true;
        const n = 2 + rand.int(5);
        // A quarter of the cases: the waiters' wait runs out before the leader is answered (whose
        // answer is then not stored: a stored one would be another response than they fetch for).
        const timedOut = rand.next() < 0.25;
        const fate = timedOut ? rand.pick(['failed', 'private'] as const) : rand.pick(FATES);
        const hits = 1 + rand.int(3);
        const directives = Array.from({ length: n }, () => rand.pick(['no-cache', 'max-age=0'] as const));
        const path = timedOut ? `/t/c${i}-${rand.seed}` : `/w${i}-${rand.seed}`;
        const key = cacheKey(`127.0.0.1${path}`, timedOut ? 't' : 'w');
        const what = `case ${i}: ${n} requests (${directives.join(', ')}), ${timedOut ? 'their wait ran out, then ' : ''}the leader's answer ${fate}, ${hits} stale hit(s)`;
        await fillStale(base, path, what);
        // The leader, then the waiters behind it.
        const leaderAt = arrived(path, 1);
        const leader = cacheGet(base, path, { 'cache-control': directives[0]! });
        leader.catch(() => undefined);
        await within(leaderAt, 10_000, `${what}: the leader at the origin`);
        const waiters: Array<Promise<Got>> = [];
        for (let w = 1; w < n; w++) {
          const p = cacheGet(base, path, { 'cache-control': directives[w]! });
          p.catch(() => undefined);
          waiters.push(p);
        }
        if (timedOut) await within(arrived(path, n), 10_000, `${what}: the waiters at the origin once their wait ran out, the leader held`);
        else assert.ok(await until(() => collapser.waiting(key) === n - 1, 10_000), `${what}: ${n - 1} waiter(s) behind the leader (${collapser.waiting(key)})`);
        const lead = held.get(path)!.shift()!;
        assert.equal(lead.req.headers['if-none-match'], STALE_ETAG, `${what}: the leader validates the stored response`);
        // A status outside 100-599 (not HTTP: a 502, never retried once a response byte came; a
        // cut connection before any byte could be retried as a keep-alive race, to the origin again).
        if (fate === 'failed') lead.res.socket!.end('HTTP/1.1 999 Nope\r\ncontent-length: 0\r\n\r\n');
        else if (fate === 'private') lead.res.writeHead(200, { etag: '"p"', 'cache-control': 'private, max-age=600' }).end('private');
        else lead.res.writeHead(200, { etag: '"b"', 'cache-control': 'max-age=0, stale-while-revalidate=600' }).end('new');
        const led = await within(leader, 10_000, `${what}: the leader's answer`);
        assert.equal(led.status, fate === 'failed' ? 502 : 200, `${what}: the leader's status`);
        // Every waiter now fetches for itself (its request forwards whatever is stored; or its wait ran out).
        await within(arrived(path, n - 1), 10_000, `${what}: the waiters' own fetches at the origin`);
        const tag = fate === 'stored-stale' ? '"b"' : STALE_ETAG;
        for (const h of held.get(path)!) assert.equal(h.req.headers['if-none-match'], tag, `${what}: a waiter validates the stored response`);
        // Stale hits while those fetches are held: a fetch of what they answer with is in flight.
        const hitRecords: string[] = [];
        for (let h = 0; h < hits; h++) {
          const s = await cacheGet(base, path);
          assert.equal(s.body, fate === 'stored-stale' ? 'new' : `old ${path}`, `${what}: stale hit ${h}`);
          assert.match(s.cs, /detail=stale-while-revalidate$/, `${what}: stale hit ${h}: ${s.cs}`);
          const rec = await within(records.wait((x) => x.requestId === s.id), 10_000, `${what}: stale hit ${h}'s record`);
          hitRecords.push(rec.cache ?? 'none');
        }
        // The waiters' answers, in a seeded order: a 304 (refreshed) or a new 200 (stored).
        origin.holding = false;
        const order = shuffle(rand.next, held.get(path)!.splice(0));
        const kinds = new Map<string, '304' | '200'>();
        for (const h of order) {
          const kind = rand.pick(['304', '200'] as const);
          kinds.set(String(h.req.headers['x-request-id']), kind);
          if (kind === '304') h.res.writeHead(304, { etag: tag, 'cache-control': 'max-age=600' }).end();
          else h.res.writeHead(200, { etag: '"c"', 'cache-control': 'max-age=600' }).end('newer');
        }
        for (const p of waiters) {
          const got = await within(p, 10_000, `${what}: a waiter's answer`);
          assert.equal(got.status, 200, `${what}: a waiter's status`);
          const rec = await within(records.wait((x) => x.requestId === got.id), 10_000, `${what}: a waiter's record`);
          const kind = kinds.get(got.id);
          assert.ok(kind !== undefined, `${what}: the waiter's fetch reached the origin with its request id`);
          assert.equal(rec.cache, kind === '304' ? 'revalidated' : 'miss', `${what}: a waiter answered ${kind}: ${got.cs}`);
        }
        assert.ok(await until(() => collapser.inflight === 0 && collapser.refreshingCount === 0 && cache.keysUnderway === 0, 10_000), `${what}: every fetch finished and gave back its marks`);
        // The fill, the leader, each waiter once: nothing else reached the origin.
        assert.equal(at(path), 1 + n, `${what}: requests at the origin (stale hits recorded ${hitRecords.join(', ')})`);
        const bg = records.matching((x) => x.background === 'revalidation' && x.path === path);
        assert.equal(bg.length, 0, `${what}: no background revalidation (${bg.map((x) => x.revalidation).join(', ')})`);
        assert.deepEqual(hitRecords, Array.from({ length: hits }, () => 'updating'), `${what}: the stale hits behind the waiters' fetches`);
      }
    });
  });
});

/**
 * The same without collapsing (`collapseWait: 0s`): a client's `no-cache` or `max-age=0` request
 * for a stale stored response goes upstream at once, neither leader nor waiter, and its fetch may
 * refresh that stored response as theirs may. It did not mark it (`Collapser.refresh` was taken
 * only by a collapsing leader or waiter): a stale-while-revalidate hit while it was held was
 * recorded `stale` and started a background revalidation beside it, one more request to the
 * origin. Seeded over the number of such fetches (1..2), their directives, the stale hits while
 * they are held (1..3), and the order and kind of the origin's answers (a 304, a stored 200, a
 * `private` 200 stored nothing).
 */
test('without collapsing, a no-cache fetch of a stale stored response marks it refreshing: a stale hit meanwhile is updating and starts no revalidation (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const origin = await holdingOrigin();
  const { up, held, arrived } = origin;
  await withCacheGateway(up, { routes: [{ name: 'n', cache: { collapseWait: '0s' } }] }, async ({ g, base, records }) => {
    const cache = g.gw.ctx.cache!;
    const collapser = cache.collapser;
    const at = (path: string) => up.received.filter((r) => r.url === path).length;
    await withSeed(rand, async () => {
      for (let i = 0; i < 10; i++) {
        origin.holding = true;
        const f = 1 + rand.int(2);
        const hits = 1 + rand.int(3);
        const directives = Array.from({ length: f }, () => rand.pick(['no-cache', 'max-age=0'] as const));
        const path = `/n${i}-${rand.seed}`;
        const what = `case ${i}: ${f} fetch(es) (${directives.join(', ')}), ${hits} stale hit(s)`;
        await fillStale(base, path, what);
        const fetches: Array<Promise<Got>> = [];
        for (const d of directives) {
          const p = cacheGet(base, path, { 'cache-control': d });
          p.catch(() => undefined);
          fetches.push(p);
        }
        await within(arrived(path, f), 10_000, `${what}: the fetches at the origin`);
        for (const h of held.get(path)!) assert.equal(h.req.headers['if-none-match'], STALE_ETAG, `${what}: a fetch validates the stored response`);
        assert.equal(collapser.inflight, 0, `${what}: nothing collapses on this route`);
        const hitRecords: string[] = [];
        for (let h = 0; h < hits; h++) {
          const s = await cacheGet(base, path);
          assert.equal(s.body, `old ${path}`, `${what}: stale hit ${h}`);
          assert.match(s.cs, /detail=stale-while-revalidate$/, `${what}: stale hit ${h}: ${s.cs}`);
          const rec = await within(records.wait((x) => x.requestId === s.id), 10_000, `${what}: stale hit ${h}'s record`);
          hitRecords.push(rec.cache ?? 'none');
        }
        origin.holding = false;
        const kinds = new Map<string, '304' | '200' | 'private'>();
        for (const h of shuffle(rand.next, held.get(path)!.splice(0))) {
          const kind = rand.pick(['304', '200', 'private'] as const);
          kinds.set(String(h.req.headers['x-request-id']), kind);
          if (kind === '304') h.res.writeHead(304, { etag: STALE_ETAG, 'cache-control': 'max-age=600' }).end();
          else if (kind === '200') h.res.writeHead(200, { etag: '"c"', 'cache-control': 'max-age=600' }).end('newer');
          else h.res.writeHead(200, { etag: '"p"', 'cache-control': 'private, max-age=600' }).end('private');
        }
        for (const p of fetches) {
          const got = await within(p, 10_000, `${what}: a fetch's answer`);
          assert.equal(got.status, 200, `${what}: a fetch's status`);
          const kind = kinds.get(got.id);
          assert.ok(kind !== undefined, `${what}: the fetch reached the origin with its request id`);
          const rec = await within(records.wait((x) => x.requestId === got.id), 10_000, `${what}: a fetch's record`);
          assert.equal(rec.cache, kind === '304' ? 'revalidated' : 'miss', `${what}: a fetch answered ${kind}: ${got.cs}`);
        }
        assert.ok(await until(() => collapser.inflight === 0 && collapser.refreshingCount === 0 && cache.keysUnderway === 0, 10_000), `${what}: every fetch finished and gave back its marks (${collapser.refreshingCount} marked)`);
        // The fill and each fetch once: nothing else reached the origin.
        assert.equal(at(path), 1 + f, `${what}: requests at the origin (stale hits recorded ${hitRecords.join(', ')})`);
        const bg = records.matching((x) => x.background === 'revalidation' && x.path === path);
        assert.equal(bg.length, 0, `${what}: no background revalidation (${bg.map((x) => x.revalidation).join(', ')})`);
        assert.deepEqual(hitRecords, Array.from({ length: hits }, () => 'updating'), `${what}: the stale hits behind the fetches`);
      }
    });
  });
});

/**
 * The origin both tests use: a path's first request (the fill) is answered stale at once, within
 * stale-while-revalidate; later ones are held, by path in arrival order, while `holding`, for
 * the test to answer; once released, anything later (a revalidation before the fixes) gets a 304.
 */
async function holdingOrigin() {
  const held = new Map<string, Array<{ req: IncomingMessage; res: ServerResponse }>>();
  const arrivals: Array<() => void> = [];
  const origin = {
    holding: true,
    held,
    up: await startScriptedUpstream((req, res) => {
      req.resume();
      const path = req.url!;
      if (origin.up.received.filter((r) => r.url === path).length === 1) {
        answerStale(res, `old ${path}`);
        return;
      }
      if (!origin.holding) {
        res.writeHead(304, { etag: STALE_ETAG, 'cache-control': 'max-age=600' });
        res.end();
        return;
      }
      const list = held.get(path) ?? [];
      list.push({ req, res });
      held.set(path, list);
      for (const w of arrivals.splice(0)) w();
    }),
    /** At least `n` requests for `path` are held. */
    arrived: (path: string, n: number): Promise<void> =>
      new Promise<void>((resolve) => {
        const check = (): void => {
          if ((held.get(path)?.length ?? 0) >= n) resolve();
          else arrivals.push(check);
        };
        check();
      }),
  };
  return origin;
}

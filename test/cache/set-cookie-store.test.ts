import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { CacheEntry, cacheKey } from '../../src/cache/index.js';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { within } from '../helpers/ended-records.js';
import { withCacheGateway } from './cache-gateway.js';
import { counterSum } from './stale-entry.js';

/**
 * Finding (probe, session 37): a response with `Set-Cookie` and `Cache-Control: public` was
 * stored and then answered, with the first client's cookie, to every client from the store
 * (session fixation, one account's session in another's browser). RFC 9111 allows storing it;
 * nginx (proxy_cache) and Varnish (hit-for-miss) never store a response with Set-Cookie by
 * default, and now neither does Gatewise: whatever its Cache-Control, such a response is
 * passed to its client and not stored, recorded as a store refusal `set-cookie` (the record's
 * `storeRefused`, the access line, `gatewise_cache_store_refused_total{reason="set-cookie"}`,
 * Cache-Status `detail=set-cookie`). The exception is the origin's own word that the rest may be
 * shared, `no-cache="set-cookie"` (RFC 9111 §5.2.2.4): stored without the field. And no hit
 * ever carries a Set-Cookie, whatever the store holds (an entry stored before this change, in
 * memory or read back from disk).
 *
 * Seeded over Cache-Control (public, s-maxage, max-age, must-revalidate, none, no-cache="set-cookie")
 * × Set-Cookie (absent, one, several, the name in other cases).
 */
const CCS = ['public, max-age=600', 's-maxage=600', 'max-age=600', 'max-age=600, must-revalidate', undefined, 'max-age=600, no-cache="Set-Cookie"'] as const;
type Cookies = 'absent' | 'one' | 'several' | 'case';
const COOKIES: readonly Cookies[] = ['absent', 'one', 'several', 'case'];
const CASES = ['Set-Cookie', 'set-cookie', 'SET-COOKIE', 'sEt-CoOkIe'];

test('a response with Set-Cookie is not stored (refusal set-cookie) and no hit carries a Set-Cookie (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const plan = new Map<string, { cc: string | undefined; cookies: Cookies; name: string }>();
  let served = 0;
  const up = await startScriptedUpstream((req, res) => {
    req.resume();
    const p = plan.get(req.url!)!;
    const n = ++served;
    const raw: string[] = ['Content-Type', 'text/plain', 'Last-Modified', new Date(Date.now() - 86_400_000).toUTCString()];
    if (p.cc !== undefined) raw.push('Cache-Control', p.cc);
    if (p.cookies !== 'absent') raw.push(p.name, `session=s${n}; HttpOnly`);
    if (p.cookies === 'several') raw.push(p.name, `theme=t${n}`);
    raw.push('Content-Length', String(Buffer.byteLength(`body ${req.url}`)));
    res.writeHead(200, raw);
    res.end(`body ${req.url}`);
  });
  await withCacheGateway(up, { routes: [{ name: 'c', cache: {} }] }, async ({ g, base, records }) => {
    const cache = g.gw.ctx.cache!;
    const refused = () => counterSum(g.registry, 'gatewise_cache_store_refused_total', { route: 'c', reason: 'set-cookie' });
    const get = async (path: string) => {
      const r = await request(base + path);
      const body = await r.body.text();
      const sc = r.headers['set-cookie'];
      return { status: r.statusCode, body, cs: String(r.headers['cache-status']), id: String(r.headers['x-request-id']), cookies: sc === undefined ? [] : Array.isArray(sc) ? sc : [sc] };
    };
    await withSeed(rand, async () => {
      for (let i = 0; i < 16; i++) {
        const cc = rand.pick(CCS);
        const cookies = rand.pick(COOKIES);
        const name = cookies === 'case' ? rand.pick(CASES) : 'Set-Cookie';
        const path = `/r${i}-${rand.seed}`;
        plan.set(path, { cc, cookies, name });
        const what = `case ${i}: Cache-Control ${cc ?? '(none)'}, Set-Cookie ${cookies} (${name})`;
        const key = cacheKey(`127.0.0.1${path}`, 'c');
        const qualified = cc?.includes('no-cache=') === true;
        const refusal = cookies !== 'absent' && !qualified;
        const before = await refused();
        const upBefore = served;
        const first = await get(path);
        assert.equal(first.status, 200, what);
        // The client the origin answered gets its own cookies.
        assert.equal(first.cookies.length, cookies === 'absent' ? 0 : cookies === 'several' ? 2 : 1, `${what}: the first client's cookies`);
        const rec = await within(records.wait((x) => x.requestId === first.id), 10_000, `${what}: the record`);
        assert.equal(rec.storeRefused, refusal ? 'set-cookie' : undefined, `${what}: the record's storeRefused`);
        const line = await g.logFor(first.id);
        assert.equal(line.storeRefused, refusal ? 'set-cookie' : undefined, `${what}: the access line`);
        assert.equal(await refused(), before + (refusal ? 1 : 0), `${what}: gatewise_cache_store_refused_total{reason="set-cookie"}`);
        if (refusal) {
          assert.doesNotMatch(first.cs, /; stored/, `${what}: ${first.cs}`);
          assert.match(first.cs, /detail=set-cookie/, `${what}: Cache-Status names the refusal (${first.cs})`);
          assert.equal(cache.store.get(key), undefined, `${what}: nothing stored`);
        } else {
          assert.match(first.cs, /; stored/, `${what}: ${first.cs}`);
          const stored = cache.store.get(key)?.[0];
          assert.ok(stored !== undefined, `${what}: stored`);
          assert.equal(stored.header('set-cookie'), undefined, `${what}: the store keeps no Set-Cookie`);
        }
        // The next client: never the first one's cookie; a hit from a stored response, else the origin again with its own.
        const second = await get(path);
        assert.equal(second.status, 200, what);
        assert.ok(!second.cookies.some((c) => first.cookies.includes(c)), `${what}: the second client got the first one's cookie: ${second.cookies.join(' | ')}`);
        if (refusal) {
          assert.equal(served, upBefore + 2, `${what}: the second request went to the origin`);
          assert.equal(second.cookies.length, first.cookies.length, `${what}: the second client's own cookies`);
        } else if (/max-age=600/.test(cc ?? '')) {
          assert.match(second.cs, /; hit/, `${what}: ${second.cs}`);
          assert.deepEqual(second.cookies, [], `${what}: a hit carries no Set-Cookie`);
        }
      }
    });
  });
});

test('a stored entry that holds a Set-Cookie (stored before, in memory or from disk) answers hits without it', { timeout: 60_000 }, async () => {
  const up = await startScriptedUpstream((req, res) => {
    req.resume();
    res.writeHead(500);
    res.end();
  });
  await withCacheGateway(up, { routes: [{ name: 'c', cache: {} }] }, async ({ g, base }) => {
    const cache = g.gw.ctx.cache!;
    const now = Date.now();
    for (const [i, name] of CASES.entries()) {
      const path = `/old${i}`;
      const key = cacheKey(`127.0.0.1${path}`, 'c');
      const headers = ['Cache-Control', 'public, max-age=600', name, `session=of-the-first-client-${i}`, name, 'theme=dark', 'Content-Type', 'text/plain'];
      assert.ok(cache.put(new CacheEntry({ key, status: 200, headers, body: Buffer.from('old'), requestTime: now, responseTime: now, varyValues: [] })), 'put');
      for (const method of ['GET', 'HEAD'] as const) {
        const r = await request(base + path, { method });
        await r.body.dump();
        assert.equal(r.statusCode, 200, `${name} ${method}`);
        assert.match(String(r.headers['cache-status']), /; hit/, `${name} ${method}`);
        assert.equal(r.headers['set-cookie'], undefined, `${name} ${method}: a hit carried the stored Set-Cookie`);
      }
    }
    assert.equal(up.received.length, 0, 'every answer was a hit');
  });
});

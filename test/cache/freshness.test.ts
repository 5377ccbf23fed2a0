import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { request } from 'undici';
import { CacheEntry, MemoryStore, ResponseCache, cacheStatusMember } from '../../src/cache/index.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

function entry(headers: string[], responseTime: number, requestTime = responseTime, body = Buffer.from('x')): CacheEntry {
  return new CacheEntry({ key: 'h/p', status: 200, headers, body, requestTime, responseTime, varyValues: [] });
}

test('freshness over max-age × Age × resident time: fresh exactly while Age + resident < max-age; Age out is their floor (seeded)', async () => {
  const rand = seededRandom();
  await withSeed(rand, async () => {
    for (let i = 0; i < 5000; i++) {
      const maxAge = rand.int(4) === 0 ? rand.int(3) : rand.int(1_000_000);
      const age = rand.int(3) === 0 ? 0 : rand.int(Math.max(1, maxAge * 2));
      const t0 = 1_700_000_000_000 + rand.int(1e9);
      // Date at the response time (no apparent age) or earlier than the Age says (Age wins).
      const date = new Date(t0 - rand.int(Math.max(1, age)) * 1000 * (rand.int(2))).toUTCString();
      const e = entry(['Date', date, 'Cache-Control', `max-age=${maxAge}`, 'Age', String(age)], t0);
      const residentMs = rand.int(Math.max(1, maxAge * 2000));
      const now = t0 + residentMs;
      const dateMs = Date.parse(date);
      const initialMs = Math.max(age * 1000, Math.max(0, t0 - dateMs));
      const currentMs = initialMs + residentMs;
      assert.equal(e.ageMs(now), currentMs, `age of max-age=${maxAge} Age=${age} after ${residentMs} ms`);
      assert.equal(e.ttlMs(now) > 0, currentMs < maxAge * 1000, `fresh? max-age=${maxAge} Age=${age} resident ${residentMs} ms`);
      assert.equal(e.ageSeconds(now), Math.floor(currentMs / 1000));
      const cache = new ResponseCache(new MemoryStore(1 << 20));
      cache.put(e);
      const r = cache.lookup('h/p', {}, now);
      assert.equal(r.kind, currentMs < maxAge * 1000 ? 'fresh' : 'forward');
      // A request max-age below the current age asks for validation.
      const reqMax = rand.int(maxAge + 2);
      const r2 = cache.lookup('h/p', { 'cache-control': `max-age=${reqMax}` }, now);
      if (currentMs > reqMax * 1000) assert.equal(r2.kind, 'forward');
      // ttl in Cache-Status is whole seconds rounded down, negative once stale.
      const m = /ttl=(-?\d+)/.exec(cacheStatusMember('g', { hit: true, ttl: e.ttlMs(now) / 1000 }))!;
      assert.equal(Number(m[1]), Math.floor((maxAge * 1000 - currentMs) / 1000));
    }
  });
});

test('s-maxage wins over max-age and Expires in a shared cache; invalid values are stale (seeded)', async () => {
  const rand = seededRandom();
  await withSeed(rand, async () => {
    for (let i = 0; i < 2000; i++) {
      const s = rand.int(100_000);
      const m = rand.int(100_000);
      const t0 = 1_700_000_000_000;
      const date = new Date(t0).toUTCString();
      const e = entry(['Date', date, 'Cache-Control', `max-age=${m}, s-maxage=${s}`, 'Expires', new Date(t0 + rand.int(1e8)).toUTCString()], t0);
      assert.equal(e.lifetimeMs, s * 1000);
      assert.equal(e.noStale, true, 's-maxage forbids serving stale (RFC 9111 §5.2.2.10)');
      const bad = entry(['Date', date, 'Cache-Control', rand.pick([`max-age=${m}a`, `max-age="-${m}"`, `max-age=${m}.5`, 'max-age= 5'])], t0);
      assert.equal(bad.lifetimeMs, 0);
    }
  });
});

test('stale-if-error and serveStaleOn windows (seeded)', async () => {
  const rand = seededRandom();
  await withSeed(rand, async () => {
    const cache = new ResponseCache(new MemoryStore(1 << 20));
    for (let i = 0; i < 3000; i++) {
      const maxAge = rand.int(100);
      const sie = rand.int(200);
      const maxStaleMs = rand.int(300) * 1000;
      const t0 = 1_700_000_000_000;
      const e = entry(['Date', new Date(t0).toUTCString(), 'Cache-Control', `max-age=${maxAge}, stale-if-error=${sie}`], t0);
      const now = t0 + rand.int(400_000);
      const staleMs = Math.max(0, now - t0 - maxAge * 1000);
      const route = { cache, route: 'r', serveStaleOn: new Set(['connection_refused']), maxStaleMs, collapseWaitMs: 0, maxObjectBytes: 1 << 20, bypassAuthorization: true, bypassCookie: true };
      const refused = cache.staleAllowed(e, {}, route, 'connection_refused', undefined, now);
      const other = cache.staleAllowed(e, {}, route, 'dns_timeout', undefined, now);
      const s404 = cache.staleAllowed(e, {}, route, undefined, 404, now);
      assert.equal(other !== undefined, staleMs <= sie * 1000, 'stale-if-error covers any failure within its window');
      assert.equal(refused !== undefined, staleMs <= sie * 1000 || staleMs <= maxStaleMs);
      assert.equal(s404, undefined, 'a 404 is not an error');
    }
  });
});

// ---- over real sockets: an origin that answers max-age=M and Age=A ----------------------

let origin: Server;
let originUrl: string;
let hits = 0;
let gw: TestGateway;

before(async () => {
  origin = createServer((req, res) => {
    hits++;
    const u = new URL(req.url!, 'http://x');
    res.writeHead(200, { 'cache-control': `max-age=${u.searchParams.get('m')}`, age: u.searchParams.get('a')!, 'content-type': 'text/plain' });
    res.end(`body ${req.url}`);
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
  originUrl = `http://127.0.0.1:${(origin.address() as { port: number }).port}`;
  gw = await startTestGateway({ clusters: { o: { endpoints: [originUrl] } }, routes: [{ cluster: 'o', cache: {} }] });
});

after(async () => {
  await gw?.close();
  await new Promise<void>((r) => origin.close(() => r()));
});

test('through the gateway: a response whose Age reaches its max-age is never a hit; one below it is, with Age at least the upstream\'s (seeded)', async () => {
  const rand = seededRandom();
  await withSeed(rand, async () => {
    const base = gw.url.replace(/\/$/, '');
    for (let i = 0; i < 40; i++) {
      const m = rand.int(3) === 0 ? rand.int(3) : 5 + rand.int(100_000);
      const a = rand.int(2) === 0 ? rand.int(m + 1) : m + rand.int(10);
      const path = `/p${i}-${rand.seed}?m=${m}&a=${a}`;
      const first = await request(base + path);
      await first.body.text();
      assert.match(String(first.headers['cache-status']), /fwd=uri-miss/);
      const before = hits;
      const second = await request(base + path);
      const body = await second.body.text();
      assert.equal(body, `body ${path}`);
      const fresh = a + 1 < m; // a second of margin for the time between the two requests
      if (a >= m) {
        assert.equal(hits, before + 1, `max-age=${m} Age=${a}: went upstream again`);
        assert.doesNotMatch(String(second.headers['cache-status']), /hit/);
      } else if (fresh) {
        assert.equal(hits, before, `max-age=${m} Age=${a}: a hit`);
        assert.match(String(second.headers['cache-status']), /; hit; ttl=\d+/);
        assert.ok(Number(second.headers.age) >= a, `Age ${second.headers.age} >= ${a}`);
      }
    }
  });
});

test('HTTP-dates: rfc850-date two-digit years are the most recent past year when more than 50 years ahead (RFC 9110 §5.6.7); the three formats agree (seeded)', async () => {
  const { httpDate } = await import('../../src/cache/cache-control.js');
  const rand = seededRandom();
  const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
  const MON = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const two = (n: number): string => String(n).padStart(2, '0');
  await withSeed(rand, async () => {
    for (let i = 0; i < 3000; i++) {
      const nowYear = 1990 + rand.int(120);
      const now = Date.UTC(nowYear, rand.int(12), 1 + rand.int(28));
      // A date within 49 years either side of now: its two digits name it unambiguously.
      const t = Math.floor((now + (rand.int(2 * 49 * 365) - 49 * 365) * 86_400_000 + rand.int(86_400_000)) / 1000) * 1000;
      const d = new Date(t);
      const rfc850 = `${DAYS[d.getUTCDay()]}, ${two(d.getUTCDate())}-${MON[d.getUTCMonth()]}-${two(d.getUTCFullYear() % 100)} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} GMT`;
      assert.equal(httpDate(rfc850, now), t, `${rfc850} in ${nowYear}`);
      assert.equal(httpDate(d.toUTCString(), now), t, 'IMF-fixdate');
      const asctime = `${d.toUTCString().slice(0, 3)} ${MON[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
      assert.equal(httpDate(asctime, now), t, `asctime ${asctime}`);
    }
  });
  assert.ok(Number.isNaN(httpDate('Thursday, 31-Feb-50 02:01:18 GMT')), 'not a day of February');
  // An Expires in rfc850 form (two-digit year) ahead of the Date is fresh.
  const t0 = Date.UTC(2026, 11, 3);
  assert.ok(entry(['Date', new Date(t0).toUTCString(), 'Expires', 'Thursday, 18-Aug-50 02:01:18 GMT'], t0).lifetimeMs > 20 * 365 * 86_400_000);
});

/**
 * Heuristic freshness (RFC 9111 §4.2.2): 10 % of the time since Last-Modified, at most a day.
 * Finding (adversarial probe, session 37): unbounded, a 404 with a Last-Modified 26 years old
 * was stored fresh for 2.6 years (`ttl=81833164`), with no word from the origin. Traffic Server
 * caps it at a day (`heuristic_max_lifetime`), Squid at three days; RFC 7234 had caches warn
 * once a heuristic age passed 24 hours. Explicit freshness is never capped.
 */
test('heuristic freshness is 10 % of the time since Last-Modified, at most a day; explicit freshness is not capped (seeded)', async () => {
  const rand = seededRandom();
  await withSeed(rand, async () => {
    for (let i = 0; i < 3000; i++) {
      const t0 = 1_700_000_000_000;
      const sinceMs = rand.pick([rand.int(1000), rand.int(86_400_000 * 20), rand.int(86_400_000 * 365 * 40)]);
      const lm = new Date(t0 - sinceMs).toUTCString();
      const status = rand.pick([200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]);
      const e = new CacheEntry({ key: 'h/p', status, headers: ['Date', new Date(t0).toUTCString(), 'Last-Modified', lm], body: Buffer.from('x'), requestTime: t0, responseTime: t0, varyValues: [] });
      const since = t0 - Date.parse(lm);
      assert.equal(e.lifetimeMs, since <= 0 ? 0 : Math.min(Math.floor(since * 0.1), 86_400_000), `${status} Last-Modified ${since} ms before Date`);
      const maxAge = rand.int(86_400 * 3650);
      const explicit = new CacheEntry({ key: 'h/p', status, headers: ['Date', new Date(t0).toUTCString(), 'Last-Modified', lm, 'Cache-Control', `max-age=${maxAge}`], body: Buffer.from('x'), requestTime: t0, responseTime: t0, varyValues: [] });
      assert.equal(explicit.lifetimeMs, maxAge * 1000);
    }
  });
});

test('through the gateway: a 404 with a Last-Modified years old is stored fresh for a day at most', async () => {
  const { startScriptedUpstream } = await import('../helpers/scripted-upstream.js');
  const { withCacheGateway } = await import('./cache-gateway.js');
  const up = await startScriptedUpstream((_req, res) => {
    res.writeHead(404, { date: new Date().toUTCString(), 'last-modified': 'Mon, 01 Jan 2001 00:00:00 GMT', 'content-length': '2' });
    res.end('no');
  });
  await withCacheGateway(up, { routes: [{ name: 'c', cache: {} }] }, async ({ base }) => {
    await (await request(`${base}/gone`)).body.text();
    const r = await request(`${base}/gone`);
    await r.body.text();
    const ttl = Number(/; hit; ttl=(\d+)/.exec(String(r.headers['cache-status']))?.[1]);
    assert.ok(ttl > 86_000 && ttl <= 86_400, `ttl ${ttl}: ${String(r.headers['cache-status'])}`);
  });
});

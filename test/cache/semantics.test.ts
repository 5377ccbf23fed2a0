import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { request } from 'undici';
import { cacheKey } from '../../src/cache/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

/**
 * The cache's rules through real sockets: an origin whose answers are set by the query
 * (cc: Cache-Control, etag, lm: Last-Modified, vary, status, size, delay in ms, gen: a
 * generation the test bumps) and that counts what it is asked per path.
 */
let origin: Server;
let gw: TestGateway;
let base: string;
const seen = new Map<string, IncomingHttpHeaders[]>();
let generation = 1;
/** When set, the origin answers every request with this status and `Cache-Control: max-age=60`. */
let forceStatus: number | undefined;

before(async () => {
  origin = createServer((req, res) => {
    const u = new URL(req.url!, 'http://x');
    const list = seen.get(u.pathname) ?? [];
    list.push(req.headers);
    seen.set(u.pathname, list);
    const q = u.searchParams;
    const answer = (): void => {
      const h: Record<string, string> = { 'content-type': 'text/plain' };
      if (q.has('cc')) h['cache-control'] = q.get('cc')!;
      // etag=lang: one representation per Accept-Language ("lang-<value>"); alias=c:a makes
      // language c the same representation as a (a server that says 304 for it to a's tag).
      const alias = new Map((q.get('alias') ?? '').split(',').filter(Boolean).map((p) => p.split(':') as [string, string]));
      const lang = String(req.headers['accept-language'] ?? '-');
      if (q.has('etag')) h.etag = q.get('etag') === 'lang' ? `"lang-${alias.get(lang) ?? lang}"` : q.get('etag')!;
      if (q.has('lm')) h['last-modified'] = q.get('lm')!;
      if (q.has('vary')) h.vary = q.get('vary')!;
      if (q.has('getonly') && req.method === 'GET') h['x-get-only'] = '1';
      for (const pair of q.get('hdr')?.split(',') ?? []) h[pair.split(':')[0]!] = pair.split(':')[1]!;
      const inm = (req.headers['if-none-match'] ?? '').split(',').map((t) => t.trim());
      if (h.etag !== undefined && inm.includes(h.etag)) {
        // bare304: a 304 with no fields at all; etag304: a 304 naming another entity tag.
        const h304 = q.has('bare304') ? {} : { ...h, 'x-gen': String(generation) };
        if (q.has('etag304')) (h304 as Record<string, string>).etag = q.get('etag304')!;
        res.writeHead(304, h304);
        res.end();
        return;
      }
      if (forceStatus !== undefined) h['cache-control'] = 'max-age=60';
      const status = forceStatus ?? Number(q.get('status') ?? 200);
      const size = Number(q.get('size') ?? 0);
      const body = size > 0 ? Buffer.alloc(size, 'a') : Buffer.from(`${u.pathname} gen ${generation} lang ${req.headers['accept-language'] ?? '-'}`);
      res.writeHead(status, { ...h, 'x-gen': String(generation), 'content-length': String(body.length) });
      // In pieces: the store is filled as the body streams.
      if (size > 0) {
        for (let i = 0; i < body.length; i += 16384) res.write(body.subarray(i, i + 16384));
        res.end();
      } else res.end(req.method === 'HEAD' ? undefined : body);
    };
    const delay = Number(q.get('delay') ?? 0);
    // holdwaiters=N: answer once N requests wait behind this one in the gateway (collapsing);
    // holdcount=N: once N requests for this path arrived here. Bounded (30 s) either way: the
    // test then fails on what it counts, never hangs. Events, not time, on a slow machine.
    const holdWaiters = Number(q.get('holdwaiters') ?? 0);
    const holdCount = Number(q.get('holdcount') ?? 0);
    if (holdWaiters > 0 || holdCount > 0) {
      const key = cacheKey(`127.0.0.1${req.url}`, req.url!.startsWith('/short') ? 'short-collapse' : 'cached');
      const until = Date.now() + 30_000;
      const poll = (): void => {
        if (Date.now() > until || (holdWaiters > 0 && gw.gw.ctx.cache!.collapser.waiting(key) >= holdWaiters) || (holdCount > 0 && count(u.pathname) >= holdCount)) answer();
        else setTimeout(poll, 5);
      };
      poll();
    } else if (delay > 0) setTimeout(answer, delay);
    else answer();
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
  const port = (origin.address() as { port: number }).port;
  gw = await startTestGateway({
    clusters: { o: { endpoints: [`http://127.0.0.1:${port}`] } },
    routes: [
      { name: 'short-collapse', match: { pathPrefix: '/short' }, cluster: 'o', cache: { collapseWait: '100ms' } },
      // Requests with Authorization share the store here (the default passes them by): RFC 9111 §3.5's storing rule.
      { name: 'shared-auth', match: { pathPrefix: '/shared-auth' }, cluster: 'o', cache: { bypassOn: [] } },
      { name: 'cached', cluster: 'o', cache: { maxObjectSize: 100_000 } },
    ],
  });
  base = gw.url.replace(/\/$/, '');
});

after(async () => {
  await gw?.close();
  await new Promise<void>((r) => origin.close(() => r()));
});

async function get(path: string, init: { method?: 'GET' | 'HEAD' | 'POST' | 'DELETE'; headers?: Record<string, string> } = {}) {
  const r = await request(base + path, { method: init.method ?? 'GET', headers: init.headers });
  const body = await r.body.text();
  return { status: r.statusCode, headers: r.headers, body, cs: String(r.headers['cache-status']) };
}

const count = (p: string): number => seen.get(p)?.length ?? 0;

describe('storing and reuse', () => {
  test('a fresh response is a hit with Age and ttl; the body is the stored one', async () => {
    const a = await get('/fresh?cc=max-age=60');
    assert.match(a.cs, /fwd=uri-miss; fwd-status=200; stored$/);
    const b = await get('/fresh?cc=max-age=60');
    assert.equal(b.body, a.body);
    // The origin's Date has whole seconds, so the copy may arrive up to a second old (§4.2.3's
    // apparent age): Age and ttl move together, ttl = 60 - age rounded down.
    const ttl = Number(/; hit; ttl=(\d+)$/.exec(b.cs)?.[1]);
    const age = Number(b.headers.age);
    assert.ok(age >= 0 && age <= 2, `Age ${String(b.headers.age)}`);
    assert.ok(ttl + age === 59 || ttl + age === 60, `${b.cs} with Age ${age}`);
    assert.equal(count('/fresh'), 1);
  });

  test('no-store, private and Authorization (without public/s-maxage/must-revalidate) are not stored', async () => {
    for (const [path, headers] of [
      ['/nostore?cc=no-store,max-age=60', {}],
      ['/private?cc=private,max-age=60', {}],
      ['/shared-auth/auth?cc=max-age=60', { authorization: 'Basic YTpi' }],
    ] as const) {
      await get(path, { headers });
      const b = await get(path, { headers });
      assert.doesNotMatch(b.cs, /hit/, path);
    }
    assert.equal(count('/nostore'), 2);
    assert.equal(count('/private'), 2);
    assert.equal(count('/shared-auth/auth'), 2);
    await get('/shared-auth/auth-public?cc=public,max-age=60', { headers: { authorization: 'Basic YTpi' } });
    assert.match((await get('/shared-auth/auth-public?cc=public,max-age=60', { headers: { authorization: 'Basic YTpi' } })).cs, /hit/);
  });

  test('a body larger than maxObjectSize is passed through whole and not stored', async () => {
    const a = await get('/big?cc=max-age=60&size=150000');
    assert.equal(a.body.length, 150000);
    const b = await get('/big?cc=max-age=60&size=150000');
    assert.equal(b.body.length, 150000);
    assert.equal(count('/big'), 2);
    // Within the limit, streamed in pieces: stored whole.
    const c = await get('/mid?cc=max-age=60&size=90000');
    const d = await get('/mid?cc=max-age=60&size=90000');
    assert.equal(d.body, c.body);
    assert.match(d.cs, /hit/);
  });

  test('Vary: each variant is stored and selected by the request header; another value is a vary-miss', async () => {
    const en = await get('/vary?cc=max-age=60&vary=accept-language', { headers: { 'accept-language': 'en' } });
    const de = await get('/vary?cc=max-age=60&vary=accept-language', { headers: { 'accept-language': 'de' } });
    assert.match(de.cs, /fwd=vary-miss/);
    assert.match((await get('/vary?cc=max-age=60&vary=accept-language', { headers: { 'accept-language': 'en' } })).body, /lang en/);
    const de2 = await get('/vary?cc=max-age=60&vary=accept-language', { headers: { 'accept-language': 'de' } });
    assert.equal(de2.body, de.body);
    assert.match(de2.cs, /hit/);
    assert.notEqual(en.body, de.body);
    assert.equal(count('/vary'), 2);
  });

  test('HEAD is answered from a GET entry; Range from a complete entry (206); If-None-Match gets a 304 from the cache', async () => {
    const a = await get('/rep?cc=max-age=60&etag="v1"');
    const h = await get('/rep?cc=max-age=60&etag="v1"', { method: 'HEAD' });
    assert.equal(h.status, 200);
    assert.equal(h.body, '');
    assert.equal(h.headers['content-length'], String(Buffer.byteLength(a.body)));
    assert.match(h.cs, /hit/);
    const r = await get('/rep?cc=max-age=60&etag="v1"', { headers: { range: 'bytes=1-4' } });
    assert.equal(r.status, 206);
    assert.equal(r.body, a.body.slice(1, 5));
    assert.equal(r.headers['content-range'], `bytes 1-4/${Buffer.byteLength(a.body)}`);
    const n = await get('/rep?cc=max-age=60&etag="v1"', { headers: { 'if-none-match': '"v1"' } });
    assert.equal(n.status, 304);
    assert.equal(count('/rep'), 1);
  });
});

describe('validation', () => {
  test('a stale entry is revalidated with its ETag; the 304 refreshes it and the client gets the stored body', async () => {
    const a = await get('/val?cc=max-age=0&etag="e1"');
    const b = await get('/val?cc=max-age=0&etag="e1"');
    assert.equal(b.status, 200);
    assert.equal(b.body, a.body);
    assert.match(b.cs, /fwd=stale; fwd-status=304; ttl=-?\d+$/);
    assert.equal(seen.get('/val')![1]!['if-none-match'], '"e1"');
    assert.equal(b.headers['x-gen'], String(generation), 'headers updated from the 304');
  });

  test('Last-Modified is sent as If-Modified-Since', async () => {
    const lm = 'Wed, 01 Jan 2020 00:00:00 GMT';
    await get(`/lm?cc=max-age=0&lm=${encodeURIComponent(lm)}`);
    await get(`/lm?cc=max-age=0&lm=${encodeURIComponent(lm)}`);
    assert.equal(seen.get('/lm')![1]!['if-modified-since'], lm);
  });
});

describe('invalidation and errors', () => {
  test('a successful POST to the URI invalidates the stored response', async () => {
    await get('/inv?cc=max-age=60');
    assert.match((await get('/inv?cc=max-age=60')).cs, /hit/);
    const p = await get('/inv?cc=max-age=60', { method: 'POST' });
    assert.match(p.cs, /fwd=bypass; fwd-status=200/);
    assert.match((await get('/inv?cc=max-age=60')).cs, /fwd=uri-miss/);
  });

  test('an upstream 5xx never replaces a good entry, even one that says max-age', async () => {
    const good = await get('/five?cc=max-age=0');
    forceStatus = 500;
    try {
      const bad = await get('/five?cc=max-age=0');
      assert.equal(bad.status, 500, 'not in serveStaleOn, no stale-if-error: passed on');
      assert.doesNotMatch(bad.cs, /stored/);
    } finally {
      forceStatus = undefined;
    }
    // The key is the target (the host without port, the path with its query), then the route.
    const entries = gw.gw.ctx.cache!.store.get(cacheKey('127.0.0.1/five?cc=max-age=0', 'cached'));
    assert.equal(entries?.length, 1);
    assert.equal(entries[0]!.status, 200);
    assert.equal(entries[0]!.body.toString(), good.body);
  });

  test('a gateway-made answer is never stored', async () => {
    const g = await startTestGateway({ clusters: { none: { endpoints: ['http://127.0.0.1:1'], waitForEndpoint: { timeout: '0s' } } }, routes: [{ cluster: 'none', cache: {}, retry: { tries: 1 } }] });
    try {
      const r = await request(`${g.url.replace(/\/$/, '')}/gone`);
      await r.body.text();
      assert.equal(r.statusCode, 502);
      assert.match(String(r.headers['cache-status']), /fwd=uri-miss$/);
      assert.equal(g.gw.ctx.cache!.store.entries, 0);
    } finally {
      await g.close();
    }
  });
});

describe('collapsing and stale-while-revalidate', () => {
  test('concurrent misses for one key go upstream once; the others are answered from the stored response', async () => {
    const n = 12;
    const rs = await Promise.all(Array.from({ length: n }, () => get(`/collapse?cc=max-age=60&holdwaiters=${n - 1}`)));
    assert.equal(count('/collapse'), 1);
    for (const r of rs) assert.equal(r.body, rs[0]!.body);
    assert.equal(rs.filter((r) => /collapsed/.test(r.cs)).length, n - 1);
  });

  test('the wait is bounded: past collapseWait the waiters go upstream themselves', async () => {
    // The leader's answer is held until all four reached the origin: the three waiters can only
    // get there by giving up their wait (collapseWait 100ms).
    const rs = await Promise.all(Array.from({ length: 4 }, () => get('/short/c?cc=max-age=60&holdcount=4')));
    assert.equal(count('/short/c'), 4);
    for (const r of rs) assert.equal(r.status, 200);
  });

  test('stale-while-revalidate: the stale copy answers at once and one background request refreshes it', async () => {
    generation = 10;
    const a = await get('/swr?cc=max-age=1,stale-while-revalidate=60');
    await new Promise((r) => setTimeout(r, 2100));
    generation = 11;
    const b = await get('/swr?cc=max-age=1,stale-while-revalidate=60');
    assert.equal(b.body, a.body, 'the stale copy');
    assert.match(b.cs, /hit; ttl=-\d+; detail=stale-while-revalidate/);
    const deadline = Date.now() + 20_000;
    while (count('/swr') < 2) {
      if (Date.now() > deadline) throw new Error('no background revalidation');
      await new Promise((r) => setTimeout(r, 10));
    }
    let c = await get('/swr?cc=max-age=1,stale-while-revalidate=60');
    // The refreshed response is stored once its body completes.
    for (const until = Date.now() + 20_000; !/gen 11/.test(c.body) && Date.now() < until; ) {
      await new Promise((r) => setTimeout(r, 10));
      c = await get('/swr?cc=max-age=1,stale-while-revalidate=60');
    }
    assert.match(c.body, /gen 11/);
    assert.match(c.cs, /hit/);
    assert.equal(count('/swr'), 2);
  });
});

describe('only-if-cached (RFC 9111 §5.2.1.7)', () => {
  const oic = { 'cache-control': 'only-if-cached' };
  test('a miss is a 504 the gateway made (proxy_internal_response), nothing goes upstream and nothing is stored', async () => {
    const r = await get('/oic-miss?cc=max-age=60', { headers: oic });
    assert.equal(r.status, 504);
    assert.equal(count('/oic-miss'), 0, 'the upstream was not asked');
    assert.match(String(r.headers['proxy-status']), /;error=proxy_internal_response;details="only-if-cached: nothing stored for this request"/);
    assert.match(r.cs, /; detail=only-if-cached$/);
    assert.doesNotMatch(r.cs, /fwd=|stored/);
    const line = await gw.logFor(String(r.headers['x-request-id']));
    assert.equal(line.error, 'proxy_internal_response');
    assert.equal(line.reason, 'only_if_cached');
    // Still a miss afterwards: the 504 was not stored.
    assert.match((await get('/oic-miss?cc=max-age=60')).cs, /fwd=uri-miss/);
  });

  test('the miss is not called retryable: the same request fails the same way until something is stored (problem+json and the page)', async () => {
    const p = await get('/oic-advice?cc=max-age=60', { headers: { ...oic, accept: 'application/problem+json' } });
    assert.equal(p.status, 504);
    const problem = JSON.parse(p.body) as { retryable: boolean; status: number };
    assert.equal(problem.status, 504);
    assert.equal(problem.retryable, false, p.body);
    const t = await get('/oic-advice?cc=max-age=60', { headers: { ...oic, accept: 'text/plain' } });
    assert.match(t.body, /without only-if-cached/, t.body);
    assert.doesNotMatch(t.body, /Retrying later may help/, t.body);
  });

  test('a fresh stored response answers; a stale one is a 504 (even with stale-if-error), unless max-stale allows it', async () => {
    await get('/oic-hit?cc=max-age=60');
    const hit = await get('/oic-hit?cc=max-age=60', { headers: oic });
    assert.equal(hit.status, 200);
    assert.match(hit.cs, /hit/);
    await get('/oic-stale?cc=max-age=1,stale-if-error=600');
    await new Promise((r) => setTimeout(r, 2100));
    const before = count('/oic-stale');
    const stale = await get('/oic-stale?cc=max-age=1,stale-if-error=600', { headers: oic });
    assert.equal(stale.status, 504);
    assert.match(String(stale.headers['proxy-status']), /only-if-cached: the stored response may not be used/);
    const allowed = await get('/oic-stale?cc=max-age=1,stale-if-error=600', { headers: { 'cache-control': 'only-if-cached, max-stale=60' } });
    assert.equal(allowed.status, 200);
    assert.match(allowed.cs, /hit/);
    assert.equal(count('/oic-stale'), before, 'the upstream was not asked');
  });
});

describe('must-understand and HEAD', () => {
  test('must-understand (RFC 9111 §5.2.2.3): an unknown status is not stored even with max-age; a known one is stored despite no-store', async () => {
    const a = await get('/mu599?status=599&cc=max-age=3600,must-understand');
    assert.equal(a.status, 599);
    assert.doesNotMatch(a.cs, /stored/);
    assert.match((await get('/mu599?status=599&cc=max-age=3600,must-understand')).cs, /fwd=uri-miss/);
    // Without must-understand the same status with explicit freshness is stored (RFC 9111 §3).
    assert.match((await get('/plain599?status=599&cc=max-age=3600')).cs, /stored/);
    assert.match((await get('/mu200?cc=max-age=3600,must-understand,no-store')).cs, /stored/);
    assert.match((await get('/mu200?cc=max-age=3600,must-understand,no-store')).cs, /hit/);
    assert.match((await get('/ns200?cc=max-age=3600,no-store')).cs, /fwd=uri-miss; fwd-status=200$/);
  });

  test('a HEAD that freshens a stale GET entry is answered from it: stored fields the HEAD answer left out are kept (RFC 9111 §4.3.5)', async () => {
    // max-age=3: the origin's Date has whole seconds, so a copy can arrive up to a second old
    // and a one-second lifetime could already be spent when the next GET asks for it.
    const path = '/headretain?cc=max-age=3&etag=%22h1%22&getonly=1';
    const g = await get(path);
    assert.equal(g.headers['x-get-only'], '1');
    await new Promise((r) => setTimeout(r, 3100));
    const h = await get(path, { method: 'HEAD' });
    assert.equal(h.status, 200);
    assert.equal(h.headers['x-get-only'], '1', 'kept from the stored GET');
    assert.match(h.cs, /fwd-status=200; ttl=[0-3]$/);
    assert.equal(seen.get('/headretain')!.length, 2, 'the HEAD went upstream');
    // The entry is fresh again: the next GET is a hit with the stored body.
    const again = await get(path);
    assert.match(again.cs, /hit/);
    assert.equal(again.body, g.body);
  });
});

test('qualified no-cache="a" (RFC 9111 §5.2.2.4): the response is reused without the named fields; unqualified no-cache is validated every time', async () => {
  const path = '/ncq?cc=no-cache=%22x-a%22,max-age=3600&hdr=x-a:1,x-b:2';
  const first = await get(path);
  assert.equal(first.headers['x-a'], '1', 'the upstream\'s answer is passed on whole');
  const hit = await get(path);
  assert.match(hit.cs, /hit/);
  assert.equal(hit.headers['x-a'], undefined, 'a named field is never sent from the store');
  assert.equal(hit.headers['x-b'], '2');
  assert.equal(count('/ncq'), 1);
  await get('/ncu?cc=no-cache,max-age=3600');
  assert.match((await get('/ncu?cc=no-cache,max-age=3600')).cs, /fwd=stale/);
  assert.equal(count('/ncu'), 2);
});

test('a Vary miss validated with the one stored entity tag: a 304 without an ETag selects that variant, the client (who asked nothing conditional) gets a 200', async () => {
  const path = '/varybare?cc=max-age=60&etag=%22v1%22&vary=accept-language&bare304=1';
  const a = await get(path, { headers: { 'accept-language': 'a' } });
  assert.equal(a.status, 200);
  const b = await get(path, { headers: { 'accept-language': 'b' } });
  assert.equal(seen.get('/varybare')!.at(-1)!['if-none-match'], '"v1"', 'the stored variant\'s tag was sent');
  assert.equal(b.status, 200);
  assert.equal(b.body, a.body);
  assert.match(b.cs, /fwd=vary-miss; fwd-status=304/);
});

describe('a 304 that names no stored response the cache nominated (RFC 9111 §4.3.4)', () => {
  test('several variants\' tags sent, a 304 without an ETag: nothing is updated, the request is sent again without them and the client (who asked nothing conditional) gets a 200', async () => {
    const path = '/varyamb?cc=max-age=60&etag=lang&vary=accept-language&bare304=1&alias=c:a,e:a';
    const a = await get(path, { headers: { 'accept-language': 'a' } });
    const b = await get(path, { headers: { 'accept-language': 'b' } });
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    const stored = gw.gw.ctx.cache!.store.get(cacheKey(`127.0.0.1${path}`, 'cached'))!.map((e) => e.headers.join('|'));
    const c = await get(path, { headers: { 'accept-language': 'c' } });
    const sent = seen.get('/varyamb')!;
    assert.equal(sent[2]!['if-none-match'], '"lang-b", "lang-a"', 'both stored tags were nominated');
    assert.equal(c.status, 200, `a 304 naming none of them is not passed on: ${c.cs}`);
    assert.match(c.body, /lang c/);
    assert.equal(sent.length, 4, 'sent again');
    assert.equal(sent[3]!['if-none-match'], undefined, 'the second time without the stored tags');
    assert.match(c.cs, /fwd=vary-miss; fwd-status=200; stored$/);
    assert.deepEqual(gw.gw.ctx.cache!.store.get(cacheKey(`127.0.0.1${path}`, 'cached'))!.slice(1).map((e) => e.headers.join('|')), stored, 'the stored variants were not updated');
    // A client that asked a condition of its own: the second time its condition goes upstream, and the 304 is its answer.
    const e = await get(path, { headers: { 'accept-language': 'e', 'if-none-match': '"lang-a"' } });
    assert.equal(e.status, 304, e.cs);
    assert.equal(sent.at(-2)!['if-none-match'], '"lang-a", "lang-b"', 'the stored tags first (each once)');
    assert.equal(sent.at(-1)!['if-none-match'], '"lang-a"', 'then the client\'s own');
  });

  test('several variants\' tags sent, a 304 with an ETag that is none of them: the same', async () => {
    const path = '/varyother?cc=max-age=60&etag=lang&vary=accept-language&etag304=%22zz%22&alias=c:a';
    await get(path, { headers: { 'accept-language': 'a' } });
    await get(path, { headers: { 'accept-language': 'b' } });
    const c = await get(path, { headers: { 'accept-language': 'c' } });
    assert.equal(c.status, 200, c.cs);
    assert.match(c.body, /lang c/);
    assert.equal(count('/varyother'), 4);
  });

  test('several variants\' tags sent, a 304 naming one: that variant is updated and answers', async () => {
    const path = '/varyone?cc=max-age=60&etag=lang&vary=accept-language&alias=c:a';
    const a = await get(path, { headers: { 'accept-language': 'a' } });
    await get(path, { headers: { 'accept-language': 'b' } });
    const c = await get(path, { headers: { 'accept-language': 'c' } });
    assert.equal(c.status, 200);
    assert.equal(c.body, a.body, 'the stored body of the variant the 304 named');
    assert.match(c.cs, /fwd=vary-miss; fwd-status=304/);
    assert.equal(count('/varyone'), 3);
  });

  test('one stored response validated, a 304 naming another strong entity tag: nothing is freshened (RFC 9111 §4.3.4), the request is sent again as the client sent it, and the client gets the current 200', async () => {
    const path = '/other304?cc=max-age=0&etag=%22e1%22&etag304=%22e9%22';
    await get(path);
    generation++;
    const b = await get(path);
    const sent = seen.get('/other304')!;
    assert.equal(sent[1]!['if-none-match'], '"e1"');
    assert.equal(sent.length, 3, 'sent again');
    assert.equal(sent[2]!['if-none-match'], undefined, 'the second time without the stored tag');
    assert.equal(b.status, 200);
    assert.equal(b.headers['x-gen'], String(generation), 'the current response');
    assert.match(b.body, new RegExp(`gen ${generation}`), 'the current body, not the stored one');
    assert.match(b.cs, /fwd=stale; fwd-status=200; stored$/);
  });
});

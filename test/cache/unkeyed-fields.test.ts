import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { withCacheGateway } from './cache-gateway.js';

/**
 * Request fields that some upstreams read as another URL or another method (Symfony and IIS
 * read X-Original-URL / X-Rewrite-URL as the path; frameworks with a method-override
 * middleware read X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override), which the cache
 * key does not name. Finding (adversarial probe, session 37): a GET /home with
 * `X-Original-URL: /admin` went upstream with it and the upstream's answer for /admin was
 * stored under /home for every client (web cache poisoning, Kettle 2018). Such a GET now
 * neither reads nor fills the store: `cache-status: …; fwd=bypass; detail=unkeyed-field`, the
 * access log's `bypass: unkeyed-field`. The field still goes upstream as sent.
 * Finding (review of session 37): under `underscoreHeaders: forward` the underscore spelling
 * `X_Original_URL` (which PHP, CGI and IIS read as HTTP_X_ORIGINAL_URL, the same field) was not
 * recognised, and its answer for /admin was stored under /home; every spelling is now.
 */
const FIELDS = ['x-original-url', 'x-rewrite-url', 'x-http-method-override', 'x-http-method', 'x-method-override'];

test('a GET with a field an upstream may read as another URL or method neither fills nor reads the store (seeded over the fields and their spelling)', async () => {
  const up = await startScriptedUpstream((req, res) => {
    // An upstream that honours them, in either spelling (as CGI reads them): the answer follows the field, not the request line.
    const which = Object.entries(req.headers).find(([n]) => FIELDS.includes(n.replaceAll('_', '-')))?.[1];
    const body = which === undefined ? `page ${req.url}` : `rewritten to ${String(which)}`;
    res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': String(Buffer.byteLength(body)) });
    res.end(body);
  });
  await withCacheGateway(up, { routes: [{ name: 'c', cache: {} }], config: { underscoreHeaders: 'forward' } }, async ({ base, records }) => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let i = 0; i < 20; i++) {
        const path = `/home-${rand.seed}-${i}`;
        const field = rand.pick(FIELDS);
        const cased = rand.pick([field, field.toUpperCase(), field.replace(/(^|-)([a-z])/g, (_m, d: string, c: string) => d + c.toUpperCase())]);
        // Dashes, underscores (X_Original_URL), or a mix of both: one field to CGI, PHP and IIS.
        const name = rand.pick([cased, cased.replaceAll('-', '_'), cased.replace('-', '_')]);
        const value = rand.pick(['/admin', 'DELETE', '/other?x=1']);
        const storedFirst = rand.int(2) === 0;
        if (storedFirst) await (await request(base + path)).body.text();
        const poisoned = await request(base + path, { headers: { [name]: value } });
        assert.equal(await poisoned.body.text(), `rewritten to ${value}`, `case ${i}: the field went upstream as sent and its answer came back`);
        assert.match(String(poisoned.headers['cache-status']), /; fwd=bypass; fwd-status=200; detail=unkeyed-field$/, `case ${i} (${name})`);
        const id = String(poisoned.headers['x-request-id']);
        const rec = await records.wait((r) => r.requestId === id);
        assert.equal(rec.cache, 'bypass');
        assert.equal(rec.bypass, 'unkeyed-field');
        const clean = await request(base + path);
        assert.equal(await clean.body.text(), `page ${path}`, `case ${i} (${name}: ${value}): a client without the field got the answer to it`);
        assert.match(String(clean.headers['cache-status']), storedFirst ? /; hit;/ : /fwd=uri-miss; fwd-status=200; stored/);
      }
    });
  });
});

/**
 * Finding (review of session 37): a value that changes nothing turned the cache off too —
 * `X-Original-URL: /home` on `GET /home`, `X-HTTP-Method-Override: GET` — so behind a front end
 * that adds X-Original-URL to every request nothing was ever stored. Now a URL field passes the
 * request by only when it names another target than the key (compared as the key names it: the
 * path normalised as a request's, the query as sent), a method field only when it names a method
 * other than GET or HEAD (any case).
 */
test('a URL field naming the request\'s own target, or a method field saying GET or HEAD, leaves the GET cached; another value passes it by (seeded)', async () => {
  const URL_FIELDS = FIELDS.slice(0, 2);
  const METHOD_FIELDS = FIELDS.slice(2);
  const up = await startScriptedUpstream((req, res) => {
    let url = req.url!;
    let method = 'GET';
    for (const [n, v] of Object.entries(req.headers)) {
      const f = n.replaceAll('_', '-');
      if (URL_FIELDS.includes(f)) url = String(v);
      if (METHOD_FIELDS.includes(f)) method = String(v).toUpperCase();
    }
    // The resource the field makes it: the same for every spelling of one target, and for GET and HEAD.
    const target = decodeURIComponent(url).replace(/\/+/g, '/');
    const body = method === 'GET' || method === 'HEAD' ? `page ${target}` : `${method} ${target}`;
    res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': String(Buffer.byteLength(body)) });
    res.end(body);
  });
  await withCacheGateway(up, { routes: [{ name: 'c', cache: {} }], config: { underscoreHeaders: 'forward' } }, async ({ base, records }) => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let i = 0; i < 24; i++) {
        const query = rand.pick(['', '?q=1']);
        const path = `/home-${rand.seed}-${i}${query}`;
        const urlField = rand.int(2) === 0;
        const field = rand.pick(urlField ? URL_FIELDS : METHOD_FIELDS);
        const name = rand.pick([field, field.toUpperCase(), field.replaceAll('-', '_')]);
        const harmless = rand.int(2) === 0;
        const value = urlField
          ? harmless
            ? rand.pick([path, path.replace('/home', '/%68ome'), path.replace('/home', '/%68%6F%6De'), '/' + path, path.replace('-', '%2D')])
            : rand.pick(['/admin', `${path}x`, query === '' ? `${path}?q=2` : path.slice(0, -query.length), path.toUpperCase()])
          : harmless
            ? rand.pick(['GET', 'get', 'HEAD', 'Head'])
            : rand.pick(['DELETE', 'post', 'PUT', 'GET, DELETE', 'GETX']);
        const storedFirst = rand.int(2) === 0;
        if (storedFirst) await (await request(base + path)).body.text();
        const r = await request(base + path, { headers: { [name]: value } });
        const body = await r.body.text();
        const what = `case ${i}: ${path} with ${name}: ${value}`;
        if (harmless) {
          assert.equal(body, `page /home-${rand.seed}-${i}${query}`, what);
          assert.match(String(r.headers['cache-status']), storedFirst ? /; hit;/ : /fwd=uri-miss; fwd-status=200; stored/, what);
        } else {
          assert.match(String(r.headers['cache-status']), /; fwd=bypass; fwd-status=200; detail=unkeyed-field$/, what);
          const rec = await records.wait((x) => x.requestId === String(r.headers['x-request-id']));
          assert.equal(rec.bypass, 'unkeyed-field', what);
        }
        const clean = await request(base + path);
        assert.equal(await clean.body.text(), `page ${path}`, `${what}: a client without the field`);
        assert.match(String(clean.headers['cache-status']), storedFirst || harmless ? /; hit;/ : /fwd=uri-miss; fwd-status=200; stored/, what);
      }
    });
  });
});

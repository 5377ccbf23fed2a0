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

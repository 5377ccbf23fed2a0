import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { startTestGateway } from '../helpers/gateway.js';
import { seededRandom, withSeed, type Rand } from '../helpers/seeded.js';

/**
 * A `caseInsensitive` route that strips or rewrites its prefix sends the same upstream path
 * whatever the client's casing of the prefix (`/API/items/7`, `/api/items/7`: `/items/7`), but
 * keyed the client's spelling: one stored copy per casing, and an upstream's `Location:
 * /items/7` mapped back through the prefix as configured (`/Api/items/7`) named none of the
 * stored ones unless a client happened to spell it so (finding: the lead's list of cache
 * defects; `clientPaths` uses the configured prefix, keys used the request's). The key of such a
 * route now spells the prefix as configured, as the mapping does: every casing is one key, and
 * a POST under any casing, its own target or its Location, forgets it. Seeded over the casings
 * of the GETs and the POST and over the field.
 */
const PREFIX = 'Api';

function casing(rand: Rand): string {
  return [...PREFIX].map((c) => (rand.next() < 0.5 ? c.toLowerCase() : c.toUpperCase())).join('');
}

test('a caseInsensitive route with a rewrite keys the prefix as configured: any casing hits, and invalidation reaches it (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const location = new Map<string, Record<string, string>>();
  const up = await startScriptedUpstream((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method === 'POST') {
        res.writeHead(201, { ...location.get(req.url!), 'content-length': '0' });
        res.end();
        return;
      }
      const body = `v${up.received.filter((r) => r.url === req.url && r.method === 'GET').length} of ${req.url}`;
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': String(Buffer.byteLength(body)) });
      res.end(body);
    });
  });
  const g = await startTestGateway({
    clusters: { up: { endpoints: [up.url], outlierDetection: { enabled: false } } },
    routes: [
      { name: 'ci-strip', match: { pathPrefix: `/${PREFIX}/`, caseInsensitive: true }, stripPrefix: true, cluster: 'up', retry: { tries: 1 }, cache: { collapseWait: '0s' } },
      { name: 'ci-rewrite', match: { pathPrefix: `/V2${PREFIX}/`, caseInsensitive: true }, rewritePrefix: '/internal/', cluster: 'up', retry: { tries: 1 }, cache: { collapseWait: '0s' } },
    ],
  } as never);
  const base = g.url.replace(/\/$/, '');
  const get = async (path: string) => {
    const r = await request(base + path);
    return { body: await r.body.text(), cs: String(r.headers['cache-status']) };
  };
  try {
    await withSeed(rand, async () => {
      for (let i = 0; i < 12; i++) {
        const rewrite = rand.next() < 0.5;
        const pre = (c: string) => (rewrite ? `/V2${c}` : `/${c}`);
        const up1 = rewrite ? '/internal' : '';
        const item = `/items/${i}-${rand.seed}`;
        const [a, b, c] = [casing(rand), casing(rand), casing(rand)];
        const field = rand.pick(['own-target', 'location', 'content-location'] as const);
        const what = `case ${i}: ${rewrite ? 'rewrite' : 'strip'}, GET ${pre(a)}, then ${pre(b)}, POST ${pre(c)} (${field})`;
        const first = await get(pre(a) + item);
        assert.equal(first.body, `v1 of ${up1}${item}`, what);
        const second = await get(pre(b) + item);
        assert.match(second.cs, /; hit; /, `${what}: ${pre(b)}${item} is the same key (${second.cs})`);
        const postPath = field === 'own-target' ? pre(c) + item : `${pre(c)}/items/new-${i}`;
        location.set(field === 'own-target' ? up1 + item : `${up1}/items/new-${i}`, field === 'own-target' ? {} : { [field]: `${up1}${item}` });
        const post = await request(base + postPath, { method: 'POST', body: 'x' });
        await post.body.text();
        assert.equal(post.statusCode, 201, what);
        const after = await get(pre(a) + item);
        assert.match(after.cs, /fwd=uri-miss/, `${what}: ${pre(a)}${item} invalidated (${after.cs})`);
        assert.equal(after.body, `v2 of ${up1}${item}`, what);
      }
    });
  } finally {
    await g.close();
    await up.close();
  }
});

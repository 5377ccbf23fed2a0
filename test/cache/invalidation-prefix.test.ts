import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { startTestGateway } from '../helpers/gateway.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * RFC 9111 §4.4 on a route that rewrites the path: the upstream's `Location` and
 * `Content-Location` name its own paths (what it was sent, after `stripPrefix` or
 * `rewritePrefix`), while keys hold the client's. Finding (probe, session 38): the field was
 * read as a client path, so `POST /api/items` (upstream `/items`) answered `201 Location:
 * /items/7` invalidated `/items/7`, never stored, and `/api/items/7` kept answering its old
 * body. The field is now read in the upstream's path space (a relative reference resolved
 * against the path the upstream was sent) and mapped back through each cached route's prefix.
 * Seeded over the route's rewrite, the field, and the reference's form.
 */

interface RouteCase {
  name: string;
  /** Client path prefix → upstream path prefix. */
  client: string;
  upstream: string;
  cfg: Record<string, unknown>;
}

const ROUTES: RouteCase[] = [
  { name: 'strip-dir', client: '/api/', upstream: '/', cfg: { match: { pathPrefix: '/api/' }, stripPrefix: true } },
  { name: 'strip', client: '/svc', upstream: '', cfg: { match: { pathPrefix: '/svc' }, stripPrefix: true } },
  { name: 'rewrite', client: '/v2/', upstream: '/internal/', cfg: { match: { pathPrefix: '/v2/' }, rewritePrefix: '/internal/' } },
];

test('a Location on a route that rewrites the prefix invalidates the client\'s key (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const location = new Map<string, [string, string]>();
  const up = await startScriptedUpstream((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method === 'POST') {
        const [name, value] = location.get(req.url!)!;
        res.writeHead(201, { [name]: value, 'content-length': '0' });
        res.end();
        return;
      }
      const body = `v${up.received.filter((r) => r.url === req.url).length} of ${req.url}`;
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': String(Buffer.byteLength(body)) });
      res.end(body);
    });
  });
  const g = await startTestGateway({
    clusters: { up: { endpoints: [up.url], outlierDetection: { enabled: false } } },
    routes: ROUTES.map((r) => ({ name: r.name, ...r.cfg, cluster: 'up', retry: { tries: 1 }, cache: { collapseWait: '0s' } })),
  } as never);
  const base = g.url.replace(/\/$/, '');
  try {
    await withSeed(rand, async () => {
      for (let i = 0; i < 16; i++) {
        const r = rand.pick(ROUTES);
        const field = rand.pick(['location', 'content-location']);
        const form = rand.pick(['absolute-path', 'absolute-uri', 'relative'] as const);
        const item = `item-${i}-${rand.seed}`;
        const clientTarget = `${r.client}${r.client.endsWith('/') ? '' : '/'}coll/${item}`;
        const upstreamTarget = `${r.upstream}${r.upstream.endsWith('/') ? '' : '/'}coll/${item}`;
        const postClient = `${r.client}${r.client.endsWith('/') ? '' : '/'}coll/new-${i}`;
        const postUpstream = `${r.upstream}${r.upstream.endsWith('/') ? '' : '/'}coll/new-${i}`;
        const value = form === 'absolute-path' ? upstreamTarget : form === 'absolute-uri' ? `http://127.0.0.1:${up.port}${upstreamTarget}` : item;
        location.set(postUpstream, [field, value]);
        const what = `case ${i}: route ${r.name}, ${field}: ${value} (${form}), POST ${postClient}`;
        const get = async () => {
          const res = await request(base + clientTarget);
          return { body: await res.body.text(), cs: String(res.headers['cache-status']) };
        };
        const first = await get();
        assert.equal(first.body, `v1 of ${upstreamTarget}`, `${what}: the route sends ${upstreamTarget}`);
        assert.match((await get()).cs, /; hit; /, `${what}: stored`);
        const post = await request(base + postClient, { method: 'POST', body: 'x' });
        await post.body.text();
        assert.equal(post.statusCode, 201, what);
        const after = await get();
        assert.match(after.cs, /fwd=uri-miss/, `${what}: ${clientTarget} invalidated (${after.cs})`);
        assert.equal(after.body, `v2 of ${upstreamTarget}`, what);
      }
    });
  } finally {
    await g.close();
    await up.close();
  }
});

test('an unsafe request invalidates its own target on every cached route to the cluster, each in its own path space (seeded)', { timeout: 120_000 }, async () => {
  // Finding (review): the request's own target was invalidated only as the client wrote it
  // (`invalidateTarget(targetKey(host, path))`), while Location was mapped per route. With a
  // route stripping `/api/` and a route without rewrite to the same cluster, `POST
  // /api/items/7` (upstream `/items/7`) cleared `/api/items/7` but left the other route's stored
  // `/items/7`, and the reverse.
  const rand = seededRandom();
  const up = await startScriptedUpstream((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method !== 'GET') {
        res.writeHead(204);
        res.end();
        return;
      }
      const body = `v${up.received.filter((r) => r.url === req.url).length} of ${req.url}`;
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': String(Buffer.byteLength(body)) });
      res.end(body);
    });
  });
  const g = await startTestGateway({
    clusters: { up: { endpoints: [up.url], outlierDetection: { enabled: false } } },
    routes: [
      ...ROUTES.map((r) => ({ name: r.name, ...r.cfg, cluster: 'up', retry: { tries: 1 }, cache: { collapseWait: '0s' } })),
      { name: 'plain', cluster: 'up', retry: { tries: 1 }, cache: { collapseWait: '0s' } },
    ],
  } as never);
  const base = g.url.replace(/\/$/, '');
  try {
    await withSeed(rand, async () => {
      for (let i = 0; i < 16; i++) {
        const r = rand.pick(ROUTES);
        const via = rand.pick(['rewriting', 'plain'] as const);
        const method = rand.pick(['POST', 'PUT', 'DELETE', 'PATCH']);
        const rest = `coll/item-${i}-${rand.seed}${rand.next() < 0.5 ? `?q=${rand.int(100)}` : ''}`;
        // One upstream target, named by each route in its own client path space.
        const rewritten = `${r.client}${r.client.endsWith('/') ? '' : '/'}${rest}`;
        const plain = `${r.upstream}${r.upstream.endsWith('/') ? '' : '/'}${rest}`;
        const what = `case ${i}: ${method} ${via === 'rewriting' ? rewritten : plain} via ${via === 'rewriting' ? `route ${r.name}` : 'the route without rewrite'}; keys ${rewritten} (${r.name}) and ${plain} (plain)`;
        const get = async (path: string) => {
          const res = await request(base + path);
          return { body: await res.body.text(), cs: String(res.headers['cache-status']) };
        };
        for (const p of [rewritten, plain]) {
          assert.match((await get(p)).body, new RegExp(`^v\\d+ of ${plain.replace(/[?]/g, '\\?')}$`), `${what}: ${p} is sent as ${plain}`);
          assert.match((await get(p)).cs, /; hit; /, `${what}: ${p} stored`);
        }
        const res = await request(base + (via === 'rewriting' ? rewritten : plain), { method, body: 'x' });
        await res.body.text();
        assert.equal(res.statusCode, 204, what);
        for (const p of [rewritten, plain]) {
          const after = await get(p);
          assert.match(after.cs, /fwd=uri-miss/, `${what}: ${p} invalidated (${after.cs})`);
        }
      }
    });
  } finally {
    await g.close();
    await up.close();
  }
});

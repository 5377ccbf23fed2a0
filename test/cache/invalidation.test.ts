import assert from 'node:assert/strict';
import { test } from 'node:test';
import { get as httpGet } from 'node:http';
import { request } from 'undici';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { startTestGateway } from '../helpers/gateway.js';
import { withCacheGateway } from './cache-gateway.js';

/**
 * RFC 9111 §4.4: a non-error answer to an unsafe method invalidates the stored responses of its
 * target URI and of the URIs in its Location and Content-Location when their host is the
 * request's. Findings (adversarial probe, session 37):
 * - an unsafe request that took a route without `cache` (routes split by method: GET and HEAD
 *   cached, POST to another route) invalidated nothing, and the stored GET answered on;
 * - a Location was looked up as written, while keys hold the normalised path: `/%7ea` or
 *   `/x//y` left `/~a` and `/x/y` stored;
 * - an absolute Location naming a port (the listener's own) was compared with its port against
 *   the request's host without one, and never invalidated (§4.4 compares the host part).
 */
function origin(): Promise<ScriptedUpstream> {
  let n = 0;
  return startScriptedUpstream((req, res) => {
    req.resume();
    req.on('end', () => {
      n++;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        const h: Record<string, string> = { 'content-length': '0' };
        for (const f of ['location', 'content-location']) if (typeof req.headers[`x-${f}`] === 'string') h[f] = req.headers[`x-${f}`] as string;
        res.writeHead(201, h);
        res.end();
        return;
      }
      const body = `${req.url} #${n}`;
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': String(Buffer.byteLength(body)) });
      res.end(body);
    });
  });
}

async function cs(base: string, path: string): Promise<string> {
  const r = await request(base + path);
  await r.body.text();
  return String(r.headers['cache-status']);
}

test('an unsafe request on a route without a cache invalidates its target on the cached routes', async () => {
  await withCacheGateway(await origin(), { routes: [{ name: 'writes', match: { methods: ['POST', 'PUT', 'DELETE', 'PATCH'] }, cache: undefined as never }, { name: 'reads', cache: {} }] }, async ({ base }) => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const path = `/item-${method}`;
      await cs(base, path);
      assert.match(await cs(base, path), /; hit;/);
      const w = await request(base + path, { method: method as 'POST', body: 'x' });
      await w.body.text();
      assert.equal(w.statusCode, 201);
      assert.match(await cs(base, path), /fwd=uri-miss/, `${method} ${path} left the stored GET`);
    }
  });
});

test('Location and Content-Location invalidate the stored target however they spell it, on the same host only (seeded)', async () => {
  await withCacheGateway(await origin(), { routes: [{ name: 'c', cache: {} }] }, async ({ base }) => {
    const port = new URL(base).port;
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let i = 0; i < 24; i++) {
        const stored = `/t${i}-${rand.seed}/~a/b?q=1`;
        // Spellings of the same target as the key names it, and of other hosts (never invalidated).
        const same = [`/t${i}-${rand.seed}/%7ea/b?q=1`, `/t${i}-${rand.seed}/%7Ea//b?q=1`, `/t${i}-${rand.seed}/x/../~a/./b?q=1`, `http://127.0.0.1:${port}/t${i}-${rand.seed}/~a/b?q=1`, `http://127.0.0.1/t${i}-${rand.seed}/~a/b?q=1`, `//127.0.0.1:${port}/t${i}-${rand.seed}/%7ea/b?q=1`];
        const other = [`http://other.test:${port}/t${i}-${rand.seed}/~a/b?q=1`, `//other.test/t${i}-${rand.seed}/~a/b?q=1`];
        const invalidates = rand.int(3) > 0;
        const loc = rand.pick(invalidates ? same : other);
        const field = rand.pick(['x-location', 'x-content-location']);
        await cs(base, stored);
        assert.match(await cs(base, stored), /; hit;/);
        const w = await request(`${base}/writer-${i}`, { method: 'POST', headers: { [field]: loc }, body: 'x' });
        await w.body.text();
        const after = await cs(base, stored);
        if (invalidates) assert.match(after, /fwd=uri-miss/, `case ${i}: ${field.slice(2)}: ${loc} left ${stored} stored`);
        else assert.match(after, /; hit;/, `case ${i}: ${field.slice(2)}: ${loc} (another host) invalidated ${stored}`);
      }
    });
  });
});

/**
 * Finding (review of session 37): invalidation reached every cached route whatever cluster
 * answered the unsafe request. With `a-reads` (host a.example, GET and HEAD, cached, cluster a)
 * and a catch-all to another cluster, `POST /anything` for a.example went to the catch-all, and
 * its upstream's `303 Location: /important` dropped a.example's stored /important: any client
 * could keep hot keys uncached wherever a catch-all or tenant upstream answers below 400 or
 * reflects a Location. RFC 9111 §4.4 invalidates what the same origin server answered: now only
 * the cached routes that send to the cluster that answered are reached.
 */
test('an unsafe request invalidates only the stored responses of routes to the cluster that answered it (seeded)', async () => {
  const a = await origin();
  const other = await origin();
  const g = await startTestGateway({
    clusters: {
      a: { endpoints: [a.url], outlierDetection: { enabled: false } },
      other: { endpoints: [other.url], outlierDetection: { enabled: false } },
    },
    routes: [
      { name: 'a-reads', match: { host: 'a.example', methods: ['GET', 'HEAD'] }, cluster: 'a', retry: { tries: 1 }, cache: {} },
      { name: 'a-writes', match: { host: 'a.example', headers: { 'x-tenant': 'a' } }, cluster: 'a', retry: { tries: 1 } },
      { name: 'catch-all', cluster: 'other', retry: { tries: 1 } },
    ],
  } as never);
  try {
    const base = g.url.replace(/\/$/, '');
    const host = { host: 'a.example' };
    const status = async (path: string): Promise<string> => {
      const r = await request(base + path, { headers: host });
      await r.body.text();
      return String(r.headers['cache-status']);
    };
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let i = 0; i < 12; i++) {
        const important = `/important-${rand.seed}-${i}`;
        await status(important);
        assert.match(await status(important), /; hit;/);
        const sameCluster = rand.int(2) === 0;
        const field = rand.pick(['x-location', 'x-content-location']);
        // Through a-writes (cluster a, no cache) or the catch-all (cluster other): the stored target itself, or a Location naming it.
        const byTarget = rand.int(2) === 0;
        const path = byTarget ? important : `/anything-${i}`;
        const w = await request(base + path, {
          method: rand.pick(['POST', 'PUT', 'DELETE']) as 'POST',
          headers: { ...host, ...(sameCluster ? { 'x-tenant': 'a' } : {}), ...(byTarget ? {} : { [field]: important }) },
          body: 'x',
        });
        await w.body.text();
        assert.equal(w.statusCode, 201);
        const after = await status(important);
        const what = `case ${i}: ${path}${byTarget ? '' : ` with ${field.slice(2)}: ${important}`}`;
        if (sameCluster) assert.match(after, /fwd=uri-miss/, `${what} on cluster a left ${important} stored`);
        else assert.match(after, /; hit;/, `${what} answered by the catch-all (cluster other) dropped a.example's stored ${important}`);
      }
    });
  } finally {
    await g.close();
    await a.close();
    await other.close();
  }
});

/**
 * Finding (review of session 37): a Location spelled exactly as a stored key was not
 * invalidated when its path or query held a character the WHATWG URL parser percent-encodes
 * (`{ } ' " | ^ \` < >`, a space in the query), since keys hold the request's bytes as sent:
 * `/a{b}` was looked up as `/a%7Bb%7D`. The path and query are now read from the field's own
 * text (a relative reference resolved against the request's path as RFC 3986 §5.2 does) and
 * normalised as a request's.
 */
/** Cache-Status of a GET of `path` sent byte for byte (undici, as a browser, would percent-encode `{` and the like first). */
function rawCs(base: string, path: string): Promise<string> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const r = httpGet({ host: u.hostname, port: u.port, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(String(res.headers['cache-status'])));
      res.on('error', reject);
    });
    r.on('error', reject);
  });
}

test('a Location with characters URL parsing would percent-encode invalidates the key spelled so (seeded)', async () => {
  await withCacheGateway(await origin(), { routes: [{ name: 'c', cache: {} }] }, async ({ base }) => {
    const port = new URL(base).port;
    const rand = seededRandom();
    const chars = ['{', '}', "'", '"', '|', '^', '`', '<', '>'];
    await withSeed(rand, async () => {
      for (let i = 0; i < 24; i++) {
        const c = rand.pick(chars);
        const d = rand.pick(chars);
        const dir = `/d${i}-${rand.seed}`;
        const name = `x${c}y${rand.int(2) === 0 ? `?q=${d}` : ''}`;
        const stored = `${dir}/${name}`;
        // The writer's path is `${dir}/sub/w`: relative references resolve against it.
        const loc = rand.pick([stored, `../${name}`, `./../${name}`, `http://127.0.0.1:${port}${stored}`, `//127.0.0.1${stored}`, `${dir}/sub/..//${name}`]);
        await rawCs(base, stored);
        assert.match(await rawCs(base, stored), /; hit;/, `case ${i}: ${stored} not stored`);
        const w = await request(`${base}${dir}/sub/w`, { method: 'POST', headers: { [rand.pick(['x-location', 'x-content-location'])]: loc }, body: 'x' });
        await w.body.text();
        assert.equal(w.statusCode, 201);
        assert.match(await rawCs(base, stored), /fwd=uri-miss/, `case ${i}: Location ${loc} left ${stored} stored`);
      }
    });
  });
});

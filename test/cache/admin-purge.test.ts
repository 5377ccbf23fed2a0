import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { startRuntime } from '../../src/cli/runtime.js';
import { validateConfig } from '../../src/config/load.js';
import { startLab } from '../../src/lab/index.js';
import { createLogger } from '../../src/observe/access-log.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { withPurgeRuntime } from './purge-runtime.js';

const TOKEN = 'cache-purge-token-0123456789';

test('the admin API shows the cache and purges by key and by prefix (token-protected)', async () => {
  const lab = await startLab();
  const logger = createLogger({ destination: new Writable({ write: (_c, _e, cb) => cb() }) });
  const rt = await startRuntime(
    validateConfig({
      listeners: [{ port: 0 }],
      admin: { port: 0, token: TOKEN },
      clusters: { app: { endpoints: [lab.url] } },
      routes: [{ cluster: 'app', cache: {} }],
      cache: { maxSize: 1_000_000 },
    }),
    { logger, probeUpstreams: false },
  );
  try {
    const gw = rt.gateway!.addresses()[0]!.url.replace(/\/$/, '');
    const admin = rt.adminUrl!.replace(/\/$/, '');
    const api = async (path: string, method: 'GET' | 'POST' = 'GET', token: string | null = TOKEN) => {
      const r = await request(admin + path, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
      return { status: r.statusCode, body: (await r.body.json()) as Record<string, unknown> };
    };
    // /ok carries no freshness: stored (lifetime 0) and revalidated; enough to count keys.
    for (const p of ['/ok?a=1', '/ok?a=2', '/echo']) await (await request(gw + p)).body.text();
    const before = await api('/cache');
    assert.equal(before.status, 200);
    assert.equal(before.body.keys, 3);
    assert.equal(before.body.maxBytes, 1_000_000);
    assert.ok((before.body.bytes as number) > 0);
    assert.equal((await api('/cache/purge?key=127.0.0.1/echo', 'POST', null)).status, 401);
    assert.deepEqual((await api('/cache/purge?key=127.0.0.1/echo', 'POST')).body, { purged: 1, key: '127.0.0.1/echo', prefix: null });
    assert.equal((await api('/cache/purge?prefix=127.0.0.1/ok', 'POST')).body.purged, 2);
    assert.equal((await api('/cache')).body.keys, 0);
    assert.equal((await api('/cache/purge', 'POST')).status, 400);
  } finally {
    await rt.close();
    await lab.close();
  }
});

/** The origin of the spelling tests: any path, fresh for 10 minutes. */
function answerOk(_req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': '2' });
  res.end('ok');
}

/**
 * A purge by key names a target as the cache keys it: the host in any case (without a port, as
 * keys are), the path as a request's is normalised (http/path.ts normalizeOriginForm:
 * percent-encoded unreserved characters decoded, `//` and dot segments resolved, other
 * encodings in upper case), the query as sent. Finding (probe, session 38): only the normalised
 * spelling purged anything, so `key=example.com/%7euser` purged nothing while `/~user` stayed
 * stored, and the operator got `purged: 0` for a key that named it. A key whose path no
 * request could have (a refused path) purges nothing. Seeded over the spelling.
 */
test('a purge by key takes any spelling of the key\'s target (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  await withPurgeRuntime(answerOk, undefined, async ({ gwUrl, gwPort, purge }) => {
    // Each spelling names the target `127.0.0.1/echo/~u-<n>/a?q=1` (the path the request is stored under).
    const spellings: Array<(n: string) => string> = [
      (n) => `127.0.0.1/echo/~u-${n}/a?q=1`,
      (n) => `127.0.0.1/echo/%7eu-${n}/a?q=1`,
      (n) => `127.0.0.1/echo/%7Eu-${n}//a?q=1`,
      (n) => `127.0.0.1/echo/./~u-${n}/x/../a?q=1`,
      (n) => `127.0.0.1/%65cho/~u-${n}/a?q=1`,
      (n) => `127.0.0.1:${gwPort}/echo/~u-${n}/a?q=1`,
      (n) => `https://127.0.0.1/echo/~u-${n}/a?q=1`,
    ];
    await withSeed(rand, async () => {
      for (let i = 0; i < 8; i++) {
        const n = `${i}-${rand.seed}`;
        const path = `/echo/~u-${n}/a?q=1`;
        const spelling = rand.pick(spellings)(n);
        const what = `case ${i}: key=${spelling}`;
        await (await request(gwUrl + path)).body.text();
        const stored = await request(gwUrl + path);
        await stored.body.text();
        assert.match(String(stored.headers['cache-status']), /; hit; /, `${what}: stored`);
        assert.equal(await purge('key', spelling), 1, `${what}: purged the stored target`);
        const after = await request(gwUrl + path);
        await after.body.text();
        assert.match(String(after.headers['cache-status']), /fwd=uri-miss/, `${what}: gone from the store`);
        // A key whose path the gateway refuses names nothing stored: purged 0.
        assert.equal(await purge('key', `127.0.0.1/echo/%00-${n}`), 0, what);
      }
    });
  });
});

/**
 * A purge by prefix names targets as keys spell them, as a purge by key does: a scheme in any
 * case (`HTTP://`, `https://`), the host in any case with a port or a trailing dot, the path
 * normalised as a request's (`%65cho` is `echo`, `./` and `x/../` resolved, `//` one slash),
 * the query as sent. Finding (the lead's list of cache defects): the prefix was taken as
 * written, so `HTTP://Shop.EXAMPLE./echo/p/` purged nothing while `shop.example/echo/p/a` stayed,
 * and the operator got `purged: 0`. A target just outside the prefix stays. A key spelled with
 * `http://` names its target too (before, `http:` was read as the host). Seeded over the
 * spelling.
 */
test('a purge by prefix (and by key) takes any spelling of its targets (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  await withPurgeRuntime(answerOk, undefined, async ({ gwUrl, purge }) => {
    const HOST = 'shop.example';
    // Each spelling names the prefix `shop.example/echo/p-<n>/` (the origin answers any path, fresh for 10 minutes).
    const prefixes: Array<(n: string) => string> = [
      (n) => `${HOST}/echo/p-${n}/`,
      (n) => `HTTP://Shop.EXAMPLE./echo/p-${n}/`,
      (n) => `http://shop.example:8080/echo/p-${n}/`,
      (n) => `HTTPS://SHOP.example/echo/p-${n}/`,
      (n) => `https://shop.example./echo/p-${n}/`,
      (n) => `Shop.Example/%65cho/p-${n}/`,
      (n) => `${HOST}/echo/./p-${n}/x/../`,
      (n) => `${HOST}//echo/p-${n}/`,
      (n) => `${HOST}/echo/%70-${n}/`,
    ];
    const keys: Array<(n: string) => string> = [
      (n) => `HTTP://Shop.EXAMPLE./echo/p-${n}/a`,
      (n) => `http://shop.example:8080/%65cho/p-${n}/a`,
      (n) => `Shop.Example./echo/p-${n}/./a`,
    ];
    const get = async (path: string): Promise<string> => {
      const r = await request(gwUrl + path, { headers: { host: HOST } });
      await r.body.text();
      return String(r.headers['cache-status']);
    };
    await withSeed(rand, async () => {
      for (let i = 0; i < 10; i++) {
        const n = `${i}-${rand.seed}`;
        const inside = [`/echo/p-${n}/a`, `/echo/p-${n}/b?q=1`];
        const outside = `/echo/p-${n}x/c`;
        for (const p of [...inside, outside]) {
          await get(p);
          assert.match(await get(p), /; hit; /, `case ${i}: ${p} stored`);
        }
        const byKey = rand.next() < 0.3;
        const spelling = byKey ? rand.pick(keys)(n) : rand.pick(prefixes)(n);
        const what = `case ${i}: ${byKey ? 'key' : 'prefix'}=${spelling}`;
        assert.equal(await purge(byKey ? 'key' : 'prefix', spelling), byKey ? 1 : 2, `${what}: purged the stored targets`);
        assert.match(await get(inside[0]!), /fwd=uri-miss/, `${what}: ${inside[0]} gone from the store`);
        if (!byKey) assert.match(await get(inside[1]!), /fwd=uri-miss/, `${what}: ${inside[1]} gone from the store`);
        assert.match(await get(outside), /; hit; /, `${what}: ${outside} outside it stays`);
        // A last segment that is a bare dot segment stays as written (`/img/.` may begin `/img/.well-known`).
        assert.equal(await purge('prefix', `${HOST}/echo/p-${n}x/.`), 0, `${what}: a prefix ending in /. names no stored target`);
      }
    });
  });
});

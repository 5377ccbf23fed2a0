import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { startRuntime } from '../../src/cli/runtime.js';
import { validateConfig } from '../../src/config/load.js';
import { startLab } from '../../src/lab/index.js';
import { createLogger } from '../../src/observe/access-log.js';

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
  const { seededRandom, withSeed } = await import('../helpers/seeded.js');
  const rand = seededRandom();
  const { startScriptedUpstream } = await import('../helpers/scripted-upstream.js');
  const up = await startScriptedUpstream((_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': '2' });
    res.end('ok');
  });
  const logger = createLogger({ destination: new Writable({ write: (_c, _e, cb) => cb() }) });
  const rt = await startRuntime(
    validateConfig({
      listeners: [{ port: 0, address: '127.0.0.1' }],
      admin: { port: 0, address: '127.0.0.1', token: TOKEN },
      clusters: { app: { endpoints: [up.url] } },
      routes: [{ cluster: 'app', cache: { collapseWait: '0s' } }],
      cache: { maxSize: 1_000_000 },
    }),
    { logger, probeUpstreams: false },
  );
  try {
    const gwUrl = rt.gateway!.addresses()[0]!.url.replace(/\/$/, '');
    const gwPort = new URL(gwUrl).port;
    const admin = rt.adminUrl!.replace(/\/$/, '');
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
        const r = await request(`${admin}/cache/purge?key=${encodeURIComponent(spelling)}`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
        const body = (await r.body.json()) as { purged: number };
        assert.equal(r.statusCode, 200, what);
        assert.equal(body.purged, 1, `${what}: purged the stored target`);
        const after = await request(gwUrl + path);
        await after.body.text();
        assert.match(String(after.headers['cache-status']), /fwd=uri-miss/, `${what}: gone from the store`);
        // A key whose path the gateway refuses names nothing stored: purged 0.
        const bad = await request(`${admin}/cache/purge?key=${encodeURIComponent(`127.0.0.1/echo/%00-${n}`)}`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
        assert.equal(((await bad.body.json()) as { purged: number }).purged, 0, what);
      }
    });
  } finally {
    await rt.close();
    await up.close();
  }
});

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

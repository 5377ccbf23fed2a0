import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { startTestGateway } from '../helpers/gateway.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * Why `Proxy-Authorization` is not among `cache.bypassOn`'s fields (docs/cache.md): it carries
 * credentials for this hop (RFC 9110 §11.7.2), and the reverse gateway drops it with the other
 * hop-by-hop fields (http/headers.ts HOP_BY_HOP), so the upstream's answer cannot depend on it and
 * is the same for every client: sharing it is right. This guards the premise: should the field
 * ever be forwarded, the upstream sees it here and the test fails, and the bypass must be
 * revisited. Seeded over which of two requests carries the field and its value.
 */
test('Proxy-Authorization never reaches the upstream, so answers to requests with it are shared (seeded)', { timeout: 60_000 }, async () => {
  const rand = seededRandom();
  const up = await startScriptedUpstream((req, res) => {
    req.resume();
    res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': '2' });
    res.end('ok');
  });
  const g = await startTestGateway({
    clusters: { up: { endpoints: [up.url], outlierDetection: { enabled: false } } },
    routes: [{ name: 'c', cluster: 'up', retry: { tries: 1 }, cache: { collapseWait: '0s' } }],
  } as never);
  const base = g.url.replace(/\/$/, '');
  try {
    await withSeed(rand, async () => {
      for (let i = 0; i < 6; i++) {
        const path = `/p/${i}-${rand.seed}`;
        const cred = { 'proxy-authorization': `Basic ${Buffer.from(`u${rand.int(1000)}:pw`).toString('base64')}` };
        const firstWith = rand.next() < 0.5;
        const what = `case ${i}: ${firstWith ? 'first' : 'second'} request with Proxy-Authorization`;
        const a = await request(base + path, { headers: firstWith ? cred : {} });
        await a.body.text();
        assert.match(String(a.headers['cache-status']), /fwd=uri-miss; fwd-status=200; stored$/, `${what}: stored`);
        const b = await request(base + path, { headers: firstWith ? {} : cred });
        await b.body.text();
        assert.match(String(b.headers['cache-status']), /; hit; /, `${what}: shared`);
        const sent = up.received.filter((r) => r.url === path);
        assert.equal(sent.length, 1, what);
        assert.equal(sent[0]!.headers['proxy-authorization'], undefined, `${what}: the upstream never sees the field`);
      }
    });
  } finally {
    await g.close();
    await up.close();
  }
});

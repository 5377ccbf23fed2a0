import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { test } from 'node:test';
import { Gateway, validateConfig, type GatewayHooks } from '../../src/index.js';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { certDir } from '../helpers/tls-certs.js';

/**
 * Adversarial review, session 30: an answer from the store skipped what every response of the
 * listener gets: the onResponse hooks (a Content-Security-Policy a hook adds was missing on
 * hits, a field it strips came back) and the TLS listener's HSTS. A seeded family of stored
 * statuses (200, 301, 404) and answers (a hit, a 304 to the client's own validator, a stale
 * copy revalidated by a 304): each carries the hook's field, lacks the stripped one and has HSTS.
 */
test('answers from the store go through the onResponse hooks and get the listener’s HSTS (seeded)', { timeout: 60_000 }, async () => {
  const rand = seededRandom();
  const dir = certDir('gatewise-hit-head-');
  const ca = dir.ca('Hit Head CA');
  const cert = ca.issue('127.0.0.1', { ip: ['127.0.0.1'] });
  const up = await startScriptedUpstream((req, res) => {
    const u = new URL(req.url!, 'http://x');
    const status = Number(u.searchParams.get('status') ?? 200);
    if (req.headers['if-none-match'] === '"e1"') {
      res.writeHead(304, { etag: '"e1"', 'cache-control': 'max-age=600' });
      res.end();
      return;
    }
    const body = `body of ${u.pathname}`;
    res.writeHead(status, { etag: '"e1"', 'cache-control': `public, max-age=${u.searchParams.get('age') ?? '600'}`, 'x-internal-debug': 'secret', 'content-length': String(body.length), ...(status === 301 ? { location: '/elsewhere' } : {}) });
    res.end(body);
  });
  const hooks: GatewayHooks = {
    onResponse(_req, head) {
      head.headers.push('content-security-policy', "default-src 'self'");
      for (let i = head.headers.length - 2; i >= 0; i -= 2) if (head.headers[i] === 'x-internal-debug') head.headers.splice(i, 2);
    },
  };
  const config = validateConfig({
    listeners: [{ address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: cert.certFile, key: cert.keyFile }], hsts: { maxAge: 600 } } }],
    clusters: { up: { endpoints: [`http://127.0.0.1:${up.port}`] } },
    routes: [{ cluster: 'up', cache: {} }],
  });
  const gw = new Gateway(config, { hooks: [hooks] });
  const [addr] = await gw.listen();
  const get = (path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> =>
    new Promise((resolve, reject) => {
      httpsRequest({ host: '127.0.0.1', port: addr!.port, path, ca: ca.cert, headers, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers }));
      })
        .on('error', reject)
        .end();
    });
  try {
    await withSeed(rand, async () => {
      for (let i = 0; i < 6; i++) {
        const status = rand.pick([200, 301, 404]);
        const way = rand.pick(['hit', 'client-304', 'revalidated'] as const);
        const path = `/h${i}-${rand.seed}?status=${status}${way === 'revalidated' ? '&age=0' : ''}`;
        const first = await get(path);
        assert.equal(first.status, status);
        const r = way === 'client-304' && status === 200 ? await get(path, { 'if-none-match': '"e1"' }) : await get(path);
        const where = `${status} answered as ${way}: ${String(r.headers['cache-status'])}`;
        assert.match(String(r.headers['cache-status']), way === 'revalidated' ? /fwd=stale; fwd-status=304/ : /; hit/, where);
        assert.equal(r.headers['content-security-policy'], "default-src 'self'", where);
        assert.equal(r.headers['x-internal-debug'], undefined, where);
        assert.match(String(r.headers['strict-transport-security']), /max-age=600/, where);
      }
    });
  } finally {
    await gw.close(1000);
    await up.close();
    dir.remove();
  }
});

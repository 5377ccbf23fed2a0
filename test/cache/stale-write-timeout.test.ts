import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { startOneUpstreamGateway, type TestGateway } from '../helpers/gateway.js';
import { onFirstHead, startRawServer, type RawServer } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * Why `connection_write_timeout` is not a `serveStaleOn` value (config/schema.ts STALE_TYPES):
 * it names an upstream that stopped reading the request body, and a request with a body never
 * reads the cache (gateway/cache-phase.ts `request-content`: its content is not in the key),
 * so no stored copy is there to answer for it, even one whose `stale-if-error` (RFC 5861 §4,
 * any error) would allow it. The same URL without a body, whose try times out waiting for the
 * head, is answered from that stale copy. Body size and response timeout from a seeded family.
 */

interface Answer {
  status?: number;
  proxyStatus?: string;
  cacheStatus?: string;
  body?: string;
  error?: string;
}

function get(port: number, bodyBytes: number): Promise<Answer> {
  return new Promise((resolve) => {
    const headers = bodyBytes > 0 ? { 'content-length': bodyBytes } : {};
    const req = httpRequest({ host: '127.0.0.1', port, method: 'GET', path: '/x', agent: false, headers }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (d: string) => (body += d));
      const done = (): void => resolve({ status: res.statusCode, proxyStatus: res.headers['proxy-status'] as string | undefined, cacheStatus: res.headers['cache-status'] as string | undefined, body });
      res.on('end', done);
      res.on('error', done);
    });
    req.setTimeout(20_000, () => req.destroy(new Error('client timeout')));
    req.on('error', (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
    req.end(bodyBytes > 0 ? Buffer.alloc(bodyBytes, 0x61) : undefined);
  });
}

test('a stale copy never answers connection_write_timeout (a request with a body bypasses the cache); the same URL without a body gets it for its timeout (seeded)', async () => {
  const rand = seededRandom();
  let upstream: RawServer | undefined;
  let gw: TestGateway | undefined;
  // 'good': answer the first request of a connection with a copy that may serve stale on any error; 'bad': take the head, then stop reading and never answer.
  let mode: 'good' | 'bad' = 'good';
  try {
    await withSeed(rand, async () => {
      upstream = await startRawServer((s) => {
        if (mode === 'bad') {
          s.once('data', () => s.pause());
          return;
        }
        // Connection: close, so every later request is on a connection opened in 'bad' mode.
        onFirstHead(s, () => s.end('HTTP/1.1 200 OK\r\nCache-Control: max-age=0, stale-if-error=600\r\nConnection: close\r\nContent-Length: 6\r\n\r\nstored'));
      });
      const responseMs = 300 + rand.int(400);
      gw = await startOneUpstreamGateway(upstream.port, { cluster: { timeouts: { response: `${responseMs}ms` } }, route: { cache: { serveStaleOn: ['http_response_timeout'] } } });
      const first = await get(gw.port, 0);
      assert.equal(first.status, 200, JSON.stringify(first));
      assert.match(first.cacheStatus ?? '', /stored/, JSON.stringify(first));
      mode = 'bad';
      const size = (6 + rand.int(6)) * 1024 * 1024;
      const withBody = await get(gw.port, size);
      const what = `GET /x with ${size} bytes of body, response timeout ${responseMs} ms: ${JSON.stringify(withBody)}`;
      assert.equal(withBody.status, 504, what);
      assert.match(withBody.proxyStatus ?? '', /error=connection_write_timeout/, what);
      assert.match(withBody.cacheStatus ?? '', /fwd=bypass/, what);
      const without = await get(gw.port, 0);
      assert.equal(without.status, 200, `GET /x without a body: ${JSON.stringify(without)}`);
      assert.equal(without.body, 'stored');
      assert.match(without.cacheStatus ?? '', /fwd=stale; ttl=-\d+; detail=http_response_timeout/, JSON.stringify(without));
    });
  } finally {
    await gw?.close();
    await upstream?.close();
  }
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ClientHttp2Session } from 'node:http2';
import { startTestGateway } from '../helpers/gateway.js';
import { h2session } from '../helpers/h2-request.js';
import { startPiecewiseUpstream } from '../helpers/piecewise-upstream.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * A request whose body cannot be kept for a replay goes on a fresh upstream connection
 * (exchange.ts #bodyKept). An HTTP/2 request that declares `content-length: 0` but ends its
 * stream with a separate empty DATA frame (node:http2's request() then end(); curl -X PUT -d ''
 * over h2) has a body of known length zero: it is kept, so it reuses an idle connection like a
 * bodiless one. Review finding (session 33): its length was recorded only when not '0', so
 * every such request opened (and churned) a new upstream connection.
 */

/** One request on the session, its stream left open after HEADERS and ended by an empty DATA frame. */
function emptyBodied(s: ClientHttp2Session, method: string, path: string, endStream: boolean, declare: boolean): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = s.request({ ':method': method, ':path': path, ...(declare ? { 'content-length': '0' } : {}) }, { endStream });
    let status = 0;
    let body = '';
    req.setEncoding('utf8');
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (c: string) => (body += c));
    req.on('end', () => resolve({ status, body }));
    req.on('error', reject);
    if (!endStream) req.end();
  });
}

test('HTTP/2 requests with content-length: 0 and an empty DATA frame reuse the upstream connection', { timeout: 120_000 }, async () => {
  await seededRun('h2 empty body reuse', async (rand) => {
    for (let round = 0; round < 4; round++) {
      const up = await startPiecewiseUpstream((req) => ({ pieces: [`HTTP/1.1 200 OK\r\nContent-Length: ${req.path.length}\r\n\r\n${req.path}`] }));
      const gw = await startTestGateway({
        listeners: [{ address: '127.0.0.1', port: 0, http2: { h2c: true } }],
        clusters: { up: { endpoints: [up.url], outlierDetection: { enabled: false }, keepAlive: '30s' } },
        routes: [{ cluster: 'up' }],
      });
      const s = h2session(gw.url);
      try {
        const n = between(rand, 2, 8);
        const shapes: string[] = [];
        for (let i = 0; i < n; i++) {
          const method = ['PUT', 'DELETE', 'GET', 'OPTIONS'][between(rand, 0, 3)]!;
          const endStream = rand() < 0.3;
          // An empty DATA frame with content-length: 0, or END_STREAM on HEADERS (with or without the field).
          const declare = !endStream || rand() < 0.5;
          shapes.push(`${method}${endStream ? '+es' : ''}${declare ? '+cl0' : ''}`);
          const path = `/r${round}/${i}`;
          const r = await emptyBodied(s, method, path, endStream, declare);
          assert.equal(r.status, 200, `round ${round}, ${shapes.join(',')}: ${r.body}`);
          assert.equal(r.body, path);
        }
        assert.equal(up.sockets.length, 1, `round ${round}: one upstream connection for ${shapes.join(',')}, saw ${up.sockets.length}`);
      } finally {
        s.close();
        await gw.close();
        await up.close();
      }
    }
  });
});

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import type { Socket } from 'node:net';
import { startOneUpstreamGateway, type TestGateway } from '../helpers/gateway.js';
import { startRawServer, type RawServer } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * An upstream that takes a request's head and then stops reading its body is named
 * `connection_write_timeout` (RFC 9209 §2.3.11, 504: the upstream stopped reading the
 * request), not `http_response_timeout` ("no response headers in time": it never had the
 * whole request). An upstream that reads the whole body and stays silent still gets
 * `http_response_timeout`. Sizes and timeouts from a small seeded family.
 */

interface Answer {
  status?: number;
  proxyStatus?: string;
  error?: string;
}

function post(port: number, size: number): Promise<Answer> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/up', agent: false, headers: { 'content-length': size } }, (res) => {
      res.resume();
      const done = (): void => resolve({ status: res.statusCode, proxyStatus: res.headers['proxy-status'] as string | undefined });
      res.on('end', done);
      res.on('error', done);
    });
    req.setTimeout(20_000, () => req.destroy(new Error('client timeout')));
    req.on('error', (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
    req.end(Buffer.alloc(size, 0x61));
  });
}

describe('an upstream that stops reading the request body', () => {
  for (const reads of [false, true]) {
    test(reads ? 'reads the whole body, then stays silent: 504 http_response_timeout' : 'stops reading after the head: 504 connection_write_timeout (seeded)', async () => {
      const rand = seededRandom();
      const sockets = new Set<Socket>();
      let upstream: RawServer | undefined;
      let gw: TestGateway | undefined;
      try {
        await withSeed(rand, async () => {
          upstream = await startRawServer((s) => {
            sockets.add(s);
            // Either read everything and never answer, or read the first bytes and stop reading.
            if (reads) s.resume();
            else s.once('data', () => s.pause());
          });
          const responseMs = 300 + rand.int(400);
          gw = await startOneUpstreamGateway(upstream.port, { cluster: { timeouts: { response: `${responseMs}ms` } } });
          const size = reads ? 256 * 1024 : (6 + rand.int(6)) * 1024 * 1024;
          const a = await post(gw.port, size);
          const want = reads ? 'http_response_timeout' : 'connection_write_timeout';
          assert.equal(a.status, 504, `POST of ${size} bytes, response timeout ${responseMs} ms: ${JSON.stringify(a)}`);
          assert.match(a.proxyStatus ?? '', new RegExp(`error=${want}`), `POST of ${size} bytes, response timeout ${responseMs} ms`);
        });
      } finally {
        for (const s of sockets) s.destroy();
        await gw?.close();
        await upstream?.close();
      }
    });
  }
});

import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { ProxyAgent, request } from 'undici';
import { startPiecewiseUpstream, type PieceRequest } from '../helpers/piecewise-upstream.js';
import { between, seededRun } from '../helpers/seeded.js';
import { basic, startTestProxy } from './helpers.js';

/**
 * The forward proxy's absolute-form relay keeps no request body for a replay, so it must never
 * send one on a connection that can lose the keep-alive race: every request with a body, of any
 * size, Content-Length or chunked, goes on a fresh connection of the destination's pool (which
 * has no connection limit), and only bodiless idempotent requests are sent again after a lost
 * race (forward/http-relay.ts #direct). The reverse gateway's hole for bodies over its 64 KiB
 * replay limit (test/gateway/race-large-body.test.ts) is not open here; this holds it so.
 *
 * The destination answers the first request of every connection (echoing its body) and ends
 * the connection (FIN) or resets it (RST), unanswered, on the second.
 */

const LIMIT = 64 * 1024;

describe('forward relay: a body never goes on a reused connection', () => {
  test('GET, PUT, POST and PATCH with bodies from just under 64 KiB to 2 MiB, Content-Length or chunked, all answered; each body received once, on a connection of its own (FIN and RST, seeded)', { timeout: 120_000 }, () =>
    seededRun('forward race with a body', async (rand) => {
      for (let round = 0; round < 3; round++) {
        const opened: Array<{ close(): Promise<void> }> = [];
        try {
          const reset = rand() < 0.5;
          const up = await startPiecewiseUpstream((req: PieceRequest) => {
            if (req.index > 0) return reset ? { pieces: [], reset: true } : { pieces: [], close: true };
            const body = req.method === 'GET' ? Buffer.from(req.path) : req.body;
            return { pieces: [`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`, body] };
          });
          opened.push(up);
          const p = await startTestProxy();
          opened.push(p);
          const agent = new ProxyAgent({ uri: p.url, token: basic(), proxyTunnel: false });
          opened.push(agent);
          const n = between(rand, 4, 8);
          for (let i = 0; i < n; i++) {
            const r = rand();
            const method = i === 0 || r < 0.25 ? 'GET' : r < 0.6 ? 'PUT' : r < 0.8 ? 'POST' : 'PATCH';
            const size = method === 'GET' ? 0 : rand() < 0.3 ? between(rand, LIMIT - 2048, LIMIT) : between(rand, LIMIT + 1, 2 * 1024 * 1024);
            const body = Buffer.alloc(size, 0x61 + ((round * 8 + i) % 26));
            const chunked = method !== 'GET' && rand() < 0.4;
            const path = `/r${round}/${i}`;
            const res = await request(`${up.url}${path}`, { dispatcher: agent, method, body: method === 'GET' ? undefined : chunked ? Readable.from([body.subarray(0, size >> 1), body.subarray(size >> 1)]) : body });
            const got = Buffer.from(await res.body.arrayBuffer());
            const what = `round ${round} (${reset ? 'RST' : 'FIN'}), ${method} ${i} of ${size} bytes${chunked ? ' chunked' : ''}`;
            assert.equal(res.statusCode, 200, `${what}: ${got.toString().slice(0, 300)}`);
            assert.ok(got.equals(method === 'GET' ? Buffer.from(path) : body), `${what}: the body echoed is the one sent`);
            const received = up.requests.filter((q) => q.path === path);
            if (method === 'GET') {
              // A bodiless GET reuses the idle connection (after the first), loses the race, and is sent once more on a fresh one.
              assert.deepEqual(received.map((q) => q.index), i === 0 ? [0] : [1, 0], what);
            } else {
              assert.deepEqual(received.map((q) => q.index), [0], `${what}: received once, as the first request of its connection`);
              assert.ok(received[0]!.body.equals(body), `${what}: received intact`);
            }
          }
        } finally {
          for (const o of opened.reverse()) await o.close();
        }
      }
    }));
});

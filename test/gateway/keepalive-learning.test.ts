import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { request } from 'undici';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { seededRandom } from '../helpers/seeded.js';

/**
 * The pool learns an upstream's keep-alive idle limit from the idle connections the
 * upstream closes (connection-pool.ts), and stops reusing connections older than it.
 * Found in session 13 by the full benchmark: the pool also learned from closes it made
 * itself. Each POST gets a new connection and retires the oldest idle one; that close was
 * taken for the upstream's, at an idle time of a few ms, so the safe idle time became 0 and
 * no connection was reused for the next minute: every request opened a TCP connection and
 * reverse GET 1 KiB fell from ~12,000 to ~3,500 req/s after any POST traffic (the
 * benchmark's POST scenario slowed every scenario after it). Here the upstream never closes
 * a connection, so nothing may be learned, whatever the mix of POSTs and GETs (seeded).
 */

let upstream: Server;
let connections = 0;
const upSockets = new Set<Socket>();

before(async () => {
  upstream = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  upstream.keepAliveTimeout = 120_000; // the upstream never closes an idle connection in this test
  upstream.on('connection', (s: Socket) => {
    connections++;
    upSockets.add(s);
    s.once('close', () => upSockets.delete(s));
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
});

after(async () => {
  for (const s of upSockets) s.destroy();
  await new Promise<void>((r) => upstream.close(() => r()));
});

describe('learning the upstream idle limit', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway({
      clusters: { c: { endpoints: [`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`], keepAlive: '60s', outlierDetection: { enabled: false } } },
      routes: [{ cluster: 'c' }],
    });
  });
  after(() => gw.close());

  const send = async (method: 'GET' | 'POST', body?: string): Promise<void> => {
    const r = await request(`${gw.url}/x`, { method, body });
    assert.equal(r.statusCode, 200);
    await r.body.text();
  };

  test('the pool\'s own closes are not the upstream\'s idle limit: POST/GET mixes learn nothing and GETs keep reusing (seeded)', { timeout: 60_000 }, async () => {
    const rand = seededRandom();
    const pool = gw.gw.ctx.clusters.get('c')!.endpoints[0]!.pool;
    const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed})`;
    for (let round = 0; round < 6; round++) {
      const posts = 1 + rand.int(40);
      const gets = rand.int(40);
      const concurrency = 1 + rand.int(12);
      const jobs: Array<'GET' | 'POST'> = [...Array<'POST'>(posts).fill('POST'), ...Array<'GET'>(gets).fill('GET')].sort(() => rand.next() - 0.5);
      let next = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < jobs.length) {
            const m = jobs[next++]!;
            await send(m, m === 'POST' ? 'x'.repeat(1 + rand.int(70_000)) : undefined);
          }
        }),
      );
      assert.equal(pool.learnedIdleMs, Infinity, `${ctx}, round ${round} (${posts} POSTs, ${gets} GETs, ${concurrency} at once): learned an idle limit of ${pool.learnedIdleMs} ms from closes the upstream never made`);
    }
    // And so sequential GETs go on one kept-alive connection.
    const before = connections;
    for (let i = 0; i < 50; i++) await send('GET');
    assert.ok(connections - before <= 1, `${ctx}: 50 sequential GETs opened ${connections - before} upstream connections`);
  });
});

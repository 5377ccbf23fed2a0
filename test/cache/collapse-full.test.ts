import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { Agent, request } from 'undici';
import { MAX_WAITERS, cacheKey } from '../../src/cache/index.js';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { startTestGateway } from '../helpers/gateway.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { endedRecords, within } from '../helpers/ended-records.js';
import { until } from '../helpers/until.js';

/**
 * The collapsing queue of a key at its limit (`MAX_WAITERS` behind one leader,
 * src/cache/collapse.ts; it had no test of its own): a miss that finds the queue full does not
 * wait and is not refused: it goes upstream at once for itself, while the leader is still on
 * its way, and is answered and recorded as a plain miss (`fwd=uri-miss; fwd-status=200`, no
 * `collapsed`: it never waited). A place freed in the queue (a waiter whose client left) is
 * taken by the next miss, which waits again. The waiters queued are all answered from what the
 * leader stored once it ends. Seeded: how many waiters leave once the queue is full (0–2) and
 * how many misses come beyond the freed places (1–2).
 */
test('a miss beyond a full collapsing queue goes upstream at once as a plain miss; a freed place is taken again (seeded)', { timeout: 300_000 }, async () => {
  const rand = seededRandom();
  const path = `/full-${rand.seed}`;
  let hold: ((res: ServerResponse) => void) | undefined;
  let atOrigin = 0;
  const up = await startScriptedUpstream((req, res) => {
    req.resume();
    atOrigin++;
    const h = hold;
    if (h !== undefined) {
      hold = undefined;
      h(res);
      return;
    }
    // Not stored: the next miss beyond the queue is a miss too (a stored one would answer it, fresh).
    res.writeHead(200, { 'cache-control': 'no-store' });
    res.end('beyond the queue');
  });
  const records = endedRecords();
  // One connection per request: every waiter is its own client request, queued at once.
  const agent = new Agent({ connections: null, pipelining: 1 });
  let g: Awaited<ReturnType<typeof startTestGateway>> | undefined;
  try {
    g = await startTestGateway({
      // Every waiter on its own connection from 127.0.0.1: past the default per-address limit.
      listeners: [{ address: '127.0.0.1', port: 0, maxConnectionsPerSource: 0 }],
      clusters: { up: { endpoints: [up.url], outlierDetection: { enabled: false } } },
      routes: [{ name: 'c', cluster: 'up', retry: { tries: 1 }, cache: { collapseWait: '120s' } }],
    } as never);
    const gw = g;
    const url = gw.url.replace(/\/$/, '') + path;
    const collapser = gw.gw.ctx.cache!.collapser;
    const key = cacheKey(`127.0.0.1${path}`, 'c');
    await withSeed(rand, async () => {
      const leave = rand.int(3);
      const beyond = 1 + rand.int(2);
      const what = `${leave} waiter(s) leave, ${beyond} miss(es) beyond`;
      const leaderAtOrigin = new Promise<ServerResponse>((resolve) => (hold = resolve));
      const leader = request(url, { dispatcher: agent });
      const leaderRes = await within(leaderAtOrigin, 10_000, `${what}: the leader at the origin`);
      // Fill the queue.
      const aborts = Array.from({ length: leave }, () => new AbortController());
      const waiters = Array.from({ length: MAX_WAITERS }, (_, i) => request(url, { dispatcher: agent, signal: i < leave ? aborts[i]!.signal : undefined }));
      // A failure below closes the gateway under the requests still open: their rejections are not the test's.
      for (const p of [leader, ...waiters]) p.catch(() => {});
      assert.ok(await until(() => collapser.waiting(key) === MAX_WAITERS, 60_000), `${what}: ${MAX_WAITERS} waiters queued (${collapser.waiting(key)})`);
      assert.equal(atOrigin, 1, `${what}: only the leader went upstream`);
      // Some leave: their places are free again.
      for (const a of aborts) a.abort();
      const left = await Promise.allSettled(waiters.slice(0, leave));
      for (const l of left) assert.equal(l.status, 'rejected', `${what}: an aborted waiter`);
      assert.ok(await until(() => collapser.waiting(key) === MAX_WAITERS - leave, 10_000), `${what}: the waiters that left are out of the queue (${collapser.waiting(key)})`);
      // The next misses take the freed places, one at a time: each waits.
      const refill = [];
      for (let i = 0; i < leave; i++) {
        const p = request(url, { dispatcher: agent });
        p.catch(() => {});
        refill.push(p);
        assert.ok(await until(() => collapser.waiting(key) === MAX_WAITERS - leave + i + 1, 10_000), `${what}: a miss takes a freed place (${collapser.waiting(key)})`);
      }
      assert.equal(atOrigin, 1, `${what}: none of them went upstream`);
      // Beyond the limit: each goes upstream at once and is answered while the leader is still held.
      for (let i = 0; i < beyond; i++) {
        const r = await within(request(url, { dispatcher: agent }), 10_000, `${what}: the miss beyond the full queue answered while the leader is held`);
        const body = await r.body.text();
        assert.equal(r.statusCode, 200, what);
        assert.equal(body, 'beyond the queue', `${what}: its own upstream answer`);
        const cs = String(r.headers['cache-status']);
        assert.match(cs, /^[^;]+; fwd=uri-miss; fwd-status=200$/, `${what}: a plain miss, not collapsed: ${cs}`);
        const rec = await within(records.wait((x) => x.requestId === String(r.headers['x-request-id'])), 10_000, `${what}: its record`);
        assert.equal(rec.cache, 'miss', `${what}: recorded a miss`);
        assert.equal(atOrigin, 2 + i, `${what}: it went upstream itself`);
        assert.equal(collapser.waiting(key), MAX_WAITERS, `${what}: the queue is as it was`);
      }
      // The leader ends: every waiter still queued is answered from what it stored.
      leaderRes.writeHead(200, { 'cache-control': 'max-age=60' });
      leaderRes.end('the leader');
      const lr = await leader;
      assert.equal(await lr.body.text(), 'the leader', what);
      const answered = await Promise.all([...waiters.slice(leave), ...refill].map(async (p) => {
        const r = await p;
        await r.body.text();
        return String(r.headers['cache-status']);
      }));
      const notCollapsed = answered.filter((cs) => !/; collapsed$/.test(cs));
      assert.deepEqual(notCollapsed, [], `${what}: every queued waiter answered from the store`);
      assert.equal(atOrigin, 1 + beyond, `${what}: requests at the origin`);
    });
  } finally {
    records.close();
    await g?.close();
    await up.close();
    await agent.close();
  }
});

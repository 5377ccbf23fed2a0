import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { startScriptedUpstream, startRawServer, onFirstHead } from '../helpers/scripted-upstream.js';
import { startTestGateway } from '../helpers/gateway.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { endedRecords, within } from '../helpers/ended-records.js';
import { counterSum } from './stale-entry.js';

/**
 * A GET (or HEAD) the cache passes by for what its key leaves out (gateway/cache-phase.ts
 * `#unkeyed`: `request-content`, a GET with a body; `unkeyed-host`, a Host with a port or a
 * trailing dot the key does not name) says why in its Cache-Status (`fwd=bypass; …;
 * detail=request-content`), whatever answers it: the upstream's answer, or one the gateway
 * made because the upstream failed. Before session 33 only a relayed answer said it; a
 * gateway-made one (502 connection_refused, 502 connection_terminated) carried a bare
 * `fwd=bypass`, as if the method had been the reason. The record's `cache` and
 * `gatewise_cache_responses_total{result}` say `bypass` alike, and the reason itself is in the
 * record's `bypass` (`method` for a method the cache does not answer), the access line and
 * `gatewise_cache_bypasses_total{route,reason}` (before, only Cache-Status named it). Seeded over the reason (and the
 * body's framing or the Host's form), the method and what answers.
 */

type Reason = 'request-content' | 'unkeyed-host';
type Answerer = 'upstream' | 'refused' | 'closed';

interface Got {
  status: number;
  cs: string;
  id: string;
}

function send(port: number, method: string, path: string, headers: Record<string, string>, body: string | undefined): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, agent: false, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, cs: String(res.headers['cache-status']), id: String(res.headers['x-request-id']) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test('a GET the cache passes by for what its key leaves out names why in Cache-Status, on the upstream\'s answer and on a gateway-made failure alike; the record and the metric say bypass (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const ok = await startScriptedUpstream((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': '2' });
      res.end('ok');
    });
  });
  // Takes the head, then closes without an answer: connection_terminated.
  const closing = await startRawServer((s) => onFirstHead(s, () => s.destroy()));
  const refusedPort = await closedPort();
  const records = endedRecords();
  let g: Awaited<ReturnType<typeof startTestGateway>> | undefined;
  try {
    g = await startTestGateway({
      clusters: {
        ok: { endpoints: [ok.url], outlierDetection: { enabled: false } },
        refused: { endpoints: [`http://127.0.0.1:${refusedPort}`], outlierDetection: { enabled: false } },
        closed: { endpoints: [closing.url], outlierDetection: { enabled: false } },
      },
      routes: [
        { name: 'refused', match: { pathPrefix: '/refused' }, cluster: 'refused', retry: { tries: 1 }, cache: {} },
        { name: 'closed', match: { pathPrefix: '/closed' }, cluster: 'closed', retry: { tries: 1 }, cache: {} },
        { name: 'upstream', cluster: 'ok', retry: { tries: 1 }, cache: {} },
      ],
    } as never);
    const gw = g;
    const bypassed = (route: string) => counterSum(gw.registry, 'gatewise_cache_responses_total', { route, result: 'bypass' });
    const byReason = (route: string, reason: string) => counterSum(gw.registry, 'gatewise_cache_bypasses_total', { route, reason });
    await withSeed(rand, async () => {
      for (let i = 0; i < 12; i++) {
        const reason: Reason = rand.pick(['request-content', 'unkeyed-host'] as const);
        const answerer: Answerer = rand.pick(['upstream', 'refused', 'closed'] as const);
        const method = reason === 'request-content' ? 'GET' : rand.pick(['GET', 'HEAD']);
        const path = `/${answerer}/c${i}-${rand.seed}`;
        const headers: Record<string, string> = {};
        let body: string | undefined;
        let form: string;
        if (reason === 'request-content') {
          body = `q=${'x'.repeat(1 + rand.int(300))}`;
          if (rand.next() < 0.5) {
            headers['content-length'] = String(body.length);
            form = 'Content-Length';
          } else {
            headers['transfer-encoding'] = 'chunked';
            form = 'chunked';
          }
        } else {
          const other = 1024 + rand.int(60_000);
          headers.host = rand.pick([`127.0.0.1:${other === gw.port ? other + 1 : other}`, '127.0.0.1.', `127.0.0.1.:${gw.port}`]);
          form = `Host ${headers.host}`;
        }
        const what = `case ${i}: ${method} ${reason} (${form}), answered by ${answerer}`;
        const before = await bypassed(answerer);
        const beforeReason = await byReason(answerer, reason);
        const r = await send(gw.port, method, path, headers, body);
        assert.equal(r.status, answerer === 'upstream' ? 200 : 502, what);
        const detail = answerer === 'upstream' ? new RegExp(`; fwd=bypass; fwd-status=200; detail=${reason}$`) : new RegExp(`; fwd=bypass; detail=${reason}$`);
        assert.match(r.cs, detail, `${what}: ${r.cs}`);
        const rec = await within(records.wait((x) => x.requestId === r.id), 10_000, `${what}: the record`);
        assert.equal(rec.cache, 'bypass', what);
        if (answerer !== 'upstream') assert.equal(rec.error, answerer === 'refused' ? 'connection_refused' : 'connection_terminated', what);
        assert.equal(await bypassed(answerer), before + 1, `${what}: counted as bypass`);
        // The reason is in the record, the access line and the metric too, not only in Cache-Status.
        assert.equal(rec.bypass, reason, `${what}: the record's bypass`);
        assert.equal((await gw.logFor(r.id)).bypass, reason, `${what}: the access line's bypass`);
        assert.equal(await byReason(answerer, reason), beforeReason + 1, `${what}: gatewise_cache_bypasses_total{reason}`);
      }
      // A method the cache does not answer is bypassed for its method alone: no detail, on either kind of answer.
      for (const answerer of ['upstream', 'refused'] as const) {
        const beforeMethod = await byReason(answerer, 'method');
        const r = await send(gw.port, 'POST', `/${answerer}/post-${rand.seed}`, { 'content-length': '1' }, 'x');
        assert.match(r.cs, answerer === 'upstream' ? /; fwd=bypass; fwd-status=200$/ : /; fwd=bypass$/, `POST answered by ${answerer}: ${r.cs}`);
        const rec = await within(records.wait((x) => x.requestId === r.id), 10_000, `POST answered by ${answerer}: the record`);
        assert.equal(rec.cache, 'bypass', `POST answered by ${answerer}`);
        assert.equal(rec.bypass, 'method', `POST answered by ${answerer}: the record's bypass`);
        assert.equal((await gw.logFor(r.id)).bypass, 'method', `POST answered by ${answerer}: the access line`);
        assert.equal(await byReason(answerer, 'method'), beforeMethod + 1, `POST answered by ${answerer}: gatewise_cache_bypasses_total{reason="method"}`);
      }
    });
  } finally {
    records.close();
    await g?.close();
    await ok.close();
    await closing.close();
  }
});

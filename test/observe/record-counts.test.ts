import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import { startRuntime } from '../../src/cli/runtime.js';
import { validateConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observe/access-log.js';
import { REQUEST_END_CHANNEL, type RequestRecord } from '../../src/record/index.js';
import { closedPort } from '../helpers/admin-stack.js';
import { sumOf } from '../helpers/metrics-text.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * The reverse record as the exchange builds it (one literal, no options object copied) and
 * the live view's per-second counts at the record's own finish time (no clock read per
 * record): a seeded mix of answers (200, 404, 503 from the origin, bodies of random sizes,
 * gateway-made 502s from a dead cluster) through a `gatewise run` runtime with its admin
 * listener; every series and count they feed must come out exact.
 */
test('reverse records: a seeded traffic mix counts exactly in the metrics and the live view', { timeout: 60_000 }, async () => {
  await seededRun('reverse record counts', async (rand) => {
    const origin: Server = createServer((req, res) => {
      const m = /^\/(\d+)\/(\d+)$/.exec(req.url ?? '');
      res.writeHead(Number(m?.[1] ?? 500), { 'content-type': 'text/plain' });
      res.end('x'.repeat(Number(m?.[2] ?? 0)));
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    const dead = await closedPort();
    const lines: string[] = [];
    const logger = createLogger({ destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
    const rt = await startRuntime(
      validateConfig({
        listeners: [{ port: 0 }],
        admin: { port: 0 },
        log: { access: false },
        clusters: { app: { endpoints: [`http://127.0.0.1:${(origin.address() as AddressInfo).port}`] }, gone: { endpoints: [`http://127.0.0.1:${dead}`], waitForEndpoint: { timeout: '0s' } } },
        routes: [{ name: 'gone', match: { pathPrefix: '/gone/' }, cluster: 'gone' }, { name: 'app', cluster: 'app' }],
      }),
      { logger, probeUpstreams: false },
    );
    const agent = new Agent({ connections: 4 });
    const records: RequestRecord[] = [];
    const onRecord = (m: unknown): void => void records.push(m as RequestRecord);
    subscribe(REQUEST_END_CHANNEL, onRecord);
    try {
      const parsed = lines.map((l) => JSON.parse(l) as { event?: string; url?: string; listeners?: string[] });
      const admin = parsed.find((l) => l.event === 'admin')!.url!;
      const base = parsed.find((l) => l.event === 'ready')!.listeners![0]!;
      const n = between(rand, 40, 120);
      const want = new Map<string, number>();
      let bodies = 0;
      for (let i = 0; i < n; i++) {
        const pick = between(rand, 0, 9);
        const size = between(rand, 0, 3000);
        const [path, wanted] = pick < 6 ? [`/200/${size}`, 200] : pick < 7 ? [`/404/${size}`, 404] : pick < 8 ? [`/503/${size}`, 503] : ['/gone/x', 0];
        const res = await request(`${base}${path}`, { dispatcher: agent });
        const body = await res.body.text();
        const status = res.statusCode;
        if (wanted !== 0) {
          assert.equal(status, wanted, path);
          assert.equal(body.length, size);
          bodies += size;
        } else assert.ok(status === 502 || status === 503, `a dead cluster answers ${status}`);
        const route = wanted === 0 ? 'gone' : 'app';
        want.set(`${route} ${status}`, (want.get(`${route} ${status}`) ?? 0) + 1);
      }
      // Every record is out once each response closed on the gateway's side: wait for the count, not a time.
      while (records.filter((r) => r.face === 'reverse').length < n) await new Promise((r) => setImmediate(r));
      const text = await (await request(`${admin}/metrics`)).body.text();
      for (const [k, v] of want) {
        const [route, status] = k.split(' ');
        assert.equal(sumOf(text, 'gatewise_requests_total', { face: 'reverse', route: route!, status: status! }), v, `requests_total ${k}`);
      }
      assert.equal(sumOf(text, 'gatewise_requests_total', { face: 'reverse' }), n);
      assert.equal(sumOf(text, 'gatewise_request_duration_seconds_count', { face: 'reverse' }), n);
      const rev = records.filter((r) => r.face === 'reverse');
      const down = rev.reduce((a, r) => a + r.bytesDown, 0);
      const up = rev.reduce((a, r) => a + r.bytesUp, 0);
      assert.equal(sumOf(text, 'gatewise_bytes_total', { face: 'reverse', direction: 'down' }), down);
      assert.equal(sumOf(text, 'gatewise_bytes_total', { face: 'reverse', direction: 'up' }), up);
      assert.ok(down > bodies, `bytes down ${down} hold the bodies (${bodies}) and the heads`);
      for (const r of rev) assert.ok(r.time >= Date.now() - 60_000 && r.time <= Date.now(), 'record time is its finish time');
      const live = (await (await request(`${admin}/traffic?seconds=600`)).body.json()) as { seconds: Array<{ reverse: number; errors: Record<string, number> }>; totals: { reverse: number; failures: number } };
      const gone = [...want].filter(([k]) => k.startsWith('gone ')).reduce((a, [, v]) => a + v, 0);
      assert.equal(live.totals.reverse, n);
      assert.equal(live.totals.failures, gone);
      assert.equal(live.seconds.reduce((a, s) => a + s.reverse, 0), n, 'every record counted in a second of the window');
      assert.equal(live.seconds.reduce((a, s) => a + Object.values(s.errors).reduce((x, y) => x + y, 0), 0), gone);
    } finally {
      unsubscribe(REQUEST_END_CHANNEL, onRecord);
      await agent.close();
      await rt.close();
      await new Promise((r) => origin.close(r));
    }
  });
});

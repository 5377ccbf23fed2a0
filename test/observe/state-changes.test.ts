import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { after, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { startLab } from '../../src/lab/index.js';
import { attachAccessLog } from '../../src/observe/access-log.js';
import { LimitLog } from '../../src/observe/limit-log.js';
import { LIMIT_CHANNEL, type LimitEvent } from '../../src/upstream/admission.js';
import { startTestGateway } from '../helpers/gateway.js';
import { seededRandom } from '../helpers/seeded.js';
import { memoryLogger, tableResolver, waitFor } from '../forward/helpers.js';
import { PASSWORD, USER, connectGet, startPoolProxy, startUpstreamGatewise, whoAmI } from '../egress/helpers.js';

/**
 * Issue 18: every state change is one log line with its reason. Adaptive concurrency limit
 * changes (driven for real: the lab slows down under load) are logged old → new with why,
 * at most one line per cluster per interval; sticky session re-pins and exit cool-downs on
 * the forward side are logged with why (driven by a hop that refuses).
 */

const opened: Array<{ close(): Promise<void> | void }> = [];
after(async () => {
  for (const o of opened.reverse()) await o.close();
});

type Line = Record<string, unknown>;

describe('adaptive limit changes are logged, rate-limited', () => {
  test('the lab slows under load: a warn line says the limit fell and why; lines stay within one per interval and account for every change', async () => {
    const lab = await startLab({ capacity: 200, queue: 1000 });
    opened.push(lab);
    const cluster = 'limit-log';
    const gw = await startTestGateway({
      clusters: { [cluster]: { endpoints: [lab.url], limits: { adaptive: { kind: 'aimd', min: 2, max: 64, initial: 24, targetLatency: '60ms' }, maxQueued: 500, queueTimeout: '10s' } } },
      routes: [{ cluster, retry: { tries: 1 } }],
    });
    opened.push(gw);
    const intervalMs = 400;
    const { logger, lines } = memoryLogger();
    const detach = attachAccessLog(logger, { face: 'reverse', limitLogIntervalMs: intervalMs });
    const events: LimitEvent[] = [];
    const onLimit = (m: unknown): void => {
      if ((m as LimitEvent).cluster === cluster) events.push(m as LimitEvent);
    };
    subscribe(LIMIT_CHANNEL, onLimit);
    const started = performance.now();
    const client = new Agent({ connections: 32 });
    let stop = false;
    let serviceMs = 150; // slow: every request takes 150 ms at the lab, above the 60 ms target
    const loops = Array.from({ length: 32 }, async () => {
      for (let i = 0; i < 400 && !stop; i++) {
        const res = await request(`${gw.url}/work?ms=${serviceMs}`, { dispatcher: client });
        await res.body.text();
      }
    });
    const limitLines = (): Line[] => lines.filter((l) => l.type === 'limit' && l.cluster === cluster);
    try {
      const fell = await waitFor(() => limitLines().some((l) => l.level === 'warn' && Number(l.to) < Number(l.from)), 15_000);
      assert.ok(fell, `a line saying the limit fell; events: ${events.map((e) => e.limit).join(' ')}`);
      const line = limitLines().find((l) => l.level === 'warn')!;
      assert.match(String(line.reason), /latency \d+ ms above the target 60 ms/);
      assert.match(String(line.msg), new RegExp(`concurrency limit of cluster ${cluster} \\d+ → \\d+`));
      // Keep it busy for a few intervals (fast again: the limit climbs back).
      serviceMs = 5;
      await waitFor(() => performance.now() - started > intervalMs * 5, 10_000);
    } finally {
      stop = true;
      await Promise.all(loops);
      await client.close();
    }
    unsubscribe(LIMIT_CHANNEL, onLimit);
    const elapsed = performance.now() - started;
    detach(); // writes what is still gathered
    const all = limitLines();
    console.log(`${events.length} limit changes in ${Math.round(elapsed)} ms → ${all.length} lines (interval ${intervalMs} ms)`);
    assert.ok(events.length > 0);
    assert.ok(all.length <= Math.ceil(elapsed / intervalMs) + 1, `${all.length} lines in ${Math.round(elapsed)} ms: more than one per ${intervalMs} ms`);
    assert.equal(all.reduce((n, l) => n + Number(l.changes), 0), events.length, 'the lines account for every change');
    for (let i = 1; i < all.length; i++) assert.equal(all[i]!.from, all[i - 1]!.to, 'each line starts where the last one ended');
    assert.equal(all.at(-1)!.to, events.at(-1)!.limit);
  });

  test('seeded family: bursts of changes on several clusters summarise into a chain of lines that accounts for every change', async () => {
    const rand = seededRandom();
    const { logger, lines } = memoryLogger();
    const intervalMs = 30 + rand.int(50);
    const log = new LimitLog(logger, intervalMs);
    const clusters = ['a', 'b', 'c'].slice(0, 1 + rand.int(3));
    const limits = new Map(clusters.map((c) => [c, 10 + rand.int(20)]));
    const sent = new Map(clusters.map((c) => [c, 0]));
    const causes = ['drop', 'latency', 'grow', 'gradient', 'probe'] as const;
    try {
      for (let burst = 0; burst < 6; burst++) {
        for (let i = 0, n = rand.int(40); i < n; i++) {
          const c = rand.pick(clusters);
          const previous = limits.get(c)!;
          const limit = Math.max(1, previous + (rand.next() < 0.5 ? -1 : 1) * (1 + rand.int(3)));
          limits.set(c, limit);
          sent.set(c, sent.get(c)! + 1);
          log.onEvent({ cluster: c, limit, previous, inflight: 0, latencyMs: 1, cause: rand.pick(causes), reason: 'test' } satisfies LimitEvent);
        }
        await new Promise((r) => setTimeout(r, rand.int(intervalMs * 2))); // a pause between bursts (the family varies it)
      }
      log.close();
      for (const c of clusters) {
        const mine = lines.filter((l) => l.cluster === c);
        assert.equal(mine.reduce((n, l) => n + Number(l.changes), 0), sent.get(c), `seed ${rand.seed}: cluster ${c}'s lines account for every change`);
        for (let i = 1; i < mine.length; i++) assert.equal(mine[i]!.from, mine[i - 1]!.to, `seed ${rand.seed}: a chain`);
        if (mine.length > 0) assert.equal(mine.at(-1)!.to, limits.get(c), `seed ${rand.seed}: the last line ends at the limit`);
      }
    } catch (err) {
      console.log(`failing seed: GATEWISE_SEED=${rand.seed}`);
      throw err;
    }
  });
});

/** A hop that answers every CONNECT and request with 403. */
async function refusingHop(): Promise<{ url: string; label: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n\r\n')) s.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://u:p@127.0.0.1:${port}`,
    label: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('forward state changes are logged with their reason', () => {
  test('a pinned exit refuses: one cool-down line (for how long, after what) and one re-pin line (from, to, why); a later session pinned to the cooled exit re-pins because it cools down', async () => {
    const resolver = tableResolver({ 'origin.test': ['127.0.0.1'] });
    const origin = await whoAmI();
    opened.push(origin);
    const good = await startUpstreamGatewise('good', resolver);
    opened.push(good);
    const bad = await refusingHop();
    opened.push(bad);
    const goodLabel = `http://127.0.0.1:${good.port}`;
    const p = await startPoolProxy({ egress: { pools: { rot: { proxies: [bad.url, `http://${USER}:${PASSWORD}@127.0.0.1:${good.port}`], failure: { threshold: 1, cooldown: '30s' } } }, defaultPool: 'rot' } });
    opened.push(p);
    const pool = p.proxy.egress.pools.get('rot')!;
    pool.sessions.pin(`${USER}|s1`, bad.label, 600_000, 600_000);
    const c = await connectGet(p.port, 'origin.test', origin.port, `${USER}-session-s1`);
    assert.match(c.connect, /^HTTP\/1\.1 200/);
    assert.ok(await waitFor(() => p.lines.some((l) => l.type === 'session')), 'a re-pin line');
    const repin = p.lines.find((l) => l.type === 'session')!;
    assert.deepEqual([repin.event, repin.pool, repin.user, repin.session, repin.from, repin.to, repin.reason], ['repinned', 'rot', USER, 's1', bad.label, goodLabel, 'its exit failed this connection']);
    const cooled = p.lines.filter((l) => l.type === 'exit' && l.event === 'cooled');
    assert.equal(cooled.length, 1, 'one cool-down line');
    assert.equal(cooled[0]!.exit, bad.label);
    assert.equal(cooled[0]!.level, 'warn');
    assert.ok(Number(cooled[0]!.forMs) > 25_000 && Number(cooled[0]!.forMs) <= 30_000, `for ${String(cooled[0]!.forMs)} ms`);
    assert.match(String(cooled[0]!.reason), /^http_request_denied: /);
    // A second session pinned to the exit that now cools down moves because of that.
    pool.sessions.pin(`${USER}|s2`, bad.label, 600_000, 600_000);
    const c2 = await connectGet(p.port, 'origin.test', origin.port, `${USER}-session-s2`);
    assert.match(c2.connect, /^HTTP\/1\.1 200/);
    assert.ok(await waitFor(() => p.lines.some((l) => l.type === 'session' && l.session === 's2')));
    const second = p.lines.find((l) => l.type === 'session' && l.session === 's2')!;
    assert.match(String(second.reason), /^its exit is cooling down after failures \(\d+ s left\)$/);
    assert.equal(p.lines.filter((l) => l.type === 'exit').length, 1, 'no second cool-down: the exit was not tried');
  });

  test('the end of a cool-down is logged when it comes, with no traffic asking for the exit (seeded cool-down lengths)', async () => {
    const rand = seededRandom();
    try {
      const resolver = tableResolver({ 'origin.test': ['127.0.0.1'] });
      const origin = await whoAmI();
      opened.push(origin);
      const good = await startUpstreamGatewise('good2', resolver);
      opened.push(good);
      const bad = await refusingHop();
      opened.push(bad);
      const cooldownMs = 150 + rand.int(600);
      const p = await startPoolProxy({ egress: { pools: { rot: { proxies: [bad.url, `http://${USER}:${PASSWORD}@127.0.0.1:${good.port}`], failure: { threshold: 1, cooldown: `${cooldownMs}ms` } } }, defaultPool: 'rot' } });
      opened.push(p);
      p.proxy.egress.pools.get('rot')!.sessions.pin(`${USER}|s1`, bad.label, 600_000, 600_000);
      const t0 = Date.now();
      const c = await connectGet(p.port, 'origin.test', origin.port, `${USER}-session-s1`);
      assert.match(c.connect, /^HTTP\/1\.1 200/);
      assert.ok(await waitFor(() => p.lines.some((l) => l.type === 'exit' && l.event === 'returned'), cooldownMs + 3000), `seed ${rand.seed}: a return line within the cool-down and 3 s`);
      const cooled = p.lines.filter((l) => l.type === 'exit' && l.event === 'cooled');
      const back = p.lines.filter((l) => l.type === 'exit' && l.event === 'returned');
      assert.equal(cooled.length, 1, `seed ${rand.seed}`);
      assert.equal(back.length, 1, `seed ${rand.seed}: one return line`);
      assert.ok(Date.now() - t0 >= cooldownMs - 5, `seed ${rand.seed}: not before the cool-down ran out`);
      assert.deepEqual([back[0]!.level, back[0]!.pool, back[0]!.exit, back[0]!.forMs], ['info', 'rot', bad.label, cooldownMs], `seed ${rand.seed}`);
      assert.match(String(back[0]!.msg), new RegExp(`^exit .* of pool rot is back in service.* after a \\d+ s cool-down$`));
    } catch (err) {
      console.log(`failing seed: GATEWISE_SEED=${rand.seed}`);
      throw err;
    }
  });
});

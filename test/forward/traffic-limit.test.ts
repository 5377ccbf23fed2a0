import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PASSWORD2, USER2, basicOf, startPoolProxy } from '../egress/helpers.js';
import { accessLines, dial, readUntil, waitFor } from './helpers.js';
import { byteSource, openTunnel, pull } from './byte-source.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { MemoryStore } from '../../src/state/index.js';
import { PlanEnforcer, periodOf, usageKey } from '../../src/tenants/index.js';
import { startOrigin } from './helpers.js';

const T0 = Date.parse('2026-03-10T10:00:00.100Z');
const CHUNK = 64 * 1024;

/**
 * F6: a user's `trafficLimit` (bytes up and down together per trafficPeriod) is enforced as a
 * byte quota: at admission (429 naming it) and per chunk in open tunnels and HTTP bodies, not
 * only by the once-a-second sweep that disables the user.
 */
describe('trafficLimit: checked at admission and per chunk', () => {
  it('admission: a user at the limit is refused with the 429 before any sweep ran (seeded)', async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      const store = new MemoryStore({ now: () => T0 });
      const limit = 1000 + rand.int(1_000_000);
      const period = rand.pick(['day', 'month'] as const);
      const p = new PlanEnforcer(new Map(), new Map(), store, () => T0, undefined, new Map([['t', { limit, period }]]));
      try {
        assert.equal(p.admit('t'), undefined);
        const up = rand.int(limit);
        p.record('t', 'up', up);
        assert.equal(p.admit('t'), undefined, 'under the limit');
        assert.equal(p.allowBytes('t', 'down'), undefined);
        p.record('t', 'down', limit - up);
        const r = p.admit('t');
        assert.ok(r !== undefined && !(r instanceof Promise), 'refused at the limit');
        assert.equal(r.status, 429);
        assert.equal(r.reason, 'too_many_requests');
        assert.match(r.detail ?? '', new RegExp(`user t: trafficLimit of .* per ${period} reached; resets at ${new Date(periodOf(period, T0).resetsAt).toISOString()}`));
        assert.ok(p.allowBytes('t', 'up') !== undefined && p.allowBytes('t', 'down') !== undefined);
        // Users without a limit pay nothing and are never refused by it.
        assert.equal(p.admit('other'), undefined);
      } finally {
        await p.flush();
        await store.close();
      }
    });
  });

  it('an open tunnel is cut at the chunk after the one that crosses it (seeded)', async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      const limit = 50_000 + rand.int(500_000);
      const src = await byteSource();
      const p = await startPoolProxy({}, { alice: { trafficLimit: limit, trafficPeriod: 'day' } }, { now: () => T0 });
      try {
        const t = await openTunnel(p.port, src.port);
        assert.equal(t.status, 200);
        const r = await pull(t.sock, limit * 10);
        const info = JSON.stringify({ limit, r });
        assert.ok(r.closed, info);
        assert.ok(r.got >= limit - 20 && r.got <= limit + CHUNK, info);
        assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.protocol === 'connect'), 5000));
        const rec = accessLines(p.lines).find((l) => l.protocol === 'connect')!;
        assert.equal(rec.endedBy, 'quota', JSON.stringify(rec));
        assert.match(String(rec.quota), /trafficLimit of .* per day reached/);
        await p.proxy.plans.flush();
        const h = await p.proxy.store.hgetall(usageKey('alice', 'day', periodOf('day', T0).id));
        assert.equal((h.up ?? 0) + (h.down ?? 0), (rec.bytesUp as number) + (rec.bytesDown as number));
      } finally {
        await p.close();
        await src.close();
      }
    });
  });

  it('a plain HTTP response is cut, and the next request refused (seeded)', async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      const limit = 20_000 + rand.int(300_000);
      const origin = await startOrigin();
      const p = await startPoolProxy({}, { bob: { trafficLimit: limit, trafficPeriod: 'month' } }, { now: () => T0 });
      const s = await dial(p.port);
      s.on('error', () => {});
      try {
        const n = limit * 5;
        s.write(`GET http://127.0.0.1:${origin.port}/big/${n} HTTP/1.1\r\nhost: 127.0.0.1:${origin.port}\r\nproxy-authorization: ${basicOf(USER2, PASSWORD2)}\r\n\r\n`);
        const raw = await readUntil(s, () => false, 20_000);
        const info = JSON.stringify({ limit, n, got: raw.length });
        assert.match(raw.toString('latin1', 0, 12), /^HTTP\/1\.1 200/, info);
        assert.ok(raw.length < n && raw.length <= limit + CHUNK + 1024, info);
        assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.user === USER2), 5000));
        assert.equal(accessLines(p.lines).find((l) => l.user === USER2)!.endedBy, 'quota');
        const s2 = await dial(p.port);
        s2.on('error', () => {});
        try {
          s2.write(`GET http://127.0.0.1:${origin.port}/ HTTP/1.1\r\nhost: 127.0.0.1:${origin.port}\r\nproxy-authorization: ${basicOf(USER2, PASSWORD2)}\r\n\r\n`);
          const next = (await readUntil(s2, (b) => b.includes('\r\n\r\n'), 5000)).toString('latin1');
          // 429 naming the limit; 407 once the sweep has disabled the user (it runs every second).
          assert.match(next, /^HTTP\/1\.1 (429|407) /, next);
          if (next.startsWith('HTTP/1.1 429')) assert.match(next, /trafficLimit of .* per month reached/);
        } finally {
          s2.destroy();
        }
      } finally {
        s.destroy();
        await p.close();
        await origin.close();
      }
    });
  });
});

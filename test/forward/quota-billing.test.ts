import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import { USER, startPoolProxy } from '../egress/helpers.js';
import { byteSource, openTunnel, pull } from './byte-source.js';
import { accessLines, waitFor } from './helpers.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { periodOf, usageKey } from '../../src/tenants/index.js';

const T0 = Date.parse('2026-03-10T10:00:00.100Z');

describe('byte quota billing: a tunnel cut by the quota is billed only for what it passed on', () => {
  it('parallel tunnels opened just under the quota: billed down equals the bytes the clients received (seeded)', async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let round = 0; round < 2; round++) {
        const quota = 200_000 + rand.int(600_000);
        const first = quota - 1 - rand.int(20_000);
        const tunnels = 2 + rand.int(14);
        const src = await byteSource();
        const socks: Socket[] = [];
        const p = await startPoolProxy({ plans: { q: { bytesPerDay: { down: quota } } } }, { alice: { plan: 'q' } }, { now: () => T0 });
        try {
          const t0 = await openTunnel(p.port, src.port);
          assert.equal(t0.status, 200);
          assert.equal((await pull(t0.sock, first)).got, first);
          // All open (admitted under the quota) before any pulls its bytes.
          const open = await Promise.all(Array.from({ length: tunnels }, () => openTunnel(p.port, src.port)));
          socks.push(...open.map((o) => o.sock));
          assert.ok(open.every((o) => o.status === 200), JSON.stringify(open.map((o) => o.status)));
          const rs = await Promise.all(open.map((o) => pull(o.sock, quota * 2)));
          const received = first + rs.reduce((s, r) => s + r.got, 0);
          // Every tunnel recorded (its bytes counted) before the usage is read.
          assert.ok(await waitFor(() => accessLines(p.lines).filter((l) => l.protocol === 'connect').length === tunnels + 1, 10_000));
          await p.proxy.plans.flush();
          const day = await p.proxy.store.hgetall(usageKey(USER, 'day', periodOf('day', T0).id));
          const recorded = accessLines(p.lines).reduce((s, l) => s + (l.bytesDown as number), 0);
          const info = JSON.stringify({ quota, first, tunnels, received, billed: day.down, recorded });
          // The chunk that crossed the quota went through; nothing past it; what is billed arrived.
          assert.ok(received >= quota, info);
          assert.equal(day.down, received, info);
          assert.equal(recorded, received, info);
          assert.ok(accessLines(p.lines).some((l) => l.endedBy === 'quota'), info);
        } finally {
          for (const s of socks) s.destroy();
          await p.close();
          await src.close();
        }
      }
    });
  });
});

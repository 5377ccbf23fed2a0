import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConcurrencyLimits } from '../../src/tenants/concurrency-limits.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * `tryAcquireTunnel` (a tunnel's connection and tunnel slots in one call, one release) must
 * count exactly as the two `tryAcquire` calls it replaced on the tunnel path: the same
 * refusals in the same order (connections first), nothing taken when refused, a release
 * that frees both once however often it is called. Checked against a model over seeded
 * random sequences of acquisitions, requests (a connection slot alone) and releases.
 */
describe('ConcurrencyLimits.tryAcquireTunnel', () => {
  it('counts as tryAcquire(connections) then tryAcquire(tunnels) did, over random sequences', async () => {
    await seededRun('tryAcquireTunnel against the model', (rand) => {
      for (let round = 0; round < 200; round++) {
        const limits = new ConcurrencyLimits();
        const users = ['a', 'b', 'c'];
        const maxConn = between(rand, 0, 5);
        const maxTun = between(rand, 0, 5);
        const model = new Map<string, { conn: number; tun: number }>(users.map((u) => [u, { conn: 0, tun: 0 }]));
        const held: Array<{ user: string; tunnel: boolean; release: () => void }> = [];
        for (let step = 0; step < 60; step++) {
          const user = users[between(rand, 0, users.length - 1)]!;
          const m = model.get(user)!;
          const op = rand();
          if (op < 0.45) {
            const r = limits.tryAcquireTunnel(user, maxConn, maxTun);
            const want = m.conn >= maxConn ? 'connections' : m.tun >= maxTun ? 'tunnels' : 'ok';
            if (want === 'ok') {
              assert.equal(typeof r, 'function', `round ${round} step ${step}: ${user} with ${m.conn}/${maxConn} connections, ${m.tun}/${maxTun} tunnels`);
              m.conn++;
              m.tun++;
              held.push({ user, tunnel: true, release: r as () => void });
            } else {
              assert.equal(r, want, `round ${round} step ${step}: ${user} with ${m.conn}/${maxConn} connections, ${m.tun}/${maxTun} tunnels`);
            }
          } else if (op < 0.6) {
            const r = limits.tryAcquire(user, 'connections', maxConn);
            if (m.conn < maxConn) {
              assert.ok(r);
              m.conn++;
              held.push({ user, tunnel: false, release: r });
            } else assert.equal(r, undefined);
          } else if (held.length > 0) {
            const i = between(rand, 0, held.length - 1);
            const h = held[i]!;
            h.release();
            h.release(); // a second call changes nothing
            held.splice(i, 1);
            const hm = model.get(h.user)!;
            hm.conn--;
            if (h.tunnel) hm.tun--;
          }
          for (const u of users) {
            assert.equal(limits.current(u, 'connections'), model.get(u)!.conn, `round ${round} step ${step}: connections of ${u}`);
            assert.equal(limits.current(u, 'tunnels'), model.get(u)!.tun, `round ${round} step ${step}: tunnels of ${u}`);
          }
        }
      }
    });
  });
});

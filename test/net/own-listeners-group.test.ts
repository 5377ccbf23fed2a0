import assert from 'node:assert/strict';
import test from 'node:test';
import { connectionKey, groupForwardPeer, viaOwnForward } from '../../src/net/own-listeners.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * The marks a `--workers N` group keeps of its forward proxy's connections to its own gateway
 * listeners (net/own-listeners.ts), as the group's messages reach one worker: a mark's
 * announcement may be lost (the primary drops an ask past its deadline, a worker gets it after
 * its cut-off: the dial then fails closed and the connection ends), and every connection's
 * end is announced. Keyed by the client end alone, the end of a connection whose mark was lost
 * took the mark of another connection from the same local port (Linux lends one to
 * connections to different destinations) to another gateway port, which was then trusted as a
 * loopback client (review of session 39). Seeded over local ports (few, so they repeat),
 * gateway ports, address spellings and the order of the messages; the gateway's view is the
 * accepted socket's ends.
 */
test('a mark stays while its connection is open, whatever other connections from the same local port do (lost marks, ends, spellings)', () => {
  return seededRun('group marks', async (rand) => {
    for (let round = 0; round < 40; round++) {
      interface Conn { port: number; to: number; spelling: string; on: 'pending' | 'applied' | 'lost'; open: boolean }
      const conns: Conn[] = Array.from({ length: between(rand, 2, 8) }, () => ({
        port: 40000 + between(rand, 0, 2),
        to: [8080, 8443, 9000][between(rand, 0, 2)]!,
        spelling: rand() < 0.5 ? '127.0.0.1' : '::ffff:127.0.0.1',
        on: 'pending',
        open: true,
      }));
      // Two open connections never share both ends (TCP): keep the first of each.
      const seen = new Set<string>();
      const live = conns.filter((c) => !seen.has(`${c.port} ${c.to}`) && seen.add(`${c.port} ${c.to}`));
      const keyOf = (c: Conn): string => connectionKey(c.spelling, c.port, '127.0.0.1', c.to);
      const steps: Array<() => void> = [];
      for (const c of live) {
        steps.push(() => {
          c.on = rand() < 0.3 ? 'lost' : 'applied';
          if (c.on === 'applied') groupForwardPeer(keyOf(c), true);
        });
      }
      // Ends come after their own mark's fate; a lost mark's connection always ends (failed closed).
      const order = steps.map((s, i) => ({ s, i, r: rand() }));
      order.sort((a, b) => a.r - b.r);
      const trace: string[] = [];
      for (const { s, i } of order) {
        s();
        const c = live[i]!;
        trace.push(`${c.port}->${c.to} ${c.on}`);
        if (c.on === 'lost' || rand() < 0.3) {
          c.open = false;
          groupForwardPeer(keyOf(c), false);
          trace.push(`${c.port}->${c.to} end`);
        }
        for (const o of live) {
          if (o.on !== 'applied' || !o.open) continue;
          // The gateway's accepted socket: the client end as the kernel tells it, in the other spelling half the time.
          const seenFrom = rand() < 0.5 ? o.spelling : o.spelling === '127.0.0.1' ? '::ffff:127.0.0.1' : '127.0.0.1';
          assert.ok(viaOwnForward({ remoteAddress: seenFrom, remotePort: o.port, localAddress: '127.0.0.1', localPort: o.to }), `round ${round}: ${o.port}->${o.to} open and marked, not seen as the proxy's after ${trace.join(', ')}`);
        }
      }
      // Everything ends: no mark is left behind.
      for (const c of live) if (c.open && c.on === 'applied') groupForwardPeer(keyOf(c), false);
      for (const c of live) assert.equal(viaOwnForward({ remoteAddress: c.spelling, remotePort: c.port, localAddress: '127.0.0.1', localPort: c.to }), false, `round ${round}: ${c.port}->${c.to} still marked after its end`);
    }
  });
});

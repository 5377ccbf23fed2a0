import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { startTestGateway, type GatewayFront } from '../helpers/gateway.js';
import { startRawServer, type RawServer } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * A switched (upgraded) connection had no idle limit at all on the reverse gateway: a
 * WebSocket whose two ends went silent (a client gone without a FIN, an upstream hung) held
 * its two sockets, a `maxConnections` place and the drain's in-flight count for ever (nginx
 * closes such a tunnel at proxy_read_timeout, the forward proxy's tunnels at tunnelIdle).
 * The cluster's `timeouts.tunnelIdle` now closes a tunnel no byte crossed either way for
 * that long, recorded `endedBy: idle`; a tunnel with traffic is kept. Seeded over the idle
 * time, both fronts.
 */

let upstream: RawServer;

before(async () => {
  // After its 101, echoes what it reads.
  upstream = await startRawServer((s) => {
    let head = '';
    let switched = false;
    s.on('data', (d: Buffer) => {
      if (switched) {
        s.write(d);
        return;
      }
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      switched = true;
      s.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    });
  });
});

after(async () => {
  await upstream?.close();
});

describe('upgrade tunnel idle timeout (clusters.<name>.timeouts.tunnelIdle)', () => {
  test('seeded family: a silent tunnel is closed once idle for tunnelIdle (not before), recorded endedBy idle; one with traffic in every gap under it stays open', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let i = 0; i < 4; i++) {
        const front = rand.pick<GatewayFront>(['node', 'net']);
        const idleMs = 300 + rand.int(900);
        const gw = await startTestGateway({
          listeners: [{ address: '127.0.0.1', port: 0, front }],
          clusters: { up: { endpoints: [upstream.url], outlierDetection: { enabled: false }, timeouts: { tunnelIdle: `${idleMs}ms` } } },
          routes: [{ cluster: 'up', retry: { tries: 1 } }],
        } as never);
        const what = `${front} front, tunnelIdle ${idleMs} ms`;
        try {
          const c = new RawConn(gw.port);
          await c.write('GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
          const head = parseHead(await c.waitFor((t) => t.includes('\r\n\r\n'), 10_000, 'the 101'))!;
          assert.equal(head.status, 101, what);
          // Traffic: three echoes, each sent some time under the idle time after the last byte.
          let lastByte = performance.now();
          let keptOpen = true;
          for (let k = 0; k < 3; k++) {
            await new Promise((r) => setTimeout(r, idleMs / 3)); // pacing, not synchronisation
            const gap = performance.now() - lastByte;
            await c.write(`m${k};`);
            try {
              await c.waitFor((t) => t.endsWith(`m${k};`), 10_000, `echo ${k}`);
            } catch (err) {
              // Only a gap the loaded machine stretched past the idle time may have closed it.
              assert.ok(gap >= idleMs, `${what}: closed with traffic every ${Math.round(gap)} ms (${String(err)})`);
              keptOpen = false;
              break;
            }
            lastByte = performance.now();
          }
          if (keptOpen) {
            // Silence: closed by the gateway, no sooner than the idle time after the last byte.
            await c.closed(idleMs + 15_000);
            const quiet = performance.now() - lastByte;
            assert.ok(quiet >= idleMs - 20, `${what}: closed after ${Math.round(quiet)} ms of silence`);
          }
          c.destroy();
          const line = await gw.logFor(head.get('x-request-id')!);
          assert.equal(line.endedBy, 'idle', `${what}: ${JSON.stringify(line)}`);
          assert.equal(line.status, 101);
        } finally {
          await gw.close();
        }
      }
    });
  });

});

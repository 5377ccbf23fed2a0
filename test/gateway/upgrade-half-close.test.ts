import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { startTestGateway, type GatewayFront, type TestGateway } from '../helpers/gateway.js';
import { startRawServer, type RawServer } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * A switched connection is a byte stream both ways, and a client that half-closes it (its
 * FIN after its last message) still gets what the upstream answers to that end. On the
 * `front: net` listener the client socket was not half-open (node:http's sockets are): the
 * client's FIN ended the gateway's write side at once, so the upstream's reply to the end
 * was lost and the record said bytesDown 0. Both fronts, a seeded size of what the client
 * sends; the record counts the tunnel's bytes both ways.
 */

let upstream: RawServer;

before(async () => {
  // After its 101, reads until the client's end, then answers with what it counted and ends.
  upstream = await startRawServer((s) => {
    let head = '';
    let switched = false;
    let n = 0;
    s.on('data', (d: Buffer) => {
      if (switched) {
        n += d.length;
        return;
      }
      head += d.toString('latin1');
      const e = head.indexOf('\r\n\r\n');
      if (e < 0) return;
      switched = true;
      n = head.length - e - 4;
      s.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    });
    s.on('end', () => s.end(`got:${n};`));
  });
});

after(async () => {
  await upstream?.close();
});

for (const front of ['node', 'net'] as GatewayFront[]) {
  describe(`upgrade half-close (${front} front)`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startTestGateway({
        listeners: [{ address: '127.0.0.1', port: 0, front }],
        clusters: { up: { endpoints: [upstream.url], outlierDetection: { enabled: false } } },
        routes: [{ cluster: 'up', retry: { tries: 1 } }],
      } as never);
    });
    after(async () => {
      await gw?.close();
    });

    test('the client ends its side: the upstream\'s answer to that end still reaches it (seeded sizes)', { timeout: 60_000 }, async () => {
      const rand = seededRandom();
      await withSeed(rand, async () => {
        for (let i = 0; i < 4; i++) {
          const size = 1 + rand.int(200_000);
          const c = new RawConn(gw.port);
          await c.write('GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
          const text = await c.waitFor((t) => t.includes('\r\n\r\n'), 10_000, 'the 101');
          const head = parseHead(text)!;
          assert.equal(head.status, 101);
          await c.write(Buffer.alloc(size, 0x61));
          c.socket.end();
          const all = await c.waitFor((t, ended) => ended || t.endsWith(';'), 10_000, 'the answer to the end');
          assert.equal(all.slice(head.end), `got:${size};`, `size ${size}`);
          await c.closed(10_000);
          const line = await gw.logFor(head.get('x-request-id')!);
          assert.equal(line.bytesUp, size);
          assert.equal(line.bytesDown, `got:${size};`.length);
          assert.equal(line.endedBy, 'complete');
        }
      });
    });
  });
}

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTestGateway } from '../helpers/gateway.js';
import { RawConn } from '../helpers/raw-conn.js';
import { seededRun } from '../helpers/seeded.js';
import { MAX_PIPELINED_RUNNING, MAX_PIPELINED_WAITING } from '../../src/http/pipelining.js';

/**
 * A connection the gateway stops reading (too many of its pipelined requests wait) is not
 * answered 408 for the head it holds (found in session 32: the read-ahead test failed on a
 * loaded machine with "every request answered: 6804 !== 8109", the rest a 408 after ~10 s).
 * node:http times a head from its first byte, and the node front's last read usually ends
 * inside one; while the gateway does not read on, that head cannot arrive, whatever the
 * client does. The head held is still timed once reading goes on: one that never completes
 * gets its 408 a head timeout after the release.
 *
 * Both fronts (the net front stops at a request boundary: no head is held). Synchronised on
 * events: the origin holds what may run; another client's head, sent later, gets its 408
 * first (the gateway's timeout check has passed over the held connection's older head too).
 * The hold outlasting the timeout is the condition under test, reached by that event. A
 * refusal of a head is held back until the answers before it are out (gateway/server.ts):
 * the client completes its head only after them.
 */
describe('a head held while its connection is not read is not timed out', () => {
  for (const front of ['node', 'net'] as const) {
    test(`front: ${front}`, { timeout: 60_000 }, async () => {
      const held: ServerResponse[] = [];
      let releasing = false;
      let waiter: (() => void) | undefined;
      const origin = createServer((req, res) => {
        req.resume();
        const n = req.url!.slice(1);
        if (releasing) {
          res.writeHead(200, { 'x-n': n, 'content-length': '2' });
          res.end('ok');
          return;
        }
        (res as ServerResponse & { n?: string }).n = n;
        held.push(res);
        if (held.length >= MAX_PIPELINED_RUNNING) waiter?.();
      });
      await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
      const g = await startTestGateway({
        listeners: [{ address: '127.0.0.1', port: 0, front, requestHeaderTimeout: '2s' }],
        clusters: { up: { endpoints: [`http://127.0.0.1:${(origin.address() as AddressInfo).port}`], outlierDetection: { enabled: false } } },
        routes: [{ cluster: 'up', retry: { tries: 1 } }],
      });
      const conns: RawConn[] = [];
      try {
        await seededRun(`held head, front ${front}`, async (rand) => {
          for (const completes of [true, false]) {
            held.length = 0;
            releasing = false;
            // Enough complete requests to fill what runs and what waits, then the start of one more head.
            const k = MAX_PIPELINED_RUNNING + MAX_PIPELINED_WAITING + 1 + Math.floor(rand() * 16);
            let bytes = '';
            for (let i = 0; i < k; i++) bytes += `GET /${i} HTTP/1.1\r\nHost: gw.test\r\n\r\n`;
            bytes += `GET /${k} HTTP/1.1\r\nHost: gw.test\r\n`;
            const where = `${k} pipelined and a head begun, ${completes ? 'completed after the release' : 'never completed'}`;
            const reached = new Promise<void>((resolve) => (waiter = resolve));
            const conn = new RawConn(g.port);
            conns.push(conn);
            await conn.write(bytes);
            await reached;
            // Another client's head, begun later than the held one, timed out: the check has passed over both.
            const probe = new RawConn(g.port);
            conns.push(probe);
            await probe.write('GET /probe HTTP/1.1\r\nHost: gw.test\r\n');
            assert.match(await probe.closed(10_000), /^HTTP\/1\.1 408 /, `${where}: the probe's head timed out`);
            assert.equal(conn.ended, false, `${where}: the held connection was closed: ${JSON.stringify(conn.text.slice(-300))}`);
            assert.doesNotMatch(conn.text, / 408 /, `${where}: the held connection was answered 408`);
            releasing = true;
            for (const res of held.splice(0)) {
              res.writeHead(200, { 'x-n': (res as ServerResponse & { n?: string }).n!, 'content-length': '2' });
              res.end('ok');
            }
            if (completes) {
              // Every answer before it out first: a refusal of the held head would go out now.
              await conn.waitFor((t) => [...t.matchAll(/x-n: \d+/gi)].length >= k || / 408 /.test(t), 20_000, `${where}: the answers before the held head`);
              assert.doesNotMatch(conn.text, / 408 /, `${where}: the held head was answered 408`);
              await conn.write('Connection: close\r\n\r\n');
            }
            const text = await conn.closed(20_000);
            const order = [...text.matchAll(/x-n: (\d+)/gi)].map((m) => Number(m[1]));
            const n = completes ? k + 1 : k;
            assert.deepEqual(order, Array.from({ length: n }, (_, i) => i), `${where}: every answer, in order`);
            // The head never completed is still timed once reading goes on.
            if (!completes) assert.match(text, /HTTP\/1\.1 408 [^]*$/, `${where}: a 408 after the answers`);
            else assert.doesNotMatch(text, / 408 /, `${where}: no 408`);
          }
        });
      } finally {
        for (const c of conns) c.destroy();
        await g.close();
        origin.closeAllConnections();
        await new Promise<void>((r) => origin.close(() => r()));
      }
    });
  }
});

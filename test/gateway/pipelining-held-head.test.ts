import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway } from '../helpers/gateway.js';
import { heldHeadRound, startHoldingOrigin } from '../helpers/held-head.js';
import type { RawConn } from '../helpers/raw-conn.js';
import { seededRun } from '../helpers/seeded.js';

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
      const origin = await startHoldingOrigin();
      const g = await startTestGateway({
        listeners: [{ address: '127.0.0.1', port: 0, front, requestHeaderTimeout: '2s' }],
        clusters: { up: { endpoints: [`http://127.0.0.1:${origin.port}`], outlierDetection: { enabled: false } } },
        routes: [{ cluster: 'up', retry: { tries: 1 } }],
      });
      const conns: RawConn[] = [];
      try {
        await seededRun(`held head, front ${front}`, async (rand) => {
          for (const completes of [true, false]) {
            const { text, where } = await heldHeadRound({ port: g.port, origin, head: (path) => `GET /${path} HTTP/1.1\r\nHost: gw.test\r\n`, completes, rand, conns });
            // The head never completed is still timed once reading goes on.
            if (!completes) assert.match(text, /HTTP\/1\.1 408 [^]*$/, `${where}: a 408 after the answers`);
          }
        });
      } finally {
        for (const c of conns) c.destroy();
        await g.close();
        await origin.close();
      }
    });
  }
});

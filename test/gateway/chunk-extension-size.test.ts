import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { replayRaw } from '../helpers/raw-http.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * Adversarial probe (session attack): a chunk extension of 16 KiB or more, sent in one write,
 * was relayed by the net front (its 4096-byte bound held only for a line still arriving),
 * where node:http refuses it (HPE_CHUNK_EXTENSIONS_OVERFLOW, 400). Both fronts now refuse it
 * 400 and relay nothing; one well under the bound is relayed by both. The same bound whatever
 * the cut: test/http/chunk-line-split.test.ts.
 */
for (const front of ['node', 'net'] as const) {
  describe(`a chunk extension past 16 KiB (${front} front)`, () => {
    let upstream: Server;
    let received = 0;
    let gw: TestGateway;

    before(async () => {
      upstream = createServer((req, res) => {
        req.resume();
        req.on('end', () => {
          received++;
          res.end('upstream');
        });
        req.on('error', () => {});
      });
      await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
      gw = await startTestGateway({
        listeners: [{ address: '127.0.0.1', port: 0, front }],
        clusters: { up: { endpoints: [`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`], outlierDetection: { enabled: false } } },
        routes: [{ cluster: 'up', retry: { tries: 1 } }],
      } as never);
    });

    after(async () => {
      await gw?.close();
      upstream?.closeAllConnections();
      await new Promise<void>((r) => upstream.close(() => r()));
    });

    const post = (n: number): string => `POST /upload HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n1;a=${'v'.repeat(n)}\r\nx\r\n0\r\n\r\n`;

    test('seeded family: past the bound → 400 and closed, nothing relayed; well under it → relayed', { timeout: 60_000 }, async () => {
      await seededRun(`${front} front, chunk extension size`, async (rand) => {
        const before = received;
        for (let k = 0; k < 4; k++) {
          const n = between(rand, 16400, 48000);
          const r = await replayRaw(post(n), { port: gw.port, deadlineMs: 5000 });
          assert.equal(r.responses[0]?.status, 400, `an extension of ${n} bytes`);
          assert.equal(r.end, 'closed');
        }
        assert.equal(received - before, 0, 'a request with an oversized chunk extension reached the upstream');
        const n = between(rand, 1, 2000);
        const ok = await replayRaw(post(n), { port: gw.port, deadlineMs: 5000 });
        assert.equal(ok.responses[0]?.status, 200, `an extension of ${n} bytes`);
        assert.equal(received - before, 1);
      });
    });
  });
}

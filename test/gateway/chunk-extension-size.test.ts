import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeCountingUpstream } from '../helpers/gateway.js';
import { replayRaw } from '../helpers/raw-http.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * Adversarial probe (session attack): a chunk extension of 16 KiB or more, sent in one write,
 * was relayed by the net front (its 4096-byte bound held only for a line still arriving),
 * where node:http refuses it (HPE_CHUNK_EXTENSIONS_OVERFLOW, 400). Both fronts now refuse it
 * 400 and relay nothing; one well under the bound is relayed by both. The same bound whatever
 * the cut: test/http/chunk-line-split.test.ts.
 */
describeCountingUpstream((front) => `a chunk extension past 16 KiB (${front} front)`, (front, rig) => {
  const post = (n: number): string => `POST /upload HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n1;a=${'v'.repeat(n)}\r\nx\r\n0\r\n\r\n`;

  test('seeded family: past the bound → 400 and closed, nothing relayed; well under it → relayed', { timeout: 60_000 }, async () => {
    await seededRun(`${front} front, chunk extension size`, async (rand) => {
      const before = rig.received();
      for (let k = 0; k < 4; k++) {
        const n = between(rand, 16400, 48000);
        const r = await replayRaw(post(n), { port: rig.gateway.port, deadlineMs: 5000 });
        assert.equal(r.responses[0]?.status, 400, `an extension of ${n} bytes`);
        assert.equal(r.end, 'closed');
      }
      assert.equal(rig.received() - before, 0, 'a request with an oversized chunk extension reached the upstream');
      const n = between(rand, 1, 2000);
      const ok = await replayRaw(post(n), { port: rig.gateway.port, deadlineMs: 5000 });
      assert.equal(ok.responses[0]?.status, 200, `an extension of ${n} bytes`);
      assert.equal(rig.received() - before, 1);
    });
  });
});

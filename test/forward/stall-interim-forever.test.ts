import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { onFirstHead, startRawServer, tick, type RawServer } from '../helpers/scripted-upstream.js';
import { seededRandom } from '../helpers/seeded.js';
import { LATE_MS, assertFiredOnTime } from '../helpers/time-bounds.js';
import { accessLines, basic, linesUntil, rawExchange, startTestProxy, type TestProxy } from './helpers.js';

/**
 * Stall hunt (session 14), the forward half of test/gateway/stall-interim-forever.test.ts: a
 * destination that answers an absolute-form request with interim answers (102 Processing,
 * 103 Early Hints) more often than the proxy's `responseHeaders` timeout, and never a final
 * status. Each 1xx restarted the wait for the final head, so the request, its client and its
 * destination connection were held for ever. The wait must end at the timeout (504).
 */

let dest: RawServer;
let periodMs = 100;
/**
 * How long the destination keeps sending interim answers: longer than the timeout plus
 * LATE_MS, so that a proxy whose wait each 1xx restarted (the defect) is still waiting when
 * the test's bound on the 504 (timeout + LATE_MS, room for a loaded machine) has passed.
 * (It was 100 answers, as little as 6 s: with a looser bound a defective proxy, answering at
 * the end of the 1xx plus the timeout, could have passed.)
 */
const INTERIM_FOR_MS = 3 * LATE_MS;

before(async () => {
  dest = await startRawServer((s) =>
    onFirstHead(s, (head) => {
      const kind = /^GET \/(\w+)/.exec(head)?.[1] ?? '102';
      // Bounded: interim answers for INTERIM_FOR_MS at most, then silence.
      const most = Math.ceil(INTERIM_FOR_MS / periodMs);
      tick(s, periodMs, (n) => (n >= most ? undefined : kind === '103' || (kind === 'mix' && (n + 1) % 2 === 0) ? 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n' : 'HTTP/1.1 102 Processing\r\n\r\n'));
    }),
  );
});

after(() => dest.close());

describe('a destination that sends interim answers for ever', () => {
  const rand = seededRandom();
  const timeoutMs = 300 + rand.int(500);
  let p: TestProxy;
  before(async () => {
    p = await startTestProxy({ revealDetails: true, timeouts: { responseHeaders: `${timeoutMs}ms` } });
  });
  after(() => p.close());

  for (const kind of ['102', '103', 'mix']) {
    it(`is answered 504 at the response-head timeout, not held (${kind}; seeded timeout and period)`, { timeout: 60_000 }, async () => {
      periodMs = Math.max(20, Math.floor(timeoutMs / (2 + rand.int(4))));
      const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}): ${kind} every ${periodMs} ms, responseHeaders ${timeoutMs} ms`;
      const port = dest.port;
      // Before the connection: the proxy's wait for the head cannot start earlier.
      const t0 = performance.now();
      // The guard is a failure bound, past the 504's own bound (timeout + LATE_MS) and short of
      // the end of the interim answers, so a held request fails here rather than later.
      const guardMs = timeoutMs + 2 * LATE_MS;
      const answer = await rawExchange(p.port, `GET http://127.0.0.1:${port}/${kind} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\n\r\n`, guardMs);
      const took = performance.now() - t0;
      assert.match(answer, /^HTTP\/1\.1 504 /, `${ctx}: got ${JSON.stringify(answer.slice(0, 80))} after ${Math.round(took)} ms`);
      assertFiredOnTime(took, timeoutMs, ctx);
      assert.ok(await linesUntil(p.lines, () => accessLines(p.lines).some((l) => l.status === 504 && String(l.destination ?? '').endsWith(`:${port}`))), `${ctx}: recorded`);
    });
  }
});

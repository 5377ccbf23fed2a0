import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { onFirstHead, startRawServer, tick, type RawServer } from '../helpers/scripted-upstream.js';
import { seededRandom } from '../helpers/seeded.js';
import { accessLines, basic, rawExchange, startTestProxy, waitFor, type TestProxy } from './helpers.js';

/**
 * Stall hunt (session 14), the forward half of test/gateway/stall-interim-forever.test.ts: a
 * destination that answers an absolute-form request with interim answers (102 Processing,
 * 103 Early Hints) more often than the proxy's `responseHeaders` timeout, and never a final
 * status. Each 1xx restarted the wait for the final head, so the request, its client and its
 * destination connection were held for ever. The wait must end at the timeout (504).
 */

let dest: RawServer;
let periodMs = 100;

before(async () => {
  dest = await startRawServer((s) =>
    onFirstHead(s, (head) => {
      const kind = /^GET \/(\w+)/.exec(head)?.[1] ?? '102';
      // Bounded: at most 100 interim answers (10 s at the longest period), then silence.
      tick(s, periodMs, (n) => (n >= 100 ? undefined : kind === '103' || (kind === 'mix' && (n + 1) % 2 === 0) ? 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n' : 'HTTP/1.1 102 Processing\r\n\r\n'));
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
    it(`is answered 504 at the response-head timeout, not held (${kind}; seeded timeout and period)`, { timeout: 20_000 }, async () => {
      periodMs = Math.max(20, Math.floor(timeoutMs / (2 + rand.int(4))));
      const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}): ${kind} every ${periodMs} ms, responseHeaders ${timeoutMs} ms`;
      const port = dest.port;
      const t0 = performance.now();
      const answer = await Promise.race([
        rawExchange(p.port, `GET http://127.0.0.1:${port}/${kind} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\n\r\n`),
        new Promise<string>((r) => setTimeout(() => r('(no answer)'), timeoutMs + 4000)),
      ]);
      const took = performance.now() - t0;
      assert.match(answer, /^HTTP\/1\.1 504 /, `${ctx}: got ${JSON.stringify(answer.slice(0, 80))} after ${Math.round(took)} ms`);
      assert.ok(took >= timeoutMs - 20, `${ctx}: answered after ${Math.round(took)} ms, before the timeout`);
      assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.status === 504 && String(l.destination ?? '').endsWith(`:${port}`))), `${ctx}: recorded`);
    });
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Failure } from '../../src/failure/index.js';
import { FREE_RACE_RETRIES, decideOnFailure, decideOnStatus, tryTimeoutMs, type RetryKind, type RetryRules, type TryFacts } from '../../src/gateway/retry-policy.js';
import type { Endpoint } from '../../src/upstream/endpoint.js';
import { RetryBudget } from '../../src/upstream/retry-budget.js';
import { between, seededRun } from '../helpers/seeded.js';

/** The retry policy as a function: what happened in → a decision out (Pingora's fail_to_connect / error_while_proxy). */

const ep = { nextHop: 'a:1' } as unknown as Endpoint;
const ALL: RetryKind[] = ['connect-failure', 'reset', 'invalid-response', 'timeout', '502', '503', '504'];
const rules: RetryRules = { retry: { tries: 3, backoffBaseMs: 0, backoffMaxMs: 0, idempotencyKey: false }, retryOn: new Set(ALL), deadlineMs: undefined, retryAfterMaxMs: 2000 };
const facts = (o: Partial<TryFacts> = {}): TryFacts => ({ endpoint: ep, connected: true, reused: false, responseStarted: false, idempotent: true, replayable: true, tries: 1, elapsedMs: 0, clientGone: false, alternative: true, ...o });
const budget = (): RetryBudget => new RetryBudget({ ratio: 0.2, minPerSecond: 3, windowMs: 10_000 });
const refused = new Failure({ type: 'connection_refused', phase: 'connect' });
const reset = new Failure({ type: 'connection_terminated', phase: 'send' });

test('a failure to connect retries any method elsewhere; the request never left', () => {
  assert.deepEqual(decideOnFailure(refused, facts({ connected: false, idempotent: false }), rules, budget(), Date.now()), { action: 'retry', fresh: false, delayMs: 0, avoid: ep });
});

test('a try given up in a busy connection\'s queue (the endpoint at maxConnections) was never sent: retried elsewhere like a connect failure', () => {
  const queued = new Failure({ type: 'connection_limit_reached', phase: 'admit', retrySafe: true });
  assert.deepEqual(decideOnFailure(queued, facts({ connected: false, idempotent: false }), rules, budget(), Date.now()), { action: 'retry', fresh: false, delayMs: 0, avoid: ep });
  assert.deepEqual(decideOnFailure(queued, facts({ connected: false, tries: 3 }), rules, budget(), Date.now()), { action: 'fail' });
});

test('a reused connection closed before any response byte (keep-alive race): retried on a fresh connection, idempotent only', () => {
  assert.deepEqual(decideOnFailure(reset, facts({ reused: true }), rules, budget(), Date.now()), { action: 'retry', fresh: true, delayMs: 0, avoid: ep, free: true });
  assert.deepEqual(decideOnFailure(reset, facts({ reused: true, idempotent: false }), rules, budget(), Date.now()), { action: 'fail' });
});

test('lost keep-alive races give their try back at most FREE_RACE_RETRIES times per request; later ones count as tries (maxConnections, review F7)', () => {
  const one = { ...rules, retry: { ...rules.retry, tries: 1 } };
  for (let given = 0; given < FREE_RACE_RETRIES; given++) {
    assert.deepEqual(decideOnFailure(reset, facts({ reused: true, racesGivenBack: given }), one, budget(), Date.now()), { action: 'retry', fresh: true, delayMs: 0, avoid: ep, free: true });
  }
  // Used up: the race counts as a try (still fresh, at once, not paid from the budget).
  assert.deepEqual(decideOnFailure(reset, facts({ reused: true, racesGivenBack: FREE_RACE_RETRIES }), one, budget(), Date.now()), { action: 'fail' });
  assert.deepEqual(decideOnFailure(reset, facts({ reused: true, racesGivenBack: FREE_RACE_RETRIES }), rules, budget(), Date.now()), { action: 'retry', fresh: true, delayMs: 0, avoid: ep });
  const empty = new RetryBudget({ ratio: 0, minPerSecond: 0, windowMs: 10_000 });
  assert.deepEqual(decideOnFailure(reset, facts({ reused: true, racesGivenBack: FREE_RACE_RETRIES }), rules, empty, Date.now()), { action: 'retry', fresh: true, delayMs: 0, avoid: ep });
});

test('a reset before any byte of the request was written (neverRead) retries a non-idempotent request; any other close does not', () => {
  const now = Date.now();
  // Reset before any of the request was written: any method, after the back-off, elsewhere.
  assert.deepEqual(decideOnFailure(reset, facts({ idempotent: false, neverRead: true }), rules, budget(), now), { action: 'retry', fresh: false, delayMs: 0, avoid: ep });
  assert.deepEqual(decideOnFailure(reset, facts({ idempotent: false, neverRead: false }), rules, budget(), now), { action: 'fail' });
  // Still bounded by what it must be able to resend and by the route's retry classes.
  assert.deepEqual(decideOnFailure(reset, facts({ idempotent: false, neverRead: true, replayable: false }), rules, budget(), now), { action: 'fail' });
  const noReset = { ...rules, retryOn: new Set<RetryKind>(['connect-failure']) };
  assert.deepEqual(decideOnFailure(reset, facts({ idempotent: false, neverRead: true }), noReset, budget(), now), { action: 'fail' });
});

test('an HTTP/2 stream the upstream did not process (notProcessed: REFUSED_STREAM, above a GOAWAY) retries a non-idempotent request whose body was kept, within the budget', () => {
  const now = Date.now();
  const h2 = new Failure({ type: 'connection_terminated', phase: 'headers', streamOnly: true, retrySafe: true });
  assert.deepEqual(decideOnFailure(h2, facts({ idempotent: false, notProcessed: true }), rules, budget(), now), { action: 'retry', fresh: false, delayMs: 0, avoid: ep });
  assert.deepEqual(decideOnFailure(h2, facts({ idempotent: false, notProcessed: false }), rules, budget(), now), { action: 'fail' });
  // A body not kept whole is never sent again.
  assert.deepEqual(decideOnFailure(h2, facts({ idempotent: false, notProcessed: true, replayable: false }), rules, budget(), now), { action: 'fail' });
  // Nor past the tries, nor without `reset` in retry.on, nor with the budget spent.
  assert.deepEqual(decideOnFailure(h2, facts({ idempotent: false, notProcessed: true, tries: 3 }), rules, budget(), now), { action: 'fail' });
  assert.deepEqual(decideOnFailure(h2, facts({ idempotent: false, notProcessed: true }), { ...rules, retryOn: new Set<RetryKind>(['connect-failure']) }, budget(), now), { action: 'fail' });
  const spent = new RetryBudget({ ratio: 0, minPerSecond: 0, windowMs: 10_000 });
  assert.deepEqual(decideOnFailure(h2, facts({ idempotent: false, notProcessed: true }), rules, spent, now), { action: 'fail', budget: true });
});

test('the keep-alive race is retried at once, without back-off; other resets back off', () => {
  const slow: RetryRules = { ...rules, retry: { ...rules.retry, backoffBaseMs: 1000, backoffMaxMs: 1000 } };
  let backedOff = 0;
  for (let i = 0; i < 20; i++) {
    const race = decideOnFailure(reset, facts({ reused: true }), slow, budget(), Date.now());
    assert.equal(race.action === 'retry' && race.delayMs, 0);
    const other = decideOnFailure(reset, facts({ reused: false }), slow, budget(), Date.now());
    if (other.action === 'retry' && other.delayMs > 0) backedOff++;
  }
  assert.ok(backedOff > 0, 'a reset on a fresh connection waits the (random) back-off');
});

test('never once a response reached the client, nor with a body that cannot be sent again, nor past the tries, the deadline or a gone client', () => {
  const now = Date.now();
  assert.deepEqual(decideOnFailure(reset, facts({ responseStarted: true }), rules, budget(), now), { action: 'fail' });
  assert.deepEqual(decideOnFailure(reset, facts({ replayable: false }), rules, budget(), now), { action: 'fail' });
  assert.deepEqual(decideOnFailure(reset, facts({ tries: 3 }), rules, budget(), now), { action: 'fail' });
  assert.deepEqual(decideOnFailure(reset, facts({ clientGone: true }), rules, budget(), now), { action: 'fail' });
  assert.deepEqual(decideOnFailure(reset, facts({ elapsedMs: 50 }), { ...rules, deadlineMs: 50 }, budget(), now), { action: 'fail' });
  assert.deepEqual(decideOnFailure(reset, facts(), { ...rules, retryOn: new Set(['timeout']) }, budget(), now), { action: 'fail' });
  assert.deepEqual(decideOnFailure(new Failure({ type: 'proxy_internal_error', phase: 'internal' }), facts(), rules, budget(), now), { action: 'fail' });
});

test('an exhausted retry budget says so (the exchange notes it in the attempt)', () => {
  const b = new RetryBudget({ ratio: 0, minPerSecond: 0, windowMs: 10_000 });
  assert.deepEqual(decideOnFailure(refused, facts({ connected: false }), rules, b, Date.now()), { action: 'fail', budget: true });
});

test('the keep-alive race needs no retry budget: the pool lost its own bet, the upstream is not failing', () => {
  // An upstream that closes every connection after one request makes every reused try race;
  // a budget for upstream failures must not turn those into 502s (found by the race family).
  const b = new RetryBudget({ ratio: 0, minPerSecond: 0, windowMs: 10_000 });
  assert.deepEqual(decideOnFailure(reset, facts({ reused: true }), rules, b, Date.now()), { action: 'retry', fresh: true, delayMs: 0, avoid: ep, free: true });
  // Still only for idempotent requests; but it uses up no try (nginx gives a cached connection's
  // try back too): at the last try, and with tries: 1, it is sent again on a fresh connection.
  assert.deepEqual(decideOnFailure(reset, facts({ reused: true, idempotent: false }), rules, b, Date.now()), { action: 'fail' });
  assert.deepEqual(decideOnFailure(reset, facts({ reused: true, tries: 3 }), rules, b, Date.now()), { action: 'retry', fresh: true, delayMs: 0, avoid: ep, free: true });
  assert.deepEqual(decideOnFailure(reset, facts({ reused: true }), { ...rules, retry: { ...rules.retry, tries: 1 } }, b, Date.now()), { action: 'retry', fresh: true, delayMs: 0, avoid: ep, free: true });
  // A client that left is not retried for.
  assert.deepEqual(decideOnFailure(reset, facts({ reused: true, clientGone: true }), rules, b, Date.now()), { action: 'fail' });
  // Any other reset still needs the budget.
  assert.deepEqual(decideOnFailure(reset, facts({ reused: false }), rules, b, Date.now()), { action: 'fail', budget: true });
});

test('an upstream 502/503/504 retries after its Retry-After (within the maximum); other statuses never', () => {
  const now = Date.now();
  const d = decideOnStatus(503, [Buffer.from('Retry-After'), Buffer.from('1')], facts(), rules, budget(), now);
  assert.deepEqual(d, { action: 'retry', fresh: false, delayMs: 1000, avoid: ep });
  assert.deepEqual(decideOnStatus(503, [Buffer.from('retry-after'), Buffer.from('5')], facts(), rules, budget(), now), { action: 'fail' });
  assert.deepEqual(decideOnStatus(500, [], facts(), rules, budget(), now), { action: 'fail' });
  assert.deepEqual(decideOnStatus(502, [], facts({ idempotent: false }), rules, budget(), now), { action: 'fail' });
});

const timedOut = new Failure({ type: 'http_response_timeout', phase: 'headers' });

test('a response timeout retries an idempotent request on another endpoint, never on the same one, never a POST', () => {
  const now = Date.now();
  assert.deepEqual(decideOnFailure(timedOut, facts(), rules, budget(), now), { action: 'retry', fresh: false, delayMs: 0, avoid: ep });
  assert.deepEqual(decideOnFailure(timedOut, facts({ alternative: false }), rules, budget(), now), { action: 'fail' });
  assert.deepEqual(decideOnFailure(timedOut, facts({ idempotent: false }), rules, budget(), now), { action: 'fail' });
});

test('the try timeout: half the response timeout for a try that may be retried on a timeout, the rest of it otherwise', () => {
  const t = { overallMs: 2000, idempotent: true, tries: 1, alternative: true, spentMs: 0, elapsedMs: 0 };
  assert.equal(tryTimeoutMs(rules, t), 1000);
  assert.equal(tryTimeoutMs(rules, { ...t, idempotent: false }), 2000, 'a POST waits the whole response timeout');
  assert.equal(tryTimeoutMs(rules, { ...t, alternative: false }), 2000, 'no other endpoint: nothing to gain by cutting the wait');
  assert.equal(tryTimeoutMs(rules, { ...t, tries: 3 }), 2000, 'the last try');
  assert.equal(tryTimeoutMs(rules, { ...t, tries: 2, alternative: false, spentMs: 1000 }), 1000, 'a retry gets what is left: the response timeout bounds the total');
  assert.equal(tryTimeoutMs(rules, { ...t, spentMs: 1500 }), 500);
  assert.equal(tryTimeoutMs({ ...rules, retryOn: new Set(['reset']) }, t), 2000, 'timeouts not retried: the whole wait');
  assert.equal(tryTimeoutMs({ ...rules, deadlineMs: 1200 }, { ...t, tries: 2, spentMs: 1000, elapsedMs: 1050 }), 150, 'a retry never waits past the route deadline');
  assert.equal(tryTimeoutMs({ ...rules, perTryTimeoutMs: 300 }, { ...t, idempotent: false }), 300, 'a configured perTryTimeout applies to every try');
});

test('a retry whose wait would end at or past the route deadline is not made; a back-off is drawn within what is left of it (resilience review F5)', async () => {
  const now = Date.now();
  const ra = (s: string) => [Buffer.from('Retry-After'), Buffer.from(s)];
  const withDeadline = { ...rules, deadlineMs: 1500 };
  assert.deepEqual(decideOnStatus(503, ra('1'), facts({ elapsedMs: 499 }), withDeadline, budget(), now), { action: 'retry', fresh: false, delayMs: 1000, avoid: ep });
  assert.deepEqual(decideOnStatus(503, ra('1'), facts({ elapsedMs: 500 }), withDeadline, budget(), now), { action: 'fail' }, 'the answer is passed on');
  assert.deepEqual(decideOnStatus(503, ra('1'), facts(), { ...rules, deadlineMs: 195 }, budget(), now), { action: 'fail' });
  const slow: RetryRules = { ...rules, retry: { ...rules.retry, backoffBaseMs: 10_000, backoffMaxMs: 10_000 } };
  await seededRun('back-off within the deadline', (rand) => {
    for (let i = 0; i < 200; i++) {
      const deadlineMs = between(rand, 1, 2000);
      const elapsedMs = between(rand, 0, deadlineMs - 1);
      const what = `deadline ${deadlineMs}, elapsed ${elapsedMs}`;
      for (const d of [decideOnFailure(reset, facts({ elapsedMs }), { ...slow, deadlineMs }, budget(), now), decideOnStatus(502, [], facts({ elapsedMs }), { ...slow, deadlineMs }, budget(), now)]) {
        assert.equal(d.action, 'retry', what);
        assert.ok(d.action === 'retry' && elapsedMs + d.delayMs < deadlineMs, `${what}: delay ${JSON.stringify(d)}`);
      }
    }
  });
});

test('a retry\'s perTryTimeout is cut to what is left of the route deadline; the first try is not a retry (resilience review F8)', () => {
  const t = { overallMs: 5000, idempotent: true, tries: 2, alternative: true, spentMs: 271, elapsedMs: 348 };
  const r = { ...rules, perTryTimeoutMs: 271, deadlineMs: 415 };
  assert.equal(tryTimeoutMs(r, t), 67);
  assert.equal(tryTimeoutMs(r, { ...t, elapsedMs: 100 }), 271, 'room enough: the configured value');
  assert.equal(tryTimeoutMs(r, { ...t, tries: 1, elapsedMs: 0 }), 271);
  assert.equal(tryTimeoutMs({ ...r, perTryTimeoutMs: 0 }, t), 67, 'perTryTimeout 0 (no limit of its own): the deadline still bounds a retry');
  assert.equal(tryTimeoutMs({ ...r, perTryTimeoutMs: 0 }, { ...t, tries: 1 }), 0);
});

import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lookup } from 'node:dns';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Endpoint } from '../../src/upstream/endpoint.js';
import { OUTLIER_CHANNEL, OutlierDetector, type OutlierEvent } from '../../src/upstream/outlier.js';

const T0 = 1_700_000_000_000;

function endpoints(n: number): Endpoint[] {
  return Array.from(
    { length: n },
    (_, i) =>
      new Endpoint({ url: `http://10.1.0.${i + 1}:80`, weight: 1, connectTimeoutMs: 1000, headersTimeoutMs: 1000, bodyTimeoutMs: 1000, keepAliveMs: 1000, maxResponseHeaderSize: 16384, tls: { verify: true }, lookup }),
  );
}

/** The outlier events published during each test of the calling suite. */
function captureOutlierEvents(): { events: OutlierEvent[]; listener: (m: unknown) => void } {
  const events: OutlierEvent[] = [];
  const listener = (m: unknown): void => void events.push(m as OutlierEvent);
  beforeEach(() => {
    events.length = 0;
    subscribe(OUTLIER_CHANNEL, listener);
  });
  afterEach(() => unsubscribe(OUTLIER_CHANNEL, listener));
  return { events, listener };
}

const OPTS = { consecutiveGatewayFailures: 3, consecutive5xx: 5, baseEjectionMs: 30_000, maxEjectionMs: 300_000, maxEjectedPercent: 50, cluster: 'api' };

describe('outlier detection', () => {
  const { events, listener } = captureOutlierEvents();

  test('an ejected endpoint that active health checks see recover returns at once, counts cleared', () => {
    const eps = endpoints(4);
    const d = new OutlierDetector(eps, OPTS);
    const e = eps[0]!;
    for (let i = 0; i < 3; i++) d.record(e, 'gateway-failure', T0);
    assert.ok(!e.available(T0 + 1), 'ejected');
    d.recovered(e, T0 + 500);
    assert.ok(e.available(T0 + 500), 'back when the check passed, not after 30 s');
    assert.deepEqual(events.map((x) => [x.event, x.reason]), [['ejected', '3 consecutive gateway failures'], ['returned', 'active health check passed']]);
    // Its run of failures starts again from zero: two more do not eject it.
    d.record(e, 'gateway-failure', T0 + 600);
    d.record(e, 'gateway-failure', T0 + 600);
    assert.ok(e.available(T0 + 600));
    // An endpoint that was not ejected is left alone.
    d.recovered(eps[1]!, T0 + 700);
    assert.equal(events.length, 2);
  });

  test('consecutive gateway failures eject; a success in between resets the count', () => {
    const eps = endpoints(4);
    const d = new OutlierDetector(eps, OPTS);
    const e = eps[0]!;
    d.record(e, 'gateway-failure', T0);
    d.record(e, 'gateway-failure', T0);
    d.record(e, 'success', T0);
    d.record(e, 'gateway-failure', T0);
    d.record(e, 'gateway-failure', T0);
    assert.equal(e.ejectedUntil, 0, 'not yet');
    d.record(e, 'gateway-failure', T0 + 5);
    assert.equal(e.ejectedUntil, T0 + 5 + 30_000);
    assert.equal(e.ejections, 1);
    assert.equal(e.available(T0 + 10), false);
    assert.deepEqual(events, [{ endpoint: '10.1.0.1:80', cluster: 'api', event: 'ejected', untilMs: T0 + 30_005, reason: '3 consecutive gateway failures' }]);
  });

  test('response timeouts eject after consecutiveTimeouts (default 3), count as gateway failures, and any other outcome breaks their run', () => {
    const eps = endpoints(4);
    const d = new OutlierDetector(eps, { ...OPTS, consecutiveGatewayFailures: 5 });
    const e = eps[2]!;
    d.record(e, 'timeout', T0);
    d.record(e, 'timeout', T0);
    d.record(e, 'gateway-failure', T0);
    d.record(e, 'timeout', T0);
    assert.equal(e.ejectedUntil, 0, 'a refused connect between the timeouts breaks their run');
    d.record(e, 'timeout', T0 + 1);
    assert.equal(e.ejectedUntil, T0 + 1 + 30_000, 'but all five count as gateway failures');
    assert.equal(events[0]?.reason, '5 consecutive gateway failures');
    const f = eps[3]!;
    d.record(f, 'timeout', T0 + 2);
    d.record(f, 'timeout', T0 + 2);
    assert.equal(f.ejectedUntil, 0, 'not yet');
    d.record(f, 'timeout', T0 + 2);
    assert.equal(f.ejectedUntil, T0 + 2 + 30_000);
    assert.equal(events[1]?.reason, '3 consecutive response timeouts');
  });

  test('upstream 5xx count toward consecutive5xx, with gateway failures, and break a run of gateway failures', () => {
    const eps = endpoints(4);
    const d = new OutlierDetector(eps, OPTS);
    const e = eps[1]!;
    for (const o of ['gateway-failure', 'gateway-failure', 'upstream-5xx', 'gateway-failure', 'gateway-failure'] as const) d.record(e, o, T0);
    assert.equal(e.ejectedUntil, T0 + 30_000);
    assert.equal(events[0]?.reason, '5 consecutive 5xx');
  });

  test('the back-off doubles with each ejection up to the cap, and decays after stable time', () => {
    const eps = endpoints(2);
    const d = new OutlierDetector(eps, { ...OPTS, baseEjectionMs: 1000, maxEjectionMs: 5000 });
    const e = eps[0]!;
    let now = T0;
    const lengths: number[] = [];
    for (let i = 0; i < 5; i++) {
      for (let k = 0; k < 3; k++) d.record(e, 'gateway-failure', now);
      lengths.push(e.ejectedUntil - now);
      now = e.ejectedUntil; // fails again the moment it is back
    }
    assert.deepEqual(lengths, [1000, 2000, 4000, 5000, 5000]);
    assert.equal(e.ejections, 5);
    // In service for 3 base intervals: three ejections forgiven.
    d.record(e, 'success', now + 3000);
    assert.equal(e.ejections, 2);
    for (let k = 0; k < 3; k++) d.record(e, 'gateway-failure', now + 3000);
    assert.equal(e.ejectedUntil - (now + 3000), 4000, 'back-off from the decayed count');
  });

  test('never ejects past maxEjectedPercent: 2 endpoints at 50% → one; 1 endpoint → none', () => {
    const two = endpoints(2);
    const d2 = new OutlierDetector(two, OPTS);
    for (const e of two) for (let k = 0; k < 3; k++) d2.record(e, 'gateway-failure', T0);
    assert.deepEqual(two.map((e) => e.ejectedUntil > T0), [true, false]);
    assert.ok(two[1]!.available(T0), 'the cluster keeps one endpoint');

    const one = endpoints(1);
    const d1 = new OutlierDetector(one, OPTS);
    for (let k = 0; k < 10; k++) d1.record(one[0]!, 'gateway-failure', T0);
    assert.equal(one[0]!.ejectedUntil, 0);

    const five = endpoints(5);
    const d5 = new OutlierDetector(five, OPTS);
    for (const e of five) for (let k = 0; k < 3; k++) d5.record(e, 'gateway-failure', T0);
    assert.equal(five.filter((e) => !e.available(T0)).length, 2);
    // Once the first ejection runs out, the still-failing endpoint may take its place.
    for (let k = 0; k < 3; k++) d5.record(five[2]!, 'gateway-failure', T0 + 30_000);
    assert.equal(five[2]!.ejectedUntil, T0 + 60_000);
  });

  test('return: readyAt is set to the return time and "returned" published, lazily on record() or on tick()', () => {
    const eps = endpoints(4);
    const d = new OutlierDetector(eps, OPTS);
    const e = eps[0]!;
    for (let k = 0; k < 3; k++) d.record(e, 'gateway-failure', T0);
    d.record(eps[1]!, 'success', T0 + 29_999);
    assert.equal(e.readyAt, 0, 'not back yet');
    d.record(eps[1]!, 'success', T0 + 31_000); // any endpoint's outcome notices the due return
    assert.equal(e.readyAt, T0 + 30_000);
    assert.deepEqual(events.at(-1), { endpoint: '10.1.0.1:80', cluster: 'api', event: 'returned', untilMs: T0 + 30_000, reason: 'ejection time passed' });

    const f = eps[2]!;
    for (let k = 0; k < 3; k++) d.record(f, 'gateway-failure', T0);
    d.tick(T0 + 40_000);
    assert.equal(f.readyAt, T0 + 30_000);
    assert.equal(events.filter((x) => x.event === 'returned').length, 2);
  });

  test('outcomes finishing while the endpoint is ejected are ignored', () => {
    const eps = endpoints(4);
    const d = new OutlierDetector(eps, OPTS);
    const e = eps[0]!;
    for (let k = 0; k < 3; k++) d.record(e, 'gateway-failure', T0);
    for (let k = 0; k < 10; k++) d.record(e, 'gateway-failure', T0 + 100);
    assert.equal(e.ejectedUntil, T0 + 30_000);
    assert.equal(e.ejections, 1);
  });

  test('no events are built without subscribers', () => {
    unsubscribe(OUTLIER_CHANNEL, listener);
    const eps = endpoints(2);
    const d = new OutlierDetector(eps, OPTS);
    for (let k = 0; k < 3; k++) d.record(eps[0]!, 'gateway-failure', T0);
    assert.equal(events.length, 0);
    subscribe(OUTLIER_CHANNEL, listener);
  });
});

describe('outlier detection never causes the outage (issue 15)', () => {
  const { events } = captureOutlierEvents();

  test('a live endpoint is not ejected for 5xx while its only peer is down by health checks', () => {
    const eps = endpoints(2);
    const d = new OutlierDetector(eps, OPTS);
    eps[1]!.health = 'unhealthy';
    for (let i = 0; i < 20; i++) d.record(eps[0]!, 'upstream-5xx', T0 + i);
    assert.ok(eps[0]!.available(T0 + 100), 'the last live endpoint stays in');
  });

  test('seeded family: whatever is down, drained or failing, ejections never take the last available endpoint nor exceed maxEjectedPercent of the unavailable', () => {
    const seed0 = Number(process.env.GATEWISE_SEED ?? Date.now() % 1_000_000);
    let seed = seed0;
    const rnd = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0), seed / 2 ** 32);
    for (let run = 0; run < 300; run++) {
      const n = 1 + Math.floor(rnd() * 8);
      const eps = endpoints(n);
      const pct = [10, 25, 50, 75, 100][Math.floor(rnd() * 5)]!;
      const d = new OutlierDetector(eps, { ...OPTS, maxEjectedPercent: pct });
      for (const e of eps) {
        const r = rnd();
        if (r < 0.2) e.health = 'unhealthy';
        else if (r < 0.3) e.draining = true;
      }
      const before = eps.filter((e) => e.available(T0)).length;
      const preUnavailable = n - before;
      for (let i = 0; i < 200; i++) {
        const e = eps[Math.floor(rnd() * n)]!;
        d.record(e, rnd() < 0.5 ? 'gateway-failure' : 'upstream-5xx', T0 + i);
        const avail = eps.filter((x) => x.available(T0 + i)).length;
        const ctx = `seed ${seed0} (GATEWISE_SEED=${seed0}), run ${run}: n=${n} pct=${pct} before=${before}`;
        if (before > 0 && pct < 100) assert.ok(avail >= 1, `${ctx}: no endpoint left`);
        // Ejections add to what is unavailable only up to maxEjectedPercent (what was out before stays out).
        const unavailable = n - avail;
        if (unavailable > preUnavailable) assert.ok(unavailable * 100 <= pct * n, `${ctx}: ${unavailable} unavailable with ${preUnavailable} out before`);
      }
    }
  });

  test('a skipped ejection is announced once, with why', () => {
    const eps = endpoints(1);
    const d = new OutlierDetector(eps, OPTS);
    for (let i = 0; i < 12; i++) d.record(eps[0]!, 'upstream-5xx', T0 + i);
    const spared = events.filter((e) => e.event === 'spared');
    assert.equal(spared.length, 1);
    assert.match(spared[0]!.reason, /consecutive 5xx; kept in: no other endpoint is available/);
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BodyTimer } from '../../src/timing/body-timer.js';
import { deadlines } from '../../src/timing/deadlines.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * The client-body timer against a reference model, over seeded families of gap timeouts,
 * minimum rates and uploads (bytes, pauses, the reader holding the body back). The timer is
 * driven on a synthetic clock far in the future (its entries never come due on the real
 * list): each check is run at the time the timer asked for, so the test sees exactly when
 * it would fire.
 */

type Ev = { at: number; kind: 'bytes'; n: number } | { at: number; kind: 'hold' } | { at: number; kind: 'release' };

/** When the reference rule first says "too slow" (gap or rate), given the events; Infinity: never within `end`. */
function referenceStall(start: number, gapMs: number, rate: number, evs: readonly Ev[], end: number): { at: number; why: 'gap' | 'rate' | 'either' } | undefined {
  let startEff = start;
  let lastAt = start;
  let bytes = 0;
  let held = false;
  let heldAt = 0;
  for (let i = 0; i <= evs.length; i++) {
    const next = i < evs.length ? evs[i]!.at : end;
    if (!held) {
      const gapAt = lastAt + gapMs;
      const rateAt = rate > 0 ? startEff + gapMs + (bytes * 1000) / rate : Infinity;
      const at = Math.min(gapAt, rateAt);
      // Due within a nanosecond counts as due (as in the timer: float sums must not miss by an ulp).
      if (at - 1e-6 < next) return { at, why: Math.abs(gapAt - rateAt) < 1e-3 ? 'either' : gapAt < rateAt ? 'gap' : 'rate' };
    }
    if (i === evs.length) return undefined;
    const e = evs[i]!;
    if (e.kind === 'bytes') {
      bytes += e.n;
      lastAt = e.at;
    } else if (e.kind === 'hold' && !held) {
      held = true;
      heldAt = e.at;
    } else if (e.kind === 'release' && held) {
      held = false;
      startEff += e.at - heldAt;
      lastAt = e.at;
    }
  }
  return undefined;
}

/** Drive the timer through the events; returns when it fired and why. */
function drive(gapMs: number, rate: number, base: number, evs: readonly Ev[], end: number): { at: number; detail: string } | undefined {
  let fired: { at: number; detail: string } | undefined;
  let clock = base;
  const timer = new BodyTimer({ bodyStalled: (detail) => (fired = { at: clock, detail }) }, { gapMs, minRate: rate });
  timer.start(base);
  let checks = 0;
  const runChecksUntil = (t: number): void => {
    while (fired === undefined && !Number.isNaN(timer.deadlineAt) && timer.deadlineAt <= t) {
      if (++checks > 10_000) throw new Error(`the timer keeps re-arming without firing: at +${clock - base} ms, next +${timer.deadlineAt - base}, held ${timer.held}, bytes ${timer.bytes}, last +${timer.lastAt - base}`);
      clock = timer.deadlineAt;
      deadlines.remove(timer); // what a sweep does before calling it
      timer.deadlineReached(clock);
    }
  };
  try {
    for (const e of evs) {
      runChecksUntil(e.at);
      if (fired !== undefined) return fired;
      clock = e.at;
      if (e.kind === 'bytes') timer.progress(e.n, e.at);
      else if (e.kind === 'hold') timer.hold(e.at);
      else timer.release(e.at);
    }
    runChecksUntil(end);
    return fired;
  } finally {
    timer.stop();
  }
}

describe('BodyTimer (client body gap and minimum rate)', () => {
  test('fires exactly when the rule says, for seeded gaps, rates and uploads', () =>
    seededRun('BodyTimer vs reference', (rand) => {
      // Far in the future: entries the timer adds to the process list never come due.
      const base = performance.now() + 1e7;
      for (let run = 0; run < 400; run++) {
        const gapMs = between(rand, 50, 2000);
        const rate = rand() < 0.25 ? 0 : between(rand, 1, 5000);
        const evs: Ev[] = [];
        let t = base;
        let held = false;
        const count = between(rand, 0, 40);
        for (let i = 0; i < count; i++) {
          // Gaps around the timeout, sometimes beyond it; fractional so no two instants tie.
          t += rand() * gapMs * 1.3 + 0.001;
          const r = rand();
          if (r < 0.15) {
            evs.push({ at: t, kind: held ? 'release' : 'hold' });
            held = !held;
          } else {
            evs.push({ at: t, kind: 'bytes', n: between(rand, 1, rand() < 0.5 ? 10 : 100_000) });
          }
        }
        if (held) evs.push({ at: (t += rand() * gapMs + 0.001), kind: 'release' });
        const end = t + 2 * gapMs + 1e7 / Math.max(rate, 1);
        const want = referenceStall(base, gapMs, rate, evs, end);
        const got = drive(gapMs, rate, base, evs, end);
        const ctx = `run ${run}: gap ${gapMs} ms, rate ${rate} B/s, ${evs.length} events`;
        assert.ok(want !== undefined, `${ctx}: the reference always stalls once the upload stops`);
        assert.ok(got !== undefined, `${ctx}: the timer never fired (reference: ${want.why} at +${(want.at - base).toFixed(3)} ms)`);
        assert.ok(Math.abs(got.at - want.at) < 1e-3, `${ctx}: fired at +${(got.at - base).toFixed(3)} ms, reference +${(want.at - base).toFixed(3)} ms (${want.why})`);
        assert.match(got.detail, want.why === 'gap' ? /no byte for/ : want.why === 'rate' ? /below the minimum/ : /no byte for|below the minimum/, `${ctx}: ${got.detail} (reference: ${want.why})`);
        assert.match(got.detail, /the client stopped sending the request body/, ctx);
      }
    }));

  test('a trickle that beats the gap timer is cut by the minimum rate (1 byte every 2 s against a 30 s gap, 500 B/s)', () => {
    const base = performance.now() + 2e7;
    const evs: Ev[] = [];
    for (let i = 1; i <= 200; i++) evs.push({ at: base + i * 2000, kind: 'bytes', n: 1 });
    const got = drive(30_000, 500, base, evs, base + 500_000);
    assert.ok(got !== undefined, 'cut');
    assert.ok(got.at - base < 31_000, `cut after ${got.at - base} ms`);
    assert.match(got.detail, /below the minimum of 500 bytes\/s/);
  });

  test('without a minimum rate the same trickle is only cut by a gap', () => {
    const base = performance.now() + 3e7;
    const evs: Ev[] = [];
    for (let i = 1; i <= 200; i++) evs.push({ at: base + i * 2000, kind: 'bytes', n: 1 });
    const got = drive(30_000, 0, base, evs, base + 500_000);
    assert.ok(got !== undefined);
    assert.ok(got.at - base >= 400_000, `cut only after the trickle stops (${got.at - base} ms)`);
  });
});

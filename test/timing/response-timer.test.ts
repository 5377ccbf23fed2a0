import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { deadlines } from '../../src/timing/deadlines.js';
import { ResponseTimer, type ResponseTimerOwner } from '../../src/timing/response-timer.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * The response body's two waits against a reference, over seeded families: the upstream's
 * silence (idle, never counted while the client holds it back) and the client's (the send
 * timeout: paused, its buffer full, for `sendMs` since the last time it filled). Driven on a
 * synthetic clock far ahead of the real one, each check a nanosecond after it is due (a
 * real sweep is never early by more than the list allows, and never exactly on time).
 */

type Ev = { at: number; kind: 'chunk' | 'pause' | 'resume' };

interface Outcome {
  at: number;
  what: 'idle' | 'send';
}

function reference(start: number, idleMs: number, sendMs: number, evs: readonly Ev[], end: number): Outcome | undefined {
  let progressAt = start;
  let paused = false;
  let pausedAt = 0;
  for (let i = 0; i <= evs.length; i++) {
    const next = i < evs.length ? evs[i]!.at : end;
    const at = paused ? (sendMs > 0 ? pausedAt + sendMs : Infinity) : idleMs > 0 ? progressAt + idleMs : Infinity;
    if (at < next) return { at, what: paused ? 'send' : 'idle' };
    if (i === evs.length) return undefined;
    const e = evs[i]!;
    if (e.kind === 'chunk') progressAt = e.at;
    else if (e.kind === 'pause') {
      paused = true;
      pausedAt = e.at;
    } else {
      paused = false;
      progressAt = e.at;
    }
  }
  return undefined;
}

function drive(idleMs: number, sendMs: number, base: number, evs: readonly Ev[], end: number): Outcome | undefined {
  let out: Outcome | undefined;
  let clock = base;
  const owner: ResponseTimerOwner = {
    uploading: () => undefined,
    uploadedBytes: () => 0,
    timedOut: () => (out ??= { at: clock, what: 'idle' }),
    notReading: () => (out ??= { at: clock, what: 'send' }),
  };
  const timer = new ResponseTimer(owner, sendMs);
  timer.body(idleMs, base);
  let checks = 0;
  const runChecksUntil = (t: number): void => {
    while (out === undefined && timer.armed && timer.deadlineAt <= t) {
      if (++checks > 10_000) throw new Error('the timer keeps re-arming without firing');
      clock = timer.deadlineAt + 1e-6;
      deadlines.remove(timer);
      timer.deadlineReached(clock);
    }
  };
  try {
    for (const e of evs) {
      runChecksUntil(e.at);
      if (out !== undefined) return out;
      clock = e.at;
      if (e.kind === 'chunk') timer.progressAt = e.at;
      else if (e.kind === 'pause') timer.pause(e.at);
      else timer.resume(e.at);
    }
    runChecksUntil(end);
    return out;
  } finally {
    timer.stop();
  }
}

describe('ResponseTimer: body idle time and the send timeout', () => {
  test('the send timeout fires when the client held a full buffer that long, the idle timeout only when the upstream was silent', () =>
    seededRun('ResponseTimer vs reference', (rand) => {
      const base = performance.now() + 1e7;
      for (let run = 0; run < 400; run++) {
        const idleMs = rand() < 0.2 ? 0 : between(rand, 50, 2000);
        const sendMs = rand() < 0.2 ? 0 : between(rand, 50, 2000);
        const scale = Math.max(idleMs, sendMs, 50);
        const evs: Ev[] = [];
        let t = base;
        let paused = false;
        const count = between(rand, 0, 40);
        for (let i = 0; i < count; i++) {
          t += rand() * scale * 1.3 + 0.001;
          if (paused) {
            // While paused no chunk arrives (undici waits for the resume).
            evs.push({ at: t, kind: 'resume' });
            paused = false;
          } else if (rand() < 0.3) {
            evs.push({ at: t, kind: 'pause' });
            paused = true;
          } else {
            evs.push({ at: t, kind: 'chunk' });
          }
        }
        const end = t + 3 * scale;
        const want = reference(base, idleMs, sendMs, evs, end);
        const got = drive(idleMs, sendMs, base, evs, end);
        const ctx = `run ${run}: idle ${idleMs} ms, send ${sendMs} ms, ${evs.length} events`;
        if (want === undefined) {
          assert.equal(got, undefined, `${ctx}: fired (${got?.what} at +${((got?.at ?? 0) - base).toFixed(3)}) though the reference never does`);
          continue;
        }
        assert.ok(got !== undefined, `${ctx}: never fired (reference: ${want.what} at +${(want.at - base).toFixed(3)} ms)`);
        assert.equal(got.what, want.what, ctx);
        assert.ok(Math.abs(got.at - want.at) < 1e-3, `${ctx}: ${got.what} at +${(got.at - base).toFixed(3)} ms, reference +${(want.at - base).toFixed(3)} ms`);
      }
    }));
});

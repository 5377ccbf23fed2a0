import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { seededRandom, seededRun, withSeed } from './seeded.js';

/**
 * A seeded test that fails names its seed whatever it threw. An AbortSignal.timeout's reason is
 * a DOMException, whose `message` is a getter only: setting it threw a TypeError in strict
 * mode, so the run failed with "Cannot set property message" and the real failure was lost.
 * Every kind of thrown value must come out with the seed in the message and the original
 * reachable (itself, or as the `cause`).
 */
async function timeoutReason(): Promise<unknown> {
  const signal = AbortSignal.timeout(1);
  // AbortSignal.timeout's timer does not hold the event loop open: this one does, until the abort.
  const hold = setTimeout(() => {}, 10_000);
  try {
    await once(signal, 'abort');
  } finally {
    clearTimeout(hold);
  }
  return signal.reason;
}

const THROWN: ReadonlyArray<readonly [string, () => Promise<unknown>]> = [
  ['an Error', async () => new Error('plain failure')],
  ['an assertion error', async () => { try { assert.equal(1, 2); } catch (e) { return e; } throw new Error('unreachable'); }],
  ['a DOMException (AbortSignal.timeout)', timeoutReason],
  ['a frozen Error', async () => Object.freeze(new Error('frozen failure'))],
  ['a string', async () => 'a thrown string'],
  ['undefined', async () => undefined],
];

function originalReachable(err: unknown, thrown: unknown): boolean {
  return err === thrown || (err instanceof Error && err.cause === thrown);
}

for (const [what, make] of THROWN) {
  test(`seededRun names its seed when the test throws ${what}`, async () => {
    const thrown = await make();
    const seed = 12345;
    await assert.rejects(
      seededRun('probe', () => {
        throw thrown;
      }, seed),
      (err: unknown) => {
        assert.ok(err instanceof Error, `an Error comes out, not ${String(err)}`);
        assert.match(err.message, /failed with seed 12345/);
        assert.ok(originalReachable(err, thrown), 'the original failure is kept');
        return true;
      },
    );
  });

  test(`withSeed names its seed when the test throws ${what}`, async () => {
    const thrown = await make();
    const rand = seededRandom(678);
    await assert.rejects(
      withSeed(rand, async () => {
        throw thrown;
      }),
      (err: unknown) => {
        assert.ok(err instanceof Error, `an Error comes out, not ${String(err)}`);
        assert.match(err.message, /seed 678/);
        assert.ok(originalReachable(err, thrown), 'the original failure is kept');
        return true;
      },
    );
  });
}

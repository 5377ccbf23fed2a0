import assert from 'node:assert/strict';

/**
 * Time in tests on a shared, loaded machine (CI runs the suite with concurrency on 2 cores,
 * load average ~20): a test synchronises on events, and a wall-clock number appears only
 * as a failure guard or as a bound on a timer the test measures.
 *
 * - `GUARD_MS`: how long a test waits for an event that must come before it calls it a
 *   failure. Never a synchronisation: when things work the event ends the wait long before.
 * - `LATE_MS`: how late a timer's effect may be seen before it is "absurdly late". A loaded
 *   machine delays every callback (the gateway's timer and the test's reading of its
 *   effect) by up to seconds; a bound tighter than this fails by scheduling, not by defect.
 *   A test that must tell the timer apart from a longer one (a keep-alive that is not the
 *   handshake time) makes the longer one exceed the timer by more than `LATE_MS`.
 * - `EARLY_MS`: how early a timer may seem to fire measured from a point the test knows is
 *   before the timer was armed: Node's and the deadline list's clocks are whole or cached
 *   milliseconds (the list fires what is due within 1 ms, timing/deadlines.ts).
 */
export const GUARD_MS = 30_000;
export const LATE_MS = 10_000;
export const EARLY_MS = 5;

/**
 * Asserts that a timer of `timeoutMs` fired, not early and not absurdly late: `tookMs` must
 * be measured from a moment before the timer could have been armed (so scheduling delays
 * only make it longer) to the moment its effect was seen (so they only make it longer too).
 */
export function assertFiredOnTime(tookMs: number, timeoutMs: number, what: string, lateMs = LATE_MS): void {
  const took = Math.round(tookMs);
  assert.ok(tookMs >= timeoutMs - EARLY_MS, `${what}: fired after ${took} ms, before its ${timeoutMs} ms`);
  assert.ok(tookMs <= timeoutMs + lateMs, `${what}: fired after ${took} ms, more than ${lateMs} ms past its ${timeoutMs} ms`);
}

import assert from 'node:assert/strict';
import { inspect } from 'node:util';

/**
 * A seeded pseudo-random source for property tests (mulberry32). The seed comes from
 * GATEWISE_SEED when set, else from the clock; tests print it when a case fails, so the
 * failing family can be replayed with GATEWISE_SEED=<seed>.
 */
export interface Rand {
  readonly seed: number;
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  pick<T>(xs: readonly T[]): T;
}

/** mulberry32: the one small seeded generator of the tests, benchmarks and fuzzers (the same values every run of a seed). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function seededRandom(seed = Number(process.env.GATEWISE_SEED ?? Date.now() % 2 ** 31)): Rand {
  const next = prng(seed);
  return {
    seed,
    next,
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)]!,
  };
}

/** Run `fn`; on failure, rethrow with the seed in the message. */
export async function withSeed<T>(rand: Rand, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw prefixed(err, `[seed ${rand.seed}: replay with GATEWISE_SEED=${rand.seed}] `);
  }
}

/**
 * `err` with `prefix` before its message, for any thrown value: the error itself when its
 * message can be set, else a new Error saying the prefix and what was thrown, with the thrown
 * value as its `cause` (a DOMException's message, such as AbortSignal.timeout's reason, has a
 * getter only, and setting it threw a TypeError that hid both the seed and the failure; a
 * frozen error, a thrown string or undefined have no message to set either).
 */
function prefixed(err: unknown, prefix: string): Error {
  if (err instanceof Error) {
    const message = `${prefix}${err.message}`;
    try {
      err.message = message;
    } catch {
      // read-only: wrapped below
    }
    if (err.message === message) return err;
  }
  return new Error(`${prefix}${err instanceof Error ? String(err) : inspect(err)}`, { cause: err });
}

/** The seed of this run: GATEWISE_SEED from the environment, else a fresh one (printed by `withSeed` on failure). */
export function runSeed(): number {
  const env = process.env.GATEWISE_SEED;
  return env !== undefined && env !== '' ? Number(env) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
}

/** Run `fn` with a seeded generator; a failure names the seed, to replay it with SEED=<seed>. */
export async function seededRun<T>(what: string, fn: (rand: () => number, seed: number) => T | Promise<T>, seed = runSeed()): Promise<T> {
  try {
    return await fn(prng(seed), seed);
  } catch (err) {
    const msg = `${what}: failed with seed ${seed} (replay: GATEWISE_SEED=${seed} node --test <file>)`;
    console.error(msg);
    throw prefixed(err, `${msg}\n`);
  }
}

/** An integer in [lo, hi]. */
export function between(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

/** `items` put in a seeded order, in place (Fisher–Yates), and returned. */
export function shuffle<T>(rand: () => number, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = between(rand, 0, i);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/**
 * Runs every case of a family one after another (each closes what it opened), then fails
 * with every case that failed, a line each, so one case's failure does not hide the others'.
 */
export async function everyCase<T>(cases: readonly T[], run: (c: T) => Promise<unknown>, noun = 'cases'): Promise<void> {
  const failed: string[] = [];
  for (const c of cases) {
    try {
      await run(c);
    } catch (err) {
      failed.push((err as Error).message.split('\n')[0]!);
    }
  }
  assert.deepEqual(failed, [], `${failed.length} of ${cases.length} ${noun} failed:\n${failed.join('\n')}`);
}

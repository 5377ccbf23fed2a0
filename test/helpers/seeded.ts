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

export function seededRandom(seed = Number(process.env.GATEWISE_SEED ?? Date.now() % 2 ** 31)): Rand {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
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
    const e = err as Error;
    e.message = `[seed ${rand.seed}: replay with GATEWISE_SEED=${rand.seed}] ${e.message}`;
    throw e;
  }
}

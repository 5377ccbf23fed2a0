/** Small seeded PRNG (mulberry32): the same values every run of a seed. */
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

/** The seed of this run: GATEWISE_SEED from the environment, else a fresh one (printed by `withSeed` on failure). */
export function runSeed(): number {
  const env = process.env.GATEWISE_SEED;
  return env !== undefined && env !== '' ? Number(env) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
}

/** Run `fn` with a seeded generator; a failure names the seed, to replay it with SEED=<seed>. */
export async function withSeed<T>(what: string, fn: (rand: () => number, seed: number) => T | Promise<T>, seed = runSeed()): Promise<T> {
  try {
    return await fn(prng(seed), seed);
  } catch (err) {
    const msg = `${what}: failed with seed ${seed} (replay: GATEWISE_SEED=${seed} node --test <file>)`;
    console.error(msg);
    if (err instanceof Error) err.message = `${msg}\n${err.message}`;
    throw err;
  }
}

/** An integer in [lo, hi]. */
export function between(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

import { prng } from '../helpers/seeded.js';
export { prng };
/**
 * Seeded, mutation-based fuzzing: a small PRNG, byte-level mutators (flips, interesting
 * bytes, insertions, deletions, truncations, duplications, splices from other inputs) and
 * a case runner bounded in count and time.
 *
 * Knobs (environment):
 *   FUZZ_SEED     base seed (default: a fixed one per target, so CI runs are repeatable;
 *                 `npm run fuzz` picks a random one and prints it)
 *   FUZZ_CASES    cases per target (default: the target's CI count)
 *   FUZZ_SECONDS  time budget per target (default 10 s cap in CI); when set without
 *                 FUZZ_CASES, cases run until the time is spent
 *   FUZZ_CASE     run only this case index (replay one failure)
 *
 * Each case's bytes depend only on (base seed, target, case index), so a failure prints
 * the command line that replays exactly that case.
 */


/** A random generator with the helpers mutators need. */
export class Rng {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = prng(seed);
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** FNV-1a over a string: stable per-target seed offsets. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** The seed of case `index` of `target` under base seed `base`. */
export function caseSeed(base: number, target: string, index: number): number {
  return (Math.imul(base ^ hashString(target), 0x9e3779b1) + Math.imul(index + 1, 0x85ebca6b)) >>> 0;
}

/** Bytes protocol parsers tend to care about. */
const INTERESTING_BYTES = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x09, 0x0a, 0x0d, 0x20, 0x22, 0x2c, 0x2f, 0x30, 0x3a, 0x3b, 0x3d, 0x40, 0x5b, 0x5d, 0x7f, 0x80, 0xfe, 0xff];

/** Chunks worth inserting into HTTP-ish or SOCKS-ish inputs. */
const INTERESTING_CHUNKS = [
  '\r\n',
  '\n',
  '\r',
  '\r\n\r\n',
  ' ',
  '\t',
  ':',
  '\x00',
  '\xff\xff',
  'Transfer-Encoding: chunked\r\n',
  'Content-Length: 0\r\n',
  'Content-Length: 5\r\n',
  'Content-Length: -1\r\n',
  'Content-Length: 99999999999999999999\r\n',
  'Host: a\r\n',
  'Connection: close\r\n',
  'Expect: 100-continue\r\n',
  'Upgrade: websocket\r\n',
  '0\r\n\r\n',
  'ffffffffffffffff\r\n',
  '%00',
  '[::1]',
  '127.0.0.1',
  'localhost',
  'HTTP/1.1',
  'HTTP/1.0',
  'HTTP/0.9',
  ' HTTP/1.1\r\n',
  'A'.repeat(300),
];

const INTERESTING_CHUNK_BUFFERS = INTERESTING_CHUNKS.map((s) => Buffer.from(s, 'latin1'));

/** Apply 1–`maxOps` random edits to `seed`; `others` feed splices. Never longer than `maxLen`. */
export function mutate(rng: Rng, seed: Buffer, others: readonly Buffer[] = [], maxOps = 4, maxLen = 8192): Buffer {
  let b = Buffer.from(seed);
  const ops = 1 + rng.int(maxOps);
  for (let k = 0; k < ops; k++) {
    const op = rng.int(11);
    const at = b.length ? rng.int(b.length) : 0;
    switch (op) {
      case 0: // bit flip
        if (b.length) b[at] = b[at]! ^ (1 << rng.int(8));
        break;
      case 1: // interesting byte
        if (b.length) b[at] = rng.pick(INTERESTING_BYTES);
        break;
      case 2: // random byte
        if (b.length) b[at] = rng.int(256);
        break;
      case 3: // insert interesting chunk
        b = Buffer.concat([b.subarray(0, at), rng.pick(INTERESTING_CHUNK_BUFFERS), b.subarray(at)]);
        break;
      case 4: // insert random bytes
        b = Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: 1 + rng.int(8) }, () => rng.int(256))), b.subarray(at)]);
        break;
      case 5: {
        // delete a range
        const n = 1 + rng.int(Math.min(16, Math.max(1, b.length - at)));
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + n)]);
        break;
      }
      case 6: // truncate
        b = b.subarray(0, at);
        break;
      case 7: {
        // duplicate a range in place
        const n = 1 + rng.int(Math.min(32, Math.max(1, b.length - at)));
        b = Buffer.concat([b.subarray(0, at + n), b.subarray(at, at + n), b.subarray(at + n)]);
        break;
      }
      case 8: {
        // splice: a piece of another input replaces the tail or is inserted
        if (!others.length) break;
        const o = rng.pick(others);
        const from = o.length ? rng.int(o.length) : 0;
        const piece = o.subarray(from, from + 1 + rng.int(64));
        b = rng.chance(0.5) ? Buffer.concat([b.subarray(0, at), piece]) : Buffer.concat([b.subarray(0, at), piece, b.subarray(at)]);
        break;
      }
      case 9: {
        // change a decimal or hex digit run to an extreme value
        const s = b.toString('latin1');
        const m = [...s.matchAll(/[0-9a-fA-F]+/g)];
        if (!m.length) break;
        const x = rng.pick(m);
        const repl = rng.pick(['0', '1', '00000000000001', '4294967296', '65535', '65536', '-1', 'ffffffff', '18446744073709551616', '']);
        b = Buffer.from(s.slice(0, x.index) + repl + s.slice(x.index! + x[0].length), 'latin1');
        break;
      }
      default: {
        // swap two bytes
        if (b.length < 2) break;
        const j = rng.int(b.length);
        const t = b[at]!;
        b[at] = b[j]!;
        b[j] = t;
      }
    }
    if (b.length > maxLen) b = b.subarray(0, maxLen);
  }
  return b;
}

export interface FuzzPlan {
  target: string;
  base: number;
  /** Case indices to run, lazily bounded by `deadline`. */
  cases: number;
  only: number | undefined;
  deadline: number;
  seconds: number;
}

/** Read the knobs for one target. `ciCases`: cases in a plain `npm test` run. */
export function fuzzPlan(target: string, ciCases: number, defaultSeed = 0x5eed): FuzzPlan {
  const env = process.env;
  const seconds = env.FUZZ_SECONDS ? Number(env.FUZZ_SECONDS) : 10;
  const base = env.FUZZ_SEED ? Number(env.FUZZ_SEED) >>> 0 : defaultSeed;
  const cases = env.FUZZ_CASES ? Number(env.FUZZ_CASES) : env.FUZZ_SECONDS ? 10_000_000 : ciCases;
  const only = env.FUZZ_CASE !== undefined && env.FUZZ_CASE !== '' ? Number(env.FUZZ_CASE) : undefined;
  return { target, base, cases, only, deadline: Date.now() + seconds * 1000, seconds };
}

/** How to replay one case of a plan. */
export function replayHint(plan: FuzzPlan, index: number): string {
  return `replay: FUZZ_SEED=${plan.base} FUZZ_CASE=${index} node --test dist/test/fuzz/<file>.test.js (target ${plan.target})`;
}

/** A failed invariant with the case that broke it. */
export class FuzzFailure extends Error {
  constructor(plan: FuzzPlan, index: number, input: Buffer, what: string) {
    super(`${plan.target} case ${index}: ${what}\n  input (latin1): ${JSON.stringify(input.toString('latin1').slice(0, 600))}\n  input (hex): ${input.subarray(0, 200).toString('hex')}\n  ${replayHint(plan, index)}`);
    this.name = 'FuzzFailure';
  }
}

/**
 * Run the plan's cases with at most `concurrency` in flight, stopping at the case count
 * or the time budget. `fn` gets the case index and its own Rng. Returns the number run.
 */
export async function runCases(plan: FuzzPlan, concurrency: number, fn: (index: number, rng: Rng) => Promise<void> | void): Promise<number> {
  if (plan.only !== undefined) {
    await fn(plan.only, new Rng(caseSeed(plan.base, plan.target, plan.only)));
    return 1;
  }
  let next = 0;
  let ran = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      if (next >= plan.cases || Date.now() > plan.deadline) return;
      const i = next++;
      await fn(i, new Rng(caseSeed(plan.base, plan.target, i)));
      ran++;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  return ran;
}

/** Print the plan once per target (visible in the test output; the seed is the replay key). */
export function announce(plan: FuzzPlan, ran: number): void {
  process.stdout.write(`fuzz ${plan.target}: ${ran} cases, FUZZ_SEED=${plan.base}\n`);
}

/** A unique loopback source address per case (needs 127.0.0.0/8 on lo, as on Linux). */
export function caseAddress(block: number, index: number): string {
  const n = index % 62_500;
  return `127.${block}.${Math.floor(n / 250)}.${(n % 250) + 1}`;
}

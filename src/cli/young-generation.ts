import v8 from 'node:v8';

/**
 * The young generation kept at its first size while the process starts, let grow after.
 *
 * Why: loading Gatewise's modules and validating its configuration allocates much that
 * survives, and V8 doubles the young generation (the semi-spaces) after each scavenge with a
 * high survival rate, so a process that has only started holds semi-spaces grown to 16 MiB,
 * ~10 MiB of them resident and empty. V8 gives them back only when its memory reducer runs,
 * ~8 s after start; until then an idle `gatewise proxy` measured 77–81 MiB, then 65 MiB.
 * Growing by a factor of 1 while starting keeps them at their first size (2 MiB with both
 * halves): 70–73 MiB right after start (docs/benchmarks.md §27). Startup pays a few more
 * scavenges (no difference in its time measured: 646–695 against 634–741 ms); traffic is
 * served with V8's own growth (factor 2), restored once the listeners are up, so under load
 * the semi-spaces grow as they always did (duels against the build before: 1.03 reverse,
 * 0.99 CONNECT).
 *
 * How: `--semi-space-growth-factor` is read by V8 at each growth, so it can be changed while
 * the process runs (`v8.setFlagsFromString`). `bin/gatewise.js` holds it before it loads the
 * rest of Gatewise; `startRuntime`, `gatewise forward`, `gatewise lab` and a
 * `--workers` primary (once it has forked) release it (a command that never serves exits with it held). Left alone when the operator chose a
 * semi-space flag of their own (command line or NODE_OPTIONS), and a no-op for a program that
 * embeds Gatewise without the bin.
 *
 * The shipped launchers (Dockerfile, deploy/gatewise.service) give Node such a flag,
 * `--min-semi-space-size=4`, so this hold is off there: a young generation that may shrink to
 * 1 MiB sent about half the processes measured into a regime where a large streamed body ran
 * V8's mark-compact dozens of times a second (twice the CPU per GiB); a 4 MiB floor, which only
 * a command-line flag can set, ended it for ~8 MiB of idle RSS (docs/benchmarks.md §37).
 */
const DEFAULT_GROWTH_FACTOR = 2; // V8's default for --semi-space-growth-factor

/** The Node flag the shipped launchers (Dockerfile, deploy/gatewise.service) start Gatewise with; their tests and `bench:stream` read it here. */
export const YOUNG_GENERATION_FLOOR_FLAG = '--min-semi-space-size=4';

let held = false;

/** Keep the young generation from growing (until `releaseYoungGeneration`). */
export function holdYoungGeneration(): void {
  const chosen = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((a) => /semi[-_]space/.test(a));
  if (held || chosen) return;
  held = true;
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}

/** Let the young generation grow again, as V8 grows it by default. */
export function releaseYoungGeneration(): void {
  if (!held) return;
  held = false;
  v8.setFlagsFromString(`--semi-space-growth-factor=${DEFAULT_GROWTH_FACTOR}`);
}

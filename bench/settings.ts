// Settings from the environment, CPU placement, and the command line for the report.
import path from 'node:path';
import { CONTENDERS, type Contender } from './contenders.js';
import { SCENARIOS, type Scenario } from './scenarios.js';
import { findBinary } from './system.js';
import { envList, envNumber } from './util.js';

export interface Settings {
  quick: boolean;
  rounds: number;
  durationS: number;
  warmupS: number;
  soakS: number;
  /** Duels after the interleaved rounds (duels.ts): repeats per pair (0 = none) and seconds each. */
  duelRepeats: number;
  duelSeconds: number;
  /** Both contenders of a duel started anew for each repeat (duels.ts `fresh`). */
  duelFresh: boolean;
  scenarios: Scenario[];
  contenders: Contender[];
  docsPath: string;
}

export function readSettings(root: string): Settings {
  const quick = process.env.BENCH_QUICK === '1';
  const wantScenarios = envList('BENCH_SCENARIOS');
  const wantContenders = envList('BENCH_CONTENDERS');
  const unknown = [
    ...(wantScenarios ?? []).filter((id) => id !== 'none' && !SCENARIOS.some((s) => s.id === id)),
    ...(wantContenders ?? []).filter((id) => !CONTENDERS.some((c) => c.id === id)),
  ];
  if (unknown.length) {
    throw new Error(`unknown scenario/contender id(s): ${unknown.join(', ')}\n  scenarios: ${SCENARIOS.map((s) => s.id).join(', ')}\n  contenders: ${CONTENDERS.map((c) => c.id).join(', ')}`);
  }
  return {
    quick,
    rounds: Math.max(1, Math.round(envNumber('BENCH_ROUNDS', quick ? 1 : 3))),
    durationS: Math.max(1, Math.round(envNumber('BENCH_DURATION', quick ? 2 : 5))),
    warmupS: envNumber('BENCH_WARMUP', 3),
    soakS: Math.round(envNumber('BENCH_SOAK', 0)),
    duelRepeats: Math.max(0, Math.round(envNumber('BENCH_DUEL_REPEATS', quick ? 0 : 3))),
    duelSeconds: Math.max(1, Math.round(envNumber('BENCH_DUEL_SECONDS', 6))),
    duelFresh: envNumber('BENCH_DUEL_FRESH', 1) !== 0,
    scenarios: SCENARIOS.filter((s) => (wantScenarios ? wantScenarios.includes(s.id) : !quick || s.quick)),
    contenders: CONTENDERS.filter((c) => !wantContenders || c.id === 'direct' || wantContenders.includes(c.id)),
    docsPath: process.env.BENCH_DOCS ?? path.join(root, quick ? 'bench/.work/benchmarks.md' : 'docs/benchmarks.md'),
  };
}

export interface Pinning {
  load: string | undefined;
  origin: string | undefined;
  proxy: string | undefined;
  text: string;
}

/**
 * Default (measured on the 2-core dev machine, see docs/benchmarks.md): the
 * load generator alone on CPU 0, origin and contender together on CPU 1.
 * Against "origin on CPU 0 with the load" this gave a round-to-round spread
 * (coefficient of variation) of 12% (median; 3–25%) instead of 25% (6–43%) for the proxies.
 */
export function pinning(cpus: number): Pinning {
  const raw = process.env.BENCH_PIN ?? 'auto';
  const none: Pinning = { load: undefined, origin: undefined, proxy: undefined, text: 'no pinning (BENCH_PIN=none): the kernel places every process' };
  if (raw === 'none') return none;
  if (!findBinary('taskset')) return { ...none, text: 'no pinning (taskset not found)' };
  if (raw === 'auto') {
    if (cpus < 2) return { ...none, text: 'no pinning (one CPU)' };
    return {
      load: '0',
      origin: '1',
      proxy: '1',
      text:
        'wrk / tunnel load generator alone on CPU 0; origin and contender share CPU 1 (`taskset`; BENCH_PIN=auto). ' +
        'The load generator never competes with what it measures. The origin costs every contender the same, and ' +
        '"direct" is the origin with CPU 1 to itself. Chosen because it gave the steadiest rounds: with the origin on ' +
        'CPU 0 beside wrk instead, the round-to-round coefficient of variation of the proxies was 25% (median; 6–43%), against 12% (3–25%) ' +
        'this way (3 rounds × 3 s, 4 repetitions each, same machine). BENCH_PIN=none lets the kernel place everything',
    };
  }
  const parts = Object.fromEntries(raw.split(',').map((kv) => kv.split(':').map((s) => s.trim()) as [string, string]));
  return { load: parts.load, origin: parts.origin, proxy: parts.proxy, text: `custom BENCH_PIN=${raw} (load ${parts.load ?? 'free'}, origin ${parts.origin ?? 'free'}, contender ${parts.proxy ?? 'free'})` };
}

export function commandLine(): string {
  const env = Object.entries(process.env)
    .filter(([k]) => k.startsWith('BENCH_'))
    .map(([k, v]) => `${k}=${v}`)
    .sort();
  return [...env, 'npm run bench'].join(' ');
}

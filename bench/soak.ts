// Soak: Gatewise alone under steady load, RSS sampled every second.
import { CONTENDERS, Skip, type Running, type StartContext } from './contenders.js';
import type { SoakResult } from './report.js';
import { treeRssKb } from './rss.js';
import { log, median } from './util.js';
import { runWrk } from './wrk.js';

export async function runSoak(ctx: StartContext, seconds: number, loadCpus: string | undefined, scriptDir: string): Promise<SoakResult> {
  const warmupS = Math.max(10, Math.round(seconds * 0.2));
  const base: SoakResult = { contender: 'Gatewise', seconds, warmupS, rate: 0, errors: 0, samplesKb: [], referenceKb: 0, minKb: 0, maxKb: 0, withinTenPercent: false };
  // Prefer the variant without access log; fall back to default logging.
  let running: Running | undefined;
  let label = '';
  const reasons: string[] = [];
  for (const id of ['gatewise-quiet', 'gatewise']) {
    const c = CONTENDERS.find((x) => x.id === id)!;
    try {
      running = await c.start(ctx);
      label = c.label;
      break;
    } catch (err) {
      if (!(err instanceof Skip)) throw err;
      reasons.push(`${c.label}: ${err.message}`);
    }
  }
  if (!running?.proc) return { ...base, note: `Soak not run: Gatewise did not start (${reasons.join('; ')}).` };
  const proc = running.proc;
  log(`soak: ${label} for ${seconds}s at 50 connections (warm-up ${warmupS}s)`);
  const samples: number[] = [];
  const timer = setInterval(() => samples.push(treeRssKb(proc.pid)), 1000);
  try {
    const w = await runWrk({ port: running.port, connections: 50, durationS: seconds, request: { method: 'GET', path: '/1k' }, cpus: loadCpus, scriptDir });
    const e = w.errors;
    const errors = e.status + e.connect + e.read + e.write + e.timeout;
    const after = samples.slice(warmupS);
    if (after.length < 5) return { ...base, contender: label, note: 'Soak too short to judge: give BENCH_SOAK at least 20 seconds.' };
    const referenceKb = median(after.slice(0, 5));
    const minKb = Math.min(...after);
    const maxKb = Math.max(...after);
    return {
      contender: label,
      seconds,
      warmupS,
      rate: (w.requests - e.status) / w.durationS,
      errors,
      samplesKb: samples,
      referenceKb,
      minKb,
      maxKb,
      withinTenPercent: minKb >= referenceKb * 0.9 && maxKb <= referenceKb * 1.1,
      ...(proc.exited ? { note: `Gatewise exited during the soak (code ${proc.exitCode}).` } : {}),
    };
  } finally {
    clearInterval(timer);
    await proc.stop();
  }
}

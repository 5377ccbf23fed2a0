// Soak: Gatewise alone under steady load, RSS sampled every second.
import { CONTENDERS, Skip, type Running, type StartContext } from './contenders.js';
import type { SoakResult } from './report.js';
import { treeRssKb } from './rss.js';
import { log, median } from './util.js';
import { runWrk } from './wrk.js';

export async function runSoak(ctx: StartContext, seconds: number, loadCpus: string | undefined, scriptDir: string): Promise<SoakResult> {
  const warmupS = Math.max(10, Math.round(seconds * 0.2));
  const none = { medianKb: 0, peakKb: 0 };
  const base: SoakResult = { contender: 'Gatewise', seconds, warmupS, rate: 0, errors: 0, samplesKb: [], windowS: 0, first: none, last: none, minKb: 0, maxKb: 0, withinTenPercent: false };
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
    const wr = await runWrk({ port: running.port, connections: 50, durationS: seconds, request: { method: 'GET', path: '/1k' }, cpus: loadCpus, scriptDir });
    const e = wr.errors;
    const errors = e.status + e.connect + e.read + e.write + e.timeout;
    // A garbage-collected heap saw-tooths, so single samples are not compared: the first
    // and the last fifth after warm-up are, by their medians and by their peaks.
    const after = samples.slice(warmupS);
    const w = Math.max(5, Math.floor(after.length / 5));
    if (after.length < 2 * w) return { ...base, contender: label, note: 'Soak too short to judge: give BENCH_SOAK at least 40 seconds.' };
    const first = after.slice(0, w);
    const last = after.slice(-w);
    const within = (a: number, b: number): boolean => Math.abs(a / b - 1) <= 0.1;
    return {
      contender: label,
      seconds,
      warmupS,
      rate: (wr.requests - e.status) / wr.durationS,
      errors,
      samplesKb: samples,
      windowS: w,
      first: { medianKb: median(first), peakKb: Math.max(...first) },
      last: { medianKb: median(last), peakKb: Math.max(...last) },
      minKb: Math.min(...after),
      maxKb: Math.max(...after),
      withinTenPercent: within(median(last), median(first)) && within(Math.max(...last), Math.max(...first)),
      ...(proc.exited ? { note: `Gatewise exited during the soak (code ${proc.exitCode}).` } : {}),
    };
  } finally {
    clearInterval(timer);
    await proc.stop();
  }
}

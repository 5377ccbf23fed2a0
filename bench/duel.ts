// Duels: two contenders on the same core at the same time, a load generator each on
// the other core, the same seconds. Both see the same machine, so a drift in its speed
// (measured here: ±35 % within minutes, more than interleaved rounds can cancel)
// cancels out of the ratio. The ratio of CPU time per request (or tunnel) is what is
// compared; the ratio of requests done is shown beside it.
//
// Usage: npm run bench:duel   (env: DUEL_SECONDS (6), DUEL_REPEATS (3), DUEL_DOCS (docs/benchmarks-duel.md))
// Needs nginx (origin), wrk; Squid for the CONNECT pair. Loopback only, every load bounded in time.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { verifyOrigin } from './checks.js';
import { CONTENDERS, Skip, startOrigin, type Running, type StartContext } from './contenders.js';
import { installCleanupHandlers, stopAll } from './procs.js';
import { treeCpuSeconds } from './rss.js';
import { describeMachine, ensureTools, gitCommit } from './system.js';
import { runTunnelLoadProcess } from './tunnel-load.js';
import { envNumber, log, median } from './util.js';
import { runWrk } from './wrk.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SECONDS = envNumber('DUEL_SECONDS', 6);
const REPEATS = envNumber('DUEL_REPEATS', 3);
const WARMUP_S = 3;
const LOAD_CPU = '0';
const SHARED_CPU = '1';

type Load = 'get-1k' | 'connect-per-tunnel';

interface Pair {
  load: Load;
  a: string;
  b: string;
  /** The issue's target for a/b (CPU per unit of b / CPU per unit of a), when there is one. */
  target?: number;
}

const PAIRS: Pair[] = [
  { load: 'get-1k', a: 'gatewise-quiet', b: 'http-proxy', target: 1.7 },
  { load: 'get-1k', a: 'gatewise-quiet', b: 'fastify', target: 1.5 },
  { load: 'get-1k', a: 'gatewise-quiet', b: 'undici-stream' },
  { load: 'connect-per-tunnel', a: 'gatewise-fwd-quiet', b: 'squid', target: 1 },
  { load: 'connect-per-tunnel', a: 'gatewise-fwd-quiet', b: 'connect-floor' },
];

interface Side {
  units: number;
  cpuS: number;
}

async function loadOnce(kind: Load, port: number, seconds: number, ctx: StartContext, scriptDir: string): Promise<number> {
  if (kind === 'get-1k') {
    const r = await runWrk({ port, connections: 50, durationS: seconds, request: { method: 'GET', path: '/1k' }, cpus: LOAD_CPU, scriptDir });
    return r.requests - r.errors.status;
  }
  const r = await runTunnelLoadProcess({ proxyPort: port, protocol: 'connect', mode: 'per-tunnel', targetPort: ctx.originPort, path: '/1k', concurrency: 50, durationS: seconds }, LOAD_CPU);
  return r.ok;
}

/** Both loads at once; CPU time of each contender's process tree over the same window. */
async function duel(kind: Load, a: Running, b: Running, seconds: number, ctx: StartContext, scriptDir: string): Promise<[Side, Side]> {
  const cpu = (r: Running): number => (r.proc ? treeCpuSeconds(r.proc.pid) : 0);
  const a0 = cpu(a);
  const b0 = cpu(b);
  // A script directory per side: both wrk runs would otherwise rewrite the same Lua file while the other reads it.
  const [ua, ub] = await Promise.all([loadOnce(kind, a.port, seconds, ctx, path.join(scriptDir, 'a')), loadOnce(kind, b.port, seconds, ctx, path.join(scriptDir, 'b'))]);
  return [
    { units: ua, cpuS: cpu(a) - a0 },
    { units: ub, cpuS: cpu(b) - b0 },
  ];
}

interface PairResult {
  pair: Pair;
  /** Per repeat: (CPU per unit of b) / (CPU per unit of a), and units a / units b. */
  cpuRatios: number[];
  unitRatios: number[];
  cpuPerUnitUs: { a: number[]; b: number[] };
  skipped?: string;
}

function fmt(x: number, digits = 2): string {
  return x.toFixed(digits);
}

function markdown(results: PairResult[], commit: string | undefined): string {
  const m = describeMachine();
  const lines = [
    '# Duels',
    '',
    `Produced by \`npm run bench:duel\` (DUEL_SECONDS=${SECONDS}, DUEL_REPEATS=${REPEATS}) on ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}${commit ? ` at commit ${commit.slice(0, 7)}` : ''}.`,
    '',
    `**Machine:** ${m.cpus} cores, ${m.cpuModel}, Node ${process.version}.`,
    '',
    'Two contenders run on CPU 1 at the same time, with the origin; each has its own load generator on CPU 0 (wrk, or the tunnel load generator), for the same seconds after a',
    `${WARMUP_S} s warm-up together. Both see the same machine, so a drift in its speed cancels out, and the interleaved rounds of \`docs/benchmarks.md\` cannot do that: there the same command ran at 6,200 and at 3,800–4,400 req/s a few minutes apart. "CPU ratio" is the other contender's CPU time per request (or tunnel) divided by Gatewise's: how many times more work the other needs for the same traffic. "done ratio" is Gatewise's requests over the other's in the same seconds (equal to the CPU ratio when both are CPU-bound and share the core evenly).`,
    '',
    '| pair | load | CPU µs per unit (Gatewise / other), medians | CPU ratio, each repeat | CPU ratio (median) | done ratio (median) | target | result |',
    '| --- | --- | --- | --- | ---: | ---: | ---: | --- |',
  ];
  for (const r of results) {
    const label = `${r.pair.a} vs ${r.pair.b}`;
    if (r.skipped) {
      lines.push(`| ${label} | ${r.pair.load} | — | — | — | — | ${r.pair.target ? `≥ ${r.pair.target}×` : '—'} | not run: ${r.skipped} |`);
      continue;
    }
    const cpu = median(r.cpuRatios);
    const done = median(r.unitRatios);
    const t = r.pair.target;
    const result = t === undefined ? '—' : cpu >= t ? `met, +${Math.round((cpu / t - 1) * 100)} %` : `**missed by ${Math.round((1 - cpu / t) * 100)} %**`;
    lines.push(
      `| ${label} | ${r.pair.load} | ${fmt(median(r.cpuPerUnitUs.a), 0)} / ${fmt(median(r.cpuPerUnitUs.b), 0)} | ${r.cpuRatios.map((x) => fmt(x)).join(', ')} | ${fmt(cpu)}× | ${fmt(done)}× | ${t === undefined ? '—' : `≥ ${t}×`} | ${result} |`,
    );
  }
  lines.push('', 'Gatewise runs without access log here (`gatewise-quiet`, `gatewise-fwd-quiet`), like the others. The contenders are the ones of `npm run bench` (see its method section for their configurations).', '');
  return lines.join('\n');
}

async function main(): Promise<number> {
  installCleanupHandlers();
  const tools = ensureTools();
  const nginx = tools.get('nginx')?.path;
  if (!nginx) throw new Error('nginx is needed for the origin and is not available; install it (apt-get install nginx) and rerun');
  if (!tools.get('wrk')?.path) throw new Error('wrk is needed and is not available; install it (apt-get install wrk) and rerun');
  if (os.cpus().length < 2) throw new Error('duels need 2 CPUs: one for the contenders, one for the load generators');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewise-duel-'));
  fs.chmodSync(dir, 0o755); // the origin's nginx worker reads its files from here
  const scriptDir = path.join(dir, 'lua');
  fs.mkdirSync(path.join(scriptDir, 'a'), { recursive: true });
  fs.mkdirSync(path.join(scriptDir, 'b'), { recursive: true });
  const results: PairResult[] = [];
  try {
    const origin = await startOrigin(dir, nginx, SHARED_CPU);
    await verifyOrigin(origin.port);
    const ctx: StartContext = { dir, root: ROOT, originPort: origin.port, origin: origin.proc, tools, cpus: SHARED_CPU };
    const running = new Map<string, Running | string>();
    const get = async (id: string): Promise<Running | string> => {
      const have = running.get(id);
      if (have !== undefined) return have;
      const c = CONTENDERS.find((x) => x.id === id);
      let r: Running | string;
      try {
        if (!c) throw new Skip(`no contender ${id}`);
        r = await c.start(ctx);
      } catch (err) {
        if (!(err instanceof Skip)) throw err;
        r = err.message;
      }
      running.set(id, r);
      return r;
    };
    for (const pair of PAIRS) {
      const a = await get(pair.a);
      const b = await get(pair.b);
      const res: PairResult = { pair, cpuRatios: [], unitRatios: [], cpuPerUnitUs: { a: [], b: [] } };
      results.push(res);
      if (typeof a === 'string' || typeof b === 'string') {
        res.skipped = typeof a === 'string' ? a : (b as string);
        log(`${pair.a} vs ${pair.b}: not run — ${res.skipped}`);
        continue;
      }
      await duel(pair.load, a, b, WARMUP_S, ctx, scriptDir);
      for (let i = 0; i < REPEATS; i++) {
        // Alternate which side is started first.
        const [sa, sb] = i % 2 === 0 ? await duel(pair.load, a, b, SECONDS, ctx, scriptDir) : await duel(pair.load, b, a, SECONDS, ctx, scriptDir).then(([x, y]) => [y, x] as [Side, Side]);
        if (sa.units === 0 || sb.units === 0) throw new Error(`${pair.a} vs ${pair.b}: a side did no work (${sa.units} / ${sb.units})`);
        const ua = (sa.cpuS * 1e6) / sa.units;
        const ub = (sb.cpuS * 1e6) / sb.units;
        res.cpuPerUnitUs.a.push(ua);
        res.cpuPerUnitUs.b.push(ub);
        res.cpuRatios.push(ub / ua);
        res.unitRatios.push(sa.units / sb.units);
        log(`${pair.a} vs ${pair.b} #${i + 1}: ${sa.units} / ${sb.units} done, CPU ${fmt(ua, 0)} / ${fmt(ub, 0)} µs per unit → ${fmt(ub / ua)}×`);
      }
    }
  } finally {
    await stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const out = process.env.DUEL_DOCS ?? path.join(ROOT, 'docs', 'benchmarks-duel.md');
  fs.writeFileSync(out, markdown(results, await gitCommit()));
  log(`wrote ${path.relative(ROOT, out)}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    process.stderr.write(`bench:duel: ${err instanceof Error ? err.message : String(err)}\n`);
    await stopAll();
    process.exit(1);
  },
);

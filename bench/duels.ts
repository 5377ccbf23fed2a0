// Duels: two contenders on the same core at the same time, a load generator each on
// the other core, the same seconds. Both see the same machine, so a drift in its speed
// (measured here: ±35 % within minutes, more than interleaved rounds can cancel)
// cancels out of the ratio. The ratio of CPU time per request (or tunnel) is what is
// compared; the ratio of requests done is shown beside it.
//
// `npm run bench` runs them after its interleaved rounds (BENCH_DUEL_REPEATS); `npm run
// bench:duel` runs them alone. Both use the contenders of contenders.ts.
import fs from 'node:fs';
import { BASELINE_ROOT, CONTENDERS, Skip, type Running, type StartContext } from './contenders.js';
import { treeCpuSeconds, treeMinorFaults, treeSystemSeconds } from './rss.js';
import { runTunnelLoadProcess } from './tunnel-load.js';
import { log, median } from './util.js';
import { runWrk } from './wrk.js';

export const DUEL_WARMUP_S = 3;

/**
 * `post-1k`: POST /post with a 1 KiB body (what a fresh upstream connection per non-idempotent request costs); get-1m: GET 1 MiB over 10 keep-alive connections (the large-body check of a front);
 * `fwd-get-1k`: absolute-form `GET http://origin/1k` through a forward proxy without authentication, 50 keep-alive connections (the forward HTTP relay and its direct pools);
 * `close-1k`: GET 1 KiB with `Connection: close`, a new client connection per request, 50 at once (what accepting a connection costs a reverse front).
 */
export const DUEL_LOADS = ['get-1k', 'close-1k', 'post-1k', 'get-1m', 'fwd-get-1k', 'connect-per-tunnel'] as const;
export type DuelLoad = (typeof DUEL_LOADS)[number];

export interface Pair {
  load: DuelLoad;
  a: string;
  b: string;
  /** The issue's target for a/b (CPU per unit of b / CPU per unit of a), when there is one. */
  target?: number;
  /** What the pair is for, when it is not a target: the bare Node engine against a C server. */
  reference?: string;
}

/** Gatewise first in every pair; the bare-engine pairs tell how far any Node proxy can get. */
export const PAIRS: Pair[] = [
  { load: 'get-1k', a: 'gatewise-quiet', b: 'http-proxy', target: 1.7 },
  { load: 'get-1k', a: 'gatewise-quiet', b: 'fastify', target: 1.5 },
  { load: 'get-1k', a: 'gatewise-quiet', b: 'nginx', target: 0.45 },
  { load: 'get-1k', a: 'gatewise-quiet', b: 'undici-stream' },
  // The default configuration (access log on) against each peer, and against itself without the log (issue 17: cost ≤ 8 %).
  { load: 'get-1k', a: 'gatewise', b: 'http-proxy', target: 1.7 },
  { load: 'get-1k', a: 'gatewise', b: 'fastify', target: 1.5 },
  { load: 'get-1k', a: 'gatewise', b: 'nginx', reference: 'the default configuration against nginx' },
  { load: 'get-1k', a: 'gatewise', b: 'gatewise-quiet', target: 0.92 },
  { load: 'get-1k', a: 'gatewise-filelog', b: 'gatewise-quiet', reference: 'the access log to a regular file (as deployed) against no log' },
  { load: 'close-1k', a: 'gatewise', b: 'http-proxy', reference: 'a new client connection per request' },
  // What any Node reverse proxy can reach: node:net on both sides, doing the least a proxy must.
  { load: 'get-1k', a: 'floor-proxy', b: 'http-proxy', reference: 'the bare Node floor against node-http-proxy' },
  { load: 'get-1k', a: 'gatewise-quiet', b: 'floor-proxy', reference: 'Gatewise against the bare Node floor' },
  // Where Gatewise's cost above node:http is (docs/benchmarks.md §40): its upstream socket layer (pool + native client) against a raw client, and its pipeline on top of that layer.
  { load: 'get-1k', a: 'native-layer', b: 'raw-client', reference: "Gatewise's pool and native client against a raw client, both behind node:http" },
  { load: 'get-1k', a: 'gatewise-quiet', b: 'native-layer', reference: "the whole pipeline against Gatewise's socket layer alone" },
  { load: 'connect-per-tunnel', a: 'gatewise-fwd', b: 'squid', target: 1 },
  { load: 'connect-per-tunnel', a: 'gatewise-fwd', b: 'gatewise-fwd-quiet', target: 0.92 },
  // Metrics on against off, the same config otherwise (issue 18: cost ≤ 5 %).
  { load: 'get-1k', a: 'gatewise-metrics', b: 'gatewise-nometrics', target: 0.95 },
  { load: 'connect-per-tunnel', a: 'gatewise-fwd-metrics', b: 'gatewise-fwd-nometrics', target: 0.95 },
  { load: 'get-1k', a: 'undici-stream', b: 'nginx', reference: 'the bare undici engine against nginx' },
  // The front inside Gatewise (issue 17: the net front becomes the default at ≥ 1.3× on 1 KiB and no worse on 1 MiB).
  { load: 'get-1k', a: 'gatewise-netfront', b: 'gatewise-nodefront', target: 1.3 },
  { load: 'get-1m', a: 'gatewise-netfront', b: 'gatewise-nodefront', target: 1 },
  { load: 'get-1k', a: 'gatewise-netfront-quiet', b: 'gatewise-nodefront-quiet', reference: 'the fronts without the access log' },
  { load: 'get-1k', a: 'net-front', b: 'undici-stream', reference: 'the faster-front experiment: node:net server side against node:http, both on bare undici' },
  { load: 'get-1m', a: 'net-front', b: 'undici-stream', reference: 'the faster-front experiment on 1 MiB bodies' },
  { load: 'get-1k', a: 'raw-client', b: 'undici-stream', reference: 'the upstream half of the study: a raw keep-alive client against undici, both behind node:http' },
  { load: 'get-1m', a: 'raw-client', b: 'undici-stream', reference: 'the raw client on 1 MiB bodies' },
  { load: 'connect-per-tunnel', a: 'gatewise-fwd-quiet', b: 'squid', target: 1 },
  { load: 'connect-per-tunnel', a: 'gatewise-fwd-quiet', b: 'connect-floor' },
  { load: 'connect-per-tunnel', a: 'connect-floor', b: 'squid', reference: 'bare Node sockets against Squid' },
  // Issue 19: the Redis-backed path costs at most 10 % more CPU per tunnel than the in-memory one (memory / Redis ≥ 0.91).
  { load: 'connect-per-tunnel', a: 'gatewise-fwd-service-redis', b: 'gatewise-fwd-service', target: 0.91 },
  // With BENCH_BASELINE set: this build against an earlier one (bar of a refactor: ≥ 0.97×).
  ...(BASELINE_ROOT
    ? ([
        { load: 'get-1k', a: 'gatewise', b: 'gatewise-base', reference: 'this build against the baseline checkout, default logging' },
        { load: 'connect-per-tunnel', a: 'gatewise-fwd', b: 'gatewise-fwd-base', reference: 'this build against the baseline checkout, default logging' },
        { load: 'get-1k', a: 'gatewise-quiet', b: 'gatewise-base-quiet', reference: 'this build against the baseline checkout' },
        { load: 'post-1k', a: 'gatewise-quiet', b: 'gatewise-base-quiet', reference: 'this build against the baseline checkout, POST' },
        { load: 'connect-per-tunnel', a: 'gatewise-fwd-quiet', b: 'gatewise-fwd-base-quiet', reference: 'this build against the baseline checkout' },
        { load: 'fwd-get-1k', a: 'gatewise-fwd-quiet', b: 'gatewise-fwd-base-quiet', reference: 'this build against the baseline checkout, forward absolute-form GET' },
      ] satisfies Pair[])
    : []),
];

export interface DuelResult {
  pair: Pair;
  /** Per repeat: (CPU per unit of b) / (CPU per unit of a), and units a / units b. */
  cpuRatios: number[];
  unitRatios: number[];
  cpuPerUnitUs: { a: number[]; b: number[] };
  skipped?: string;
}

export interface DuelOptions {
  ctx: StartContext;
  seconds: number;
  repeats: number;
  /** CPU of the load generators; the contenders and the origin run on ctx.cpus. */
  loadCpu: string;
  /** A directory per side for wrk's Lua scripts (`${scriptDir}/a`, `${scriptDir}/b`, created by the caller). */
  scriptDir: string;
  pairs?: Pair[];
  /**
   * Start both contenders anew for every repeat (warm-up included) instead of once for all
   * repeats and pairs. Why: a process draws its own state early (the young generation's size,
   * where its GC settles; docs/benchmarks.md §37 for a stream), and one draw then decides every
   * repeat of a run. Measured on GET 1 KiB, the same two builds: one run gave 0.87–0.95 (all 8
   * repeats under 1), the next two 0.99–1.06 each (docs/benchmarks.md §39). With fresh
   * processes the median is taken over several draws, as people meet them.
   */
  fresh?: boolean;
}

interface Side {
  units: number;
  cpuS: number;
  /** The main thread's context switches in the window: voluntary, involuntary. */
  switches: [number, number];
  /** The part of cpuS spent in the kernel. */
  systemS: number;
  /** Minor page faults of the process tree in the window. */
  faults: number;
}

async function loadOnce(kind: DuelLoad, port: number, seconds: number, o: DuelOptions, scriptDir: string, auth?: Running['auth']): Promise<number> {
  if (kind === 'get-1k' || kind === 'get-1m' || kind === 'close-1k') {
    const big = kind === 'get-1m';
    const r = await runWrk({ port, connections: big ? 10 : 50, durationS: seconds, request: { method: 'GET', path: big ? '/1m' : '/1k', connectionClose: kind === 'close-1k' }, cpus: o.loadCpu, scriptDir });
    return r.requests - r.errors.status;
  }
  if (kind === 'fwd-get-1k') {
    const origin = `127.0.0.1:${o.ctx.originPort}`;
    const r = await runWrk({ port, connections: 50, durationS: seconds, request: { method: 'GET', path: `http://${origin}/1k`, host: origin }, cpus: o.loadCpu, scriptDir });
    return r.requests - r.errors.status;
  }
  if (kind === 'post-1k') {
    const r = await runWrk({ port, connections: 50, durationS: seconds, request: { method: 'POST', path: '/post', bodyBytes: 1024 }, cpus: o.loadCpu, scriptDir });
    return r.requests - r.errors.status;
  }
  const r = await runTunnelLoadProcess(
    // The contender's credentials, when it authenticates (the service contenders).
    { proxyPort: port, protocol: 'connect', mode: 'per-tunnel', targetPort: o.ctx.originPort, path: '/1k', concurrency: 50, durationS: seconds, auth },
    o.loadCpu,
  );
  return r.ok;
}

/** Both loads at once; CPU time of each contender's process tree over the same window. */
async function duel(kind: DuelLoad, a: Running, b: Running, seconds: number, o: DuelOptions): Promise<[Side, Side]> {
  const cpu = (r: Running): number => (r.proc ? treeCpuSeconds(r.proc.pid) : 0);
  const systemSeconds = (r: Running): number => (r.proc ? treeSystemSeconds(r.proc.pid) : 0);
  const a0 = cpu(a);
  const b0 = cpu(b);
  const sa0 = switches(a);
  const sb0 = switches(b);
  const ka0 = systemSeconds(a);
  const kb0 = systemSeconds(b);
  const faults = (r: Running): number => (r.proc ? treeMinorFaults(r.proc.pid) : 0);
  const fa0 = faults(a);
  const fb0 = faults(b);
  // A script directory per side: both wrk runs would otherwise rewrite the same Lua file while the other reads it.
  const [ua, ub] = await Promise.all([loadOnce(kind, a.port, seconds, o, `${o.scriptDir}/a`, a.auth), loadOnce(kind, b.port, seconds, o, `${o.scriptDir}/b`, b.auth)]);
  return [
    { units: ua, cpuS: cpu(a) - a0, switches: diff(switches(a), sa0), systemS: systemSeconds(a) - ka0, faults: faults(a) - fa0 },
    { units: ub, cpuS: cpu(b) - b0, switches: diff(switches(b), sb0), systemS: systemSeconds(b) - kb0, faults: faults(b) - fb0 },
  ];
}

/** The main thread's voluntary and involuntary context switches (/proc/PID/status). */
function switches(r: Running): [number, number] {
  if (!r.proc) return [0, 0];
  try {
    const t = fs.readFileSync(`/proc/${r.proc.pid}/status`, 'utf8');
    return [Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(t)?.[1] ?? 0), Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(t)?.[1] ?? 0)];
  } catch {
    return [0, 0];
  }
}
function diff(x: [number, number], y: [number, number]): [number, number] {
  return [x[0] - y[0], x[1] - y[1]];
}

/**
 * Every pair: start both, warm up together, then `repeats` duels, alternating which load
 * starts first. Without `fresh`, each contender is started once and shared by its pairs;
 * with it, both are started anew (and warmed up) for every repeat. Stops what it started.
 */
export async function runDuels(o: DuelOptions): Promise<DuelResult[]> {
  const running = new Map<string, Running | string>();
  const get = async (id: string): Promise<Running | string> => {
    const have = running.get(id);
    if (have !== undefined) return have;
    // `id#2`: a second instance of the same contender (an A/A duel measures the method's own bias).
    const c = CONTENDERS.find((x) => x.id === id.replace(/#\d+$/, ''));
    let r: Running | string;
    try {
      if (!c) throw new Skip(`no contender ${id}`);
      r = await c.start(o.ctx);
    } catch (err) {
      if (!(err instanceof Skip)) throw err;
      r = err.message;
    }
    running.set(id, r);
    return r;
  };
  const results: DuelResult[] = [];
  const stop = async (...ids: string[]): Promise<void> => {
    for (const id of ids) {
      const r = running.get(id);
      running.delete(id);
      if (r !== undefined && typeof r !== 'string') await r.proc?.stop();
    }
  };
  try {
    for (const pair of o.pairs ?? PAIRS) {
      const res: DuelResult = { pair, cpuRatios: [], unitRatios: [], cpuPerUnitUs: { a: [], b: [] } };
      results.push(res);
      for (let i = 0; i < o.repeats; i++) {
        const a = await get(pair.a);
        const b = await get(pair.b);
        if (typeof a === 'string' || typeof b === 'string') {
          res.skipped = typeof a === 'string' ? `${pair.a}: ${a}` : `${pair.b}: ${b as string}`;
          log(`duel ${pair.a} vs ${pair.b}: not run — ${res.skipped}`);
          break;
        }
        if (o.fresh || i === 0) await duel(pair.load, a, b, DUEL_WARMUP_S, o);
        const [sa, sb] = i % 2 === 0 ? await duel(pair.load, a, b, o.seconds, o) : await duel(pair.load, b, a, o.seconds, o).then(([x, y]) => [y, x] as [Side, Side]);
        if (sa.units === 0 || sb.units === 0) throw new Error(`duel ${pair.a} vs ${pair.b}: a side did no work (${sa.units} / ${sb.units})`);
        const ua = (sa.cpuS * 1e6) / sa.units;
        const ub = (sb.cpuS * 1e6) / sb.units;
        res.cpuPerUnitUs.a.push(ua);
        res.cpuPerUnitUs.b.push(ub);
        res.cpuRatios.push(ub / ua);
        res.unitRatios.push(sa.units / sb.units);
        const sw = (x: Side): string => `${((1000 * x.switches[0]) / x.units).toFixed(0)}+${((1000 * x.switches[1]) / x.units).toFixed(0)}`;
        log(`duel ${pair.a} vs ${pair.b} #${i + 1}: ${sa.units} / ${sb.units} done, CPU ${ua.toFixed(0)} / ${ub.toFixed(0)} µs per unit → ${(ub / ua).toFixed(2)}×; system µs per unit ${((sa.systemS * 1e6) / sa.units).toFixed(0)} / ${((sb.systemS * 1e6) / sb.units).toFixed(0)}; switches per 1000 units ${sw(sa)} / ${sw(sb)}; minor faults per 1000 units ${((1000 * sa.faults) / sa.units).toFixed(0)} / ${((1000 * sb.faults) / sb.units).toFixed(0)}`);
        // Nothing of this repeat stays on the contenders' core while the next ones run.
        if (o.fresh) await stop(pair.a, pair.b);
      }
      if (o.fresh) await stop(pair.a, pair.b); // a skipped pair's contender that did start
    }
  } finally {
    await Promise.all([...running.values()].map((r) => (typeof r === 'string' ? undefined : r.proc?.stop())));
  }
  return results;
}

/** The median CPU ratio of a duel that ran, for pair a/b. */
export function duelRatio(results: readonly DuelResult[] | undefined, a: string, b: string): number | undefined {
  const r = results?.find((x) => x.pair.a === a && x.pair.b === b && !x.skipped && x.cpuRatios.length > 0);
  return r ? median(r.cpuRatios) : undefined;
}

const fmt = (x: number, digits = 2): string => x.toFixed(digits);
/** A margin in percent: one decimal below 10 % (a ratio shown as 1.70× can miss 1.7 by 0.1 %). */
const pct = (x: number): string => (Math.abs(100 * x) < 10 ? Math.abs(100 * x).toFixed(1) : Math.abs(100 * x).toFixed(0));

/** What the duels are, for both reports. */
export function duelMethod(seconds: number, repeats: number, fresh: boolean): string {
  return (
    `Two contenders run on CPU 1 at the same time, with the origin; each has its own load generator on CPU 0 (wrk, or the tunnel load generator), for the same ${seconds} s ` +
    `(${repeats} repeat${repeats === 1 ? '' : 's'}, ${fresh ? `each with both contenders started anew and warmed up together for ${DUEL_WARMUP_S} s, so the median is taken over several processes` : `after a ${DUEL_WARMUP_S} s warm-up together, one process per contender for all repeats`}). Both see the same machine, so a drift in its speed cancels out, ` +
    'which interleaved rounds cannot do: the same command ran at 6,200 and at 3,800–4,400 req/s a few minutes apart. "CPU ratio" is the second ' +
    "contender's CPU time per request (or tunnel) divided by the first's: how many times more work it needs for the same traffic. \"done ratio\" " +
    "is the first's requests over the second's in the same seconds (equal to the CPU ratio when both are CPU-bound and share the core evenly). " +
    '`gatewise` and `gatewise-fwd` are the default configuration (access log on, metrics as shipped), judged against each peer; ' +
    '`gatewise-quiet` and `gatewise-fwd-quiet` (no access log) are shown beside them.'
  );
}

/** The duel table (markdown). */
export function duelTable(results: readonly DuelResult[]): string {
  const lines = [
    '| pair | load | CPU µs per unit (first / second), medians | CPU ratio, each repeat | CPU ratio (median) | done ratio (median) | target | result |',
    '| --- | --- | --- | --- | ---: | ---: | ---: | --- |',
  ];
  for (const r of results) {
    const label = `${r.pair.a} vs ${r.pair.b}`;
    const t = r.pair.target;
    const want = t === undefined ? (r.pair.reference ? `reference: ${r.pair.reference}` : '—') : `≥ ${t}×`;
    if (r.skipped) {
      lines.push(`| ${label} | ${r.pair.load} | — | — | — | — | ${want} | not run: ${r.skipped} |`);
      continue;
    }
    const cpu = median(r.cpuRatios);
    const done = median(r.unitRatios);
    const result = t === undefined ? '—' : cpu >= t ? `met, +${pct(cpu / t - 1)} %` : `**missed by ${pct(1 - cpu / t)} %**`;
    lines.push(
      `| ${label} | ${r.pair.load} | ${fmt(median(r.cpuPerUnitUs.a), 0)} / ${fmt(median(r.cpuPerUnitUs.b), 0)} | ${r.cpuRatios.map((x) => fmt(x)).join(', ')} | ${fmt(cpu, t !== undefined && Math.abs(cpu / t - 1) < 0.01 ? 3 : 2)}× | ${fmt(done)}× | ${want} | ${result} |`,
    );
  }
  return lines.join('\n');
}

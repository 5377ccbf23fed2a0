// Summaries (medians with min–max, ratios) and the markdown report.
import { GATEWISE_REFERENCE, type Group } from './contenders.js';
import { duelMethod, duelTable, type DuelResult } from './duels.js';
import type { Scenario } from './scenarios.js';
import type { Machine } from './system.js';
import { checkTargets, soakChanges } from './targets.js';
import { median } from './util.js';

export interface RunRecord {
  scenario: string;
  contender: string;
  round: number;
  /** Successful requests or tunnels. */
  ok: number;
  rate: number;
  mbps?: number;
  p50Us: number;
  p99Us: number;
  errors: number;
  /** wrk's error counts by kind (non-zero only). */
  errorKinds?: Record<string, number>;
  /** First error message (tunnel load generator, failed run). */
  errorDetail?: string;
  peakRssKb?: number;
  cpuPercent?: number;
}

export interface ContenderInfo {
  id: string;
  label: string;
  /** Groups it was started for. */
  groups: Group[];
  config: string;
  /** Groups in which it ran at least one scenario. */
  measured: Group[];
  /** Why it (or one scenario of it) did not run. */
  skipped: { group: Group; reason: string }[];
  idleRssKb?: number;
  isGatewise?: boolean;
}

export interface SoakResult {
  contender: string;
  seconds: number;
  warmupS: number;
  rate: number;
  errors: number;
  samplesKb: number[];
  /** Length of the compared windows (first and last fifth after warm-up), seconds. */
  windowS: number;
  first: { medianKb: number; peakKb: number };
  last: { medianKb: number; peakKb: number };
  minKb: number;
  maxKb: number;
  withinTenPercent: boolean;
  note?: string;
}

export interface Summary {
  scenario: string;
  contender: string;
  rounds: number;
  rate: { median: number; min: number; max: number };
  mbps?: number;
  vsDirect?: number;
  vsGatewise?: number;
  p50Us: number;
  p99Us: number;
  peakRssKb?: number;
  cpuPercent?: number;
  errors: number;
  errorDetail?: string;
}

export interface Report {
  command: string;
  date: string;
  commit?: string;
  settings: { rounds: number; durationS: number; warmupS: number; quick: boolean; pinning: string };
  /** CPU used by other work on the machine (% of all CPUs) just before and after the benchmark; load average at the end. */
  background: { busyBeforePct: number | undefined; busyAfterPct: number | undefined; loadavg: number[] };
  machine: Machine;
  versions: Record<string, string>;
  contenders: ContenderInfo[];
  scenarios: Scenario[];
  runs: RunRecord[];
  summaries: Summary[];
  soak?: SoakResult;
  /** The duels run after the interleaved rounds (duels.ts). */
  duels?: { seconds: number; repeats: number; fresh: boolean; results: DuelResult[] };
  notes: string[];
}

/** The Gatewise variant used as reference: the first of GATEWISE_REFERENCE that ran, else any Gatewise of the group. */
function gatewiseReference(contenders: ContenderInfo[], group: Group): string | undefined {
  const gw = contenders.filter((c) => c.isGatewise && c.measured.includes(group));
  return (GATEWISE_REFERENCE[group].map((id) => gw.find((c) => c.id === id)).find(Boolean) ?? gw[0])?.id;
}

export function summarize(scenarios: Scenario[], contenders: ContenderInfo[], runs: RunRecord[]): Summary[] {
  const out: Summary[] = [];
  for (const sc of scenarios) {
    const byContender = new Map<string, RunRecord[]>();
    for (const r of runs.filter((r) => r.scenario === sc.id)) {
      byContender.set(r.contender, [...(byContender.get(r.contender) ?? []), r]);
    }
    const rows: Summary[] = [];
    for (const [contender, rs] of byContender) {
      const rates = rs.map((r) => r.rate);
      const rss = rs.map((r) => r.peakRssKb).filter((x): x is number => x !== undefined);
      const cpu = rs.map((r) => r.cpuPercent).filter((x): x is number => x !== undefined);
      const mbps = rs.map((r) => r.mbps).filter((x): x is number => x !== undefined);
      const kinds: Record<string, number> = {};
      for (const r of rs) for (const [k, n] of Object.entries(r.errorKinds ?? {})) kinds[k] = (kinds[k] ?? 0) + n;
      const kindText = Object.entries(kinds).map(([k, n]) => `${k} ${n}`).join(', ');
      const detail = kindText || rs.find((r) => r.errorDetail)?.errorDetail;
      rows.push({
        scenario: sc.id,
        contender,
        rounds: rs.length,
        rate: { median: median(rates), min: Math.min(...rates), max: Math.max(...rates) },
        ...(mbps.length ? { mbps: median(mbps) } : {}),
        p50Us: median(rs.map((r) => r.p50Us)),
        p99Us: median(rs.map((r) => r.p99Us)),
        ...(rss.length ? { peakRssKb: Math.max(...rss) } : {}),
        ...(cpu.length ? { cpuPercent: median(cpu) } : {}),
        errors: rs.reduce((s, r) => s + r.errors, 0),
        ...(detail ? { errorDetail: detail } : {}),
      });
    }
    const direct = rows.find((r) => r.contender === 'direct')?.rate.median;
    const refId = gatewiseReference(contenders, sc.group);
    const ref = rows.find((r) => r.contender === refId)?.rate.median;
    for (const row of rows) {
      if (direct) row.vsDirect = row.rate.median / direct;
      if (ref) row.vsGatewise = row.rate.median / ref;
    }
    out.push(...rows);
  }
  return out;
}

// ---- formatting ------------------------------------------------------------

const fmtInt = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
const fmtRatio = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? '—' : `${n.toFixed(2)}×`);
const fmtMs = (us: number): string => (Number.isFinite(us) ? (us >= 10_000 ? (us / 1000).toFixed(0) : (us / 1000).toFixed(2)) : '—');
export const fmtMiB = (kb: number | undefined): string => (kb === undefined ? '—' : (kb / 1024).toFixed(1));

/** Markdown table; numeric: every column but the first right-aligned. */
function table(header: string[], rows: string[][], numeric = true): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map((_, i) => (i === 0 || !numeric ? '---' : '---:'))), ...rows.map(line)].join('\n');
}

function scenarioTable(sc: Scenario, rows: Summary[], contenders: ContenderInfo[], rounds: number): string {
  const label = (id: string): string => contenders.find((c) => c.id === id)?.label ?? id;
  const order = contenders.map((c) => c.id);
  const sorted = [...rows].sort((a, b) => order.indexOf(a.contender) - order.indexOf(b.contender));
  const header = [
    'contender',
    `${sc.unit} median${rounds > 1 ? ' (min–max)' : ''}`,
    ...(sc.throughput ? ['MB/s'] : []),
    'vs direct',
    'vs Gatewise',
    'p50 ms',
    'p99 ms',
    'peak RSS MiB',
    'CPU %',
    'errors',
  ];
  const body = sorted.map((r) => [
    label(r.contender),
    `${fmtInt(r.rate.median)}${rounds > 1 ? ` (${fmtInt(r.rate.min)}–${fmtInt(r.rate.max)})` : ''}`,
    ...(sc.throughput ? [r.mbps === undefined ? '—' : r.mbps.toFixed(0)] : []),
    fmtRatio(r.vsDirect),
    fmtRatio(r.vsGatewise),
    fmtMs(r.p50Us),
    fmtMs(r.p99Us),
    fmtMiB(r.peakRssKb),
    r.cpuPercent === undefined ? '—' : r.cpuPercent.toFixed(0),
    r.errors ? `${fmtInt(r.errors)}${r.errorDetail ? ` (${r.errorDetail})` : ''}` : '0',
  ]);
  return table(header, body);
}

const GROUP_TITLES: Record<Group, string> = {
  reverse: 'Reverse proxy',
  forward: 'Forward proxy (HTTP)',
  socks: 'SOCKS5',
  scaling: 'Scaling with workers (contenders unpinned)',
};

/** What the second worker buys: 2 workers / 1 worker from the medians, for Gatewise and nginx. */
function scalingNote(rep: Report, sc: Scenario): string {
  const rate = (id: string): number | undefined => rep.summaries.find((r) => r.scenario === sc.id && r.contender === id)?.rate.median;
  const ratio = (name: string, prefix: string): string => {
    const one = rate(`${prefix}-w1`);
    const two = rate(`${prefix}-w2`);
    return one && two ? `${name}: 2 workers = ${(two / one).toFixed(2)}× 1 worker` : `${name}: 2 workers / 1 worker not measured`;
  };
  return (
    `${ratio('Gatewise', 'gatewise')}; ${ratio('nginx', 'nginx')} (medians of \`${sc.id}\`). ` +
    `On this ${rep.machine.cpus}-core machine the load generator and the origin also need CPU, so the second worker does not get a core ` +
    'of its own: the ratio is what a second worker buys here, not what it buys on a machine with a free core per worker.'
  );
}

/** The tables alone (also printed to stdout). */
export function resultTables(rep: Report): string {
  const parts: string[] = [];
  for (const group of ['reverse', 'forward', 'socks', 'scaling'] as Group[]) {
    const scs = rep.scenarios.filter((s) => s.group === group && rep.summaries.some((r) => r.scenario === s.id));
    if (scs.length === 0) continue;
    parts.push(`## ${GROUP_TITLES[group]}`);
    for (const sc of scs) {
      parts.push(`### ${sc.title} (\`${sc.id}\`)`);
      parts.push(scenarioTable(sc, rep.summaries.filter((r) => r.scenario === sc.id), rep.contenders, rep.settings.rounds));
      if (group === 'scaling') parts.push(scalingNote(rep, sc));
    }
  }
  const measured = rep.contenders.filter((c) => c.idleRssKb !== undefined);
  if (measured.length) {
    parts.push('## Idle RSS (after start, before any load)');
    parts.push(table(['contender', 'group', 'idle RSS MiB'], measured.map((c) => [c.label, c.groups.join(', '), fmtMiB(c.idleRssKb)])));
  }
  if (rep.soak) parts.push(soakSection(rep.soak));
  const skipped = rep.contenders.flatMap((c) => c.skipped.map((sk) => `- **${c.label}** (${sk.group}): ${sk.reason}`));
  if (skipped.length) {
    parts.push('## Not measured');
    parts.push(skipped.join('\n'));
  }
  return parts.join('\n\n');
}

function soakSection(s: SoakResult): string {
  const verdict = s.withinTenPercent ? 'stayed within ±10%' : '**did not stay within ±10%**';
  const change = soakChanges(s); // only shown without a note, i.e. when the soak has samples to compare
  const pct = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(1)}%`;
  return [
    `## Soak: ${s.contender}, ${s.seconds} s at 50 connections`,
    s.note ??
      `RSS ${verdict}: comparing the first and the last ${s.windowS} s after a ${s.warmupS} s warm-up, the median went from ` +
        `${fmtMiB(s.first.medianKb)} to ${fmtMiB(s.last.medianKb)} MiB (${pct(change.medianPct)}) and the peak from ` +
        `${fmtMiB(s.first.peakKb)} to ${fmtMiB(s.last.peakKb)} MiB (${pct(change.peakPct)}); overall ${fmtMiB(s.minKb)}–${fmtMiB(s.maxKb)} MiB ` +
        `after warm-up (the garbage-collected heap saw-tooths, so single samples are not compared). ${fmtInt(s.rate)} req/s, ${fmtInt(s.errors)} errors.\n\n` +
        `Samples (MiB, one per second): ${s.samplesKb.map((k) => (k / 1024).toFixed(0)).join(' ')}`,
  ].join('\n\n');
}

/** The issue's targets against this run (targets.ts); also printed to stdout. */
export function targetsSection(rep: Report): string {
  const rows = checkTargets(rep);
  const measured = rows.filter((r) => r.met !== undefined);
  const met = measured.filter((r) => r.met).length;
  const duels = rep.duels && rep.duels.results.some((r) => !r.skipped);
  return [
    '## Targets',
    `The targets of the benchmark issue, checked against this run: ${met} of ${measured.length} measured target${measured.length === 1 ? '' : 's'} met` +
      `${measured.length < rows.length ? `, ${rows.length - measured.length} not measured` : ''}. "Gatewise" is the default configuration ` +
      '(access log on, metrics as shipped; the quiet build where the default did not run), and the quiet build (no access log) is shown beside it. "met, +12 %" / "missed by 23 %": how far the measured ratio is from the required one, ' +
      'relative to the requirement; the soak is judged in percentage points of RSS change. ' +
      (duels
        ? 'Throughput ratios are judged on the [duels](#duels) of this run (the two contenders on one core at the same time, CPU time per request compared), ' +
          "because the machine's speed drifts more than medians of interleaved rounds cancel (the same command ran at 6,200 and 3,800–4,400 req/s minutes apart); " +
          'the interleaved medians are shown beside them. '
        : "Throughput ratios come from the interleaved medians (no duels in this run: `BENCH_DUEL_REPEATS=0`, or a pair's contender did not run), which carry the machine's drift. ") +
      '"Bare Node engine" is what the engine under Gatewise reaches against the same contender in this run: bare undici `Pool.stream` in a ' +
      '`http.createServer` for the reverse proxy, bare Node sockets (`net`) for CONNECT; no Node proxy built on it can do better. ' +
      `The keep-alive race target is checked by \`npm run bench:race\` ([benchmarks-race.md](benchmarks-race.md)), not here.${rep.settings.quick ? ' **Quick mode: not a measurement.**' : ''}`,
    table(
      ['target', 'measured', 'result', 'quiet build, same ratio', 'bare Node engine, same ratio', 'note'],
      rows.map((r) => [r.target, r.measured, r.result, r.quiet, r.engine, r.note]),
      false,
    ),
  ].join('\n\n');
}

/** The duels of this run, when any ran. */
export function duelSection(rep: Report): string {
  if (!rep.duels || rep.duels.results.length === 0) return '';
  return ['## Duels', duelMethod(rep.duels.seconds, rep.duels.repeats, rep.duels.fresh), duelTable(rep.duels.results)].join('\n\n');
}

export function backgroundLine(rep: Report): string {
  const b = rep.background;
  const pct = (x: number | undefined): string => (x === undefined ? '?' : `${x.toFixed(0)}%`);
  const busy = Math.max(b.busyBeforePct ?? 0, b.busyAfterPct ?? 0) > 10;
  return `${busy ? '**Warning: other work was running on the machine — numbers are noisy.** ' : ''}Background CPU use (other processes, % of all cores): ${pct(b.busyBeforePct)} before, ${pct(b.busyAfterPct)} after; load average at the end ${b.loadavg.join(' / ')}.`;
}

/** The scaling group's exception to the CPU placement, when it ran. */
function scalingMethod(rep: Report): string {
  const ran = rep.scenarios.filter((sc) => sc.group === 'scaling' && rep.summaries.some((r) => r.scenario === sc.id));
  if (ran.length === 0) return '';
  return (
    `\n- Scaling (${ran.map((sc) => `\`${sc.id}\``).join(', ')}): the contenders are started without \`taskset\`, so the kernel may place ` +
    'their workers on every core; the load generator and the origin keep the placement above, so here a worker can share ' +
    "the load generator's core (on 2 cores there is no free one to give it). Both Gatewise variants run as a " +
    'cluster primary with workers (`--workers 1` / `--workers 2`), so the ratio is the second worker alone. CPU % can exceed 100 here.'
  );
}

export function markdown(rep: Report): string {
  const m = rep.machine;
  const versions = Object.entries(rep.versions)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const contenders = rep.contenders
    .filter((c) => c.id !== 'direct')
    .map((c) => `- **${c.label}** (${c.groups.join(', ')}): ${c.config}`)
    .join('\n');
  return `# Benchmarks

Produced by \`${rep.command}\` on ${rep.date}${rep.commit ? ` at commit ${rep.commit}` : ''}
(${rep.settings.rounds} round${rep.settings.rounds > 1 ? 's' : ''} of ${rep.settings.durationS} s per contender and scenario${rep.settings.quick ? ', **quick mode: a smoke test of the harness, not a measurement**' : ''}).

Everything — load generator, origin, proxy — runs on one machine over loopback. These numbers compare
the contenders with each other under identical conditions; they are not capacity figures for real hardware.

**Machine:** ${m.cpus} cores, ${m.cpuModel}, ${m.memoryGiB} GiB RAM, ${m.os}, Linux ${m.kernel}, Node ${m.node}.

**Versions:** ${versions}.

${backgroundLine(rep)}

${targetsSection(rep)}

## Method

- Origin: nginx, one worker, static bodies \`/1k\` (1024 B) and \`/1m\` (1 MiB); \`POST /post\` reads the whole 64 KiB body
  (\`mirror_request_body\`) and answers \`ok\`. No access log. \`keepalive_requests 1000000\`.
- HTTP load: \`wrk -t1 --latency\` with a Lua script that shapes the request (POST body, \`Connection: close\`,
  absolute-form URL for forward proxies) and reports the summary. Tunnels: \`bench/tunnel-load.ts\`, one Node
  process speaking CONNECT or SOCKS5 by hand; in per-tunnel runs the load generator itself is often the limit
  (compare with its own "direct" row, which opens a TCP connection to the origin per request).
- Rounds are interleaved (every contender once per scenario, then the next round); each round starts one contender
  later and every second round runs in reverse, so any two contenders swap places from round to round (a fixed order
  made whichever of two Gatewise processes ran second at 1 MiB steadily slower); the table shows the median and the
  min–max over rounds. Latency columns are medians over rounds of each round's p50/p99. "vs Gatewise" is relative to
  Gatewise in its default configuration when it ran, else Gatewise without access log; in the scaling group to Gatewise with 1 worker.
- Peak RSS: the contender's whole process tree (nginx master + worker, Dante's helpers), sampled from
  /proc every 250 ms during the run. CPU %: the tree's user+system CPU time over the run, in % of one core
  (with the default placement the contender shares its core with the origin, so it cannot reach 100).
- CPU placement: ${rep.settings.pinning}.${scalingMethod(rep)}
- Latency at 200 connections includes the connection ramp. wrk opens all its connections at once when a run starts, and the libuv in Node 20 (≥ 1.45, libuv pull request #3696) accepts one connection per event-loop iteration. A Node server that is already busy serving its first connections therefore takes 1–2 s to accept the last of 200: for a 5-line \`http.createServer\` the listen socket's accept queue drained from 197 to 0 over ~2 s, and \`strace\` shows one \`accept4\` per \`epoll_pwait\`, never \`EAGAIN\`. The first request on each late connection waits that long, which is most of the ~1 s p99 of every Node contender in \`rev-1k-c200\`; once accepted, connections are served evenly. With \`--workers N\`, N processes accept side by side.
- "errors": non-2xx answers plus socket errors and timeouts, summed over rounds.

## How to run

\`npm run bench\` installs what is missing (as root, with \`apt-get\`: nginx, haproxy, squid, tinyproxy, dante-server, wrk;
services are kept from starting), runs every contender as its own instance from a temp directory on free loopback ports,
writes this file and \`bench/.work/results.json\`, and stops everything it started (also on Ctrl-C). Settings, by environment:
\`BENCH_ROUNDS\` (3), \`BENCH_DURATION\` seconds per run (5), \`BENCH_WARMUP\` (3), \`BENCH_QUICK=1\` (1 round of 2 s, fewer
scenarios, writes \`bench/.work/benchmarks.md\` instead of this file), \`BENCH_SOAK=120\` (Gatewise alone at 50 connections,
RSS every second), \`BENCH_SCENARIOS\` / \`BENCH_CONTENDERS\` (comma-separated ids), \`BENCH_PIN\` (\`auto\`, \`none\` or
\`load:0,origin:0,proxy:1\`), \`BENCH_DUEL_REPEATS\` (3; 0 in quick mode; 0 = no duels), \`BENCH_DUEL_SECONDS\` (6), \`BENCH_DUEL_FRESH\` (1: both
contenders started anew for each repeat of a duel; 0: each started once for all its duels),
\`BENCH_NO_INSTALL=1\`, \`BENCH_KEEP=1\` (keep configs and logs), \`BENCH_DOCS\` (output path).

## Contenders

${contenders}

${resultTables(rep)}
${rep.duels ? `\n${duelSection(rep)}\n` : ''}${rep.notes.length ? `\n## Notes\n\n${rep.notes.map((n) => `- ${n}`).join('\n')}\n` : ''}`;
}

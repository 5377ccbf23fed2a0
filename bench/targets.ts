// The targets of the benchmark issue, checked against the medians of one run:
// what was measured and by how much each target is met or missed. Pure
// computation on the Report; report.ts renders it.
import { CONTENDERS, GATEWISE_REFERENCE } from './contenders.js';
import { duelRatio } from './duels.js';
import type { Report, SoakResult, Summary } from './report.js';
import { SCENARIOS } from './scenarios.js';

export interface TargetResult {
  /** The requirement, e.g. "`rev-1k-c50` req/s ≥ 1.7× node-http-proxy". */
  target: string;
  /** What was measured, e.g. "5,154 / 3,097 = 1.66×"; "not measured" when a needed row is missing. */
  measured: string;
  /** undefined: not measured. */
  met: boolean | undefined;
  /**
   * How far from the requirement, relative to it: +0.12 = 12 % better than needed,
   * −0.23 = 23 % short. Soak: percentage points of RSS change left / exceeded.
   */
  margin?: number;
  /** "met, +12 %", "**missed by 23 %**" or "not measured". */
  result: string;
  /** The bare Node engine's own ratio to the same contender, e.g. "0.26× (duel)"; "—" when not measured or not a ratio target. */
  engine: string;
  /** The same ratio for the quiet build (no access log), e.g. "1.85× (duel)"; "—" when it did not run or is the one judged. */
  quiet: string;
  note: string;
}

type Metric = 'rate' | 'mbps' | 'p99';

/** A target on the ratio Gatewise / other contender in one scenario. */
interface RatioTarget {
  scenario: string;
  metric: Metric;
  other: string;
  otherName: string;
  /** ≥: Gatewise must reach `required` × the other; ≤: must stay at or below it. */
  op: '≥' | '≤';
  required: number;
  /**
   * The bare Node engine under Gatewise (undici `Pool.stream`, or Node sockets for
   * CONNECT): its ratio to the same contender says how far any Node proxy built on it can get.
   */
  engine: string;
}

const UNDICI = 'undici-stream';
const REVERSE_TARGETS: RatioTarget[] = [
  { scenario: 'rev-1k-c50', metric: 'rate', other: 'http-proxy', otherName: 'node-http-proxy', op: '≥', required: 1.7, engine: UNDICI },
  { scenario: 'rev-1k-c50', metric: 'rate', other: 'fastify', otherName: '@fastify/http-proxy', op: '≥', required: 1.5, engine: UNDICI },
  { scenario: 'rev-1k-c50', metric: 'rate', other: 'nginx', otherName: 'nginx', op: '≥', required: 0.45, engine: UNDICI },
  { scenario: 'rev-1m-c10', metric: 'mbps', other: 'nginx', otherName: 'nginx', op: '≥', required: 0.8, engine: UNDICI },
  // "at the same load": the fixed-rate scenario, where every contender serves the same ~2,000 req/s.
  { scenario: 'rev-1k-c50-fixed', metric: 'p99', other: 'nginx', otherName: "nginx's", op: '≤', required: 1.5, engine: UNDICI },
  // Shown too: at saturation the loads differ (each contender answers as fast as it can), so
  // the p99 there follows the throughput ratio.
  { scenario: 'rev-1k-c50', metric: 'p99', other: 'nginx', otherName: "nginx's", op: '≤', required: 1.5, engine: UNDICI },
];
const FORWARD_TARGETS: RatioTarget[] = [{ scenario: 'fwd-connect-c50', metric: 'rate', other: 'squid', otherName: 'Squid', op: '≥', required: 1, engine: 'connect-floor' }];

const IDLE_RSS_LIMIT_MIB = 80;
const SOAK_LIMIT_PCT = 10;

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const fmtMs = (us: number): string => (us >= 10_000 ? (us / 1000).toFixed(0) : (us / 1000).toFixed(1));
const fmtPct = (x: number): string => (Math.abs(x) < 10 ? Math.abs(x).toFixed(1) : Math.abs(x).toFixed(0));

/** The scenario's own unit for rates (req/s, tunnels/s). */
function metricName(t: RatioTarget, unit: string): string {
  return t.metric === 'p99' ? 'p99' : t.metric === 'mbps' ? 'MB/s' : unit;
}

function value(s: Summary, metric: Metric): number | undefined {
  const v = metric === 'rate' ? s.rate.median : metric === 'mbps' ? s.mbps : s.p99Us;
  return v !== undefined && Number.isFinite(v) && v > 0 ? v : undefined;
}

function show(v: number, metric: Metric): string {
  return metric === 'p99' ? `${fmtMs(v)} ms` : metric === 'mbps' ? v.toFixed(0) : fmtInt(v);
}

/** met / missed from the margin (relative to the requirement). */
function judged(margin: number, strict = false): Pick<TargetResult, 'met' | 'margin' | 'result'> {
  const met = strict ? margin > 0 : margin >= 0;
  return { met, margin, result: met ? `met, +${fmtPct(100 * margin)} %` : `**missed by ${fmtPct(100 * margin)} %**` };
}

const notMeasured = (target: string, note: string): TargetResult => ({ target, measured: 'not measured', met: undefined, result: 'not measured', engine: '—', quiet: '—', note });

/** The Gatewise row of a scenario: the preferred variant (the default configuration) if it ran, else the next. */
function gatewiseRow(rep: Report, scenario: string): Summary | undefined {
  const sc = SCENARIOS.find((s) => s.id === scenario);
  if (!sc) return undefined;
  for (const id of GATEWISE_REFERENCE[sc.group]) {
    const row = rep.summaries.find((s) => s.scenario === scenario && s.contender === id);
    if (row) return row;
  }
  return undefined;
}

/** Label from the report, else from the definitions (for a contender left out of this run). */
function label(rep: Report, id: string): string {
  return (rep.contenders.find((c) => c.id === id) ?? CONTENDERS.find((c) => c.id === id))?.label ?? id;
}

/** Which Gatewise was used, saying so when it is the fallback. */
function gatewiseNote(rep: Report, id: string, preferred: string | undefined): string {
  return id === preferred || !preferred ? label(rep, id) : `${label(rep, id)}, as ${label(rep, preferred)} did not run`;
}

/** The median CPU ratio of the duel first/second in this run (drift-free; see duels.ts). */
function duel(rep: Report, first: string, second: string): number | undefined {
  return duelRatio(rep.duels?.results, first, second);
}

/**
 * The bare engine's ratio to the other contender: from its own duel, else from the two
 * duels of Gatewise (CPU(other)/CPU(gw) ÷ CPU(engine)/CPU(gw)), else from the interleaved medians.
 */
function engineRatio(rep: Report, t: RatioTarget, gwIds: readonly string[]): string {
  if (t.metric === 'rate') {
    const own = duel(rep, t.engine, t.other);
    if (own !== undefined) return `${own.toFixed(2)}× (duel)`;
    // Through any Gatewise variant that duelled both (the duels pair the engine with the quiet build).
    for (const gwId of gwIds) {
      const viaGw = duel(rep, gwId, t.other);
      const gwEngine = duel(rep, gwId, t.engine);
      if (viaGw !== undefined && gwEngine !== undefined) return `${(viaGw / gwEngine).toFixed(2)}× (from the duels with Gatewise)`;
    }
  }
  const e = rep.summaries.find((s) => s.scenario === t.scenario && s.contender === t.engine);
  const o = rep.summaries.find((s) => s.scenario === t.scenario && s.contender === t.other);
  const a = e && value(e, t.metric);
  const b = o && value(o, t.metric);
  return a !== undefined && b !== undefined ? `${(a / b).toFixed(2)}× (interleaved)` : '—';
}

/** The quiet build's ratio to the same contender (duel first, then interleaved), when it is not the one judged. */
function quietRatio(rep: Report, t: RatioTarget, judgedId: string | undefined): string {
  const sc = SCENARIOS.find((s) => s.id === t.scenario);
  const quietId = sc ? GATEWISE_REFERENCE[sc.group][1] : undefined;
  if (quietId === undefined || quietId === judgedId) return '—';
  const d = t.metric === 'rate' ? duel(rep, quietId, t.other) : undefined;
  if (d !== undefined) return `${d.toFixed(2)}× (duel)`;
  const q = rep.summaries.find((s) => s.scenario === t.scenario && s.contender === quietId);
  const o = rep.summaries.find((s) => s.scenario === t.scenario && s.contender === t.other);
  const a = q && value(q, t.metric);
  const b = o && value(o, t.metric);
  return a !== undefined && b !== undefined ? `${(a / b).toFixed(2)}× (interleaved)` : '—';
}

function ratioTarget(rep: Report, t: RatioTarget): TargetResult {
  // From the definitions, not the report: a scenario left out of this run still names its unit.
  const sc = SCENARIOS.find((s) => s.id === t.scenario);
  const target = `\`${t.scenario}\` ${metricName(t, sc?.unit ?? 'req/s')}: Gatewise ${t.op} ${t.required}× ${t.otherName}`;
  const gw = gatewiseRow(rep, t.scenario);
  const other = rep.summaries.find((s) => s.scenario === t.scenario && s.contender === t.other);
  const a = gw && value(gw, t.metric);
  const b = other && value(other, t.metric);
  // Throughput is judged on the duel when one ran: the interleaved medians carry the machine's drift.
  // The preferred variant's duel (the default configuration), else the next one's that ran.
  const duelGwId = sc && t.metric === 'rate' ? GATEWISE_REFERENCE[sc.group].find((id) => duel(rep, id, t.other) !== undefined) : undefined;
  const duelled = duelGwId !== undefined ? duel(rep, duelGwId, t.other) : undefined;
  const interleaved = gw && other && a !== undefined && b !== undefined ? a / b : undefined;
  const ratio = duelled ?? interleaved;
  if (ratio === undefined) {
    const missing = [...(gw && a !== undefined ? [] : ['Gatewise']), ...(other && b !== undefined ? [] : [t.otherName.replace(/'s$/, '')])];
    return notMeasured(target, `no \`${t.scenario}\` result for ${missing.join(' and ')}`);
  }
  const margin = t.op === '≥' ? ratio / t.required - 1 : 1 - ratio / t.required;
  const fmtRatio = (r: number): string => `${r.toFixed(r < 10 ? 2 : 1)}×`;
  const parts: string[] = [];
  if (duelled !== undefined) parts.push(`duel: **${fmtRatio(duelled)}**`);
  if (interleaved !== undefined) {
    parts.push(`${duelled !== undefined ? 'interleaved: ' : ''}${show(a!, t.metric)} / ${show(b!, t.metric)}${t.metric === 'mbps' ? ' MB/s' : ''} = ${fmtRatio(interleaved)}`);
  }
  const notes: string[] = [];
  const judgedId = duelGwId ?? gw?.contender;
  if (judgedId) notes.push(gatewiseNote(rep, judgedId, sc && GATEWISE_REFERENCE[sc.group][0]));
  if (duelled !== undefined) notes.push('judged on the duel');
  const errs = [gw, other].filter((s): s is Summary => s !== undefined && s.errors > 0).map((s) => `${label(rep, s.contender)} ${fmtInt(s.errors)}`);
  if (errs.length) notes.push(`errors: ${errs.join(', ')}`);
  return {
    target,
    measured: parts.join('; '),
    ...judged(margin),
    engine: engineRatio(rep, t, sc ? GATEWISE_REFERENCE[sc.group] : []),
    quiet: quietRatio(rep, t, judgedId),
    note: notes.join('; '),
  };
}

function idleRssTarget(rep: Report): TargetResult {
  const target = `idle RSS: Gatewise < ${IDLE_RSS_LIMIT_MIB} MiB`;
  const info = GATEWISE_REFERENCE.reverse.map((id) => rep.contenders.find((c) => c.id === id && c.idleRssKb !== undefined)).find(Boolean);
  if (!info?.idleRssKb) return notMeasured(target, 'no reverse Gatewise was started');
  const mib = info.idleRssKb / 1024;
  const note = `${gatewiseNote(rep, info.id, GATEWISE_REFERENCE.reverse[0])}, after start, before any load`;
  return { target, measured: `${mib.toFixed(1)} MiB`, ...judged(1 - mib / IDLE_RSS_LIMIT_MIB, true), engine: '—', quiet: '—', note };
}

/** RSS change from the first to the last window of the soak, in % (median and peak). */
export function soakChanges(s: SoakResult): { medianPct: number; peakPct: number } {
  return { medianPct: (100 * (s.last.medianKb - s.first.medianKb)) / s.first.medianKb, peakPct: (100 * (s.last.peakKb - s.first.peakKb)) / s.first.peakKb };
}

function soakTarget(rep: Report): TargetResult {
  const target = `soak: Gatewise RSS within ±${SOAK_LIMIT_PCT} %`;
  const s = rep.soak;
  if (!s) return notMeasured(target, 'no soak in this run (`BENCH_SOAK=120`)');
  if (!(s.first.medianKb > 0 && s.first.peakKb > 0)) return notMeasured(target, s.note ?? 'no samples');
  const { medianPct, peakPct } = soakChanges(s);
  const signed = (x: number): string => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(1)} %`;
  // Percentage points rather than a ratio: "missed by 50 %" of a ±10 % band would read like a 50 % growth.
  const points = SOAK_LIMIT_PCT - Math.max(Math.abs(medianPct), Math.abs(peakPct));
  const met = s.withinTenPercent;
  return {
    target,
    measured: `${signed(medianPct)} median, ${signed(peakPct)} peak`,
    met,
    margin: points / 100,
    result: met ? `met, ${points.toFixed(1)} points to spare` : `**missed by ${Math.abs(points).toFixed(1)} points**`,
    engine: '—',
    quiet: '—',
    note: [`${s.contender}, ${s.seconds} s, first vs last ${s.windowS} s after warm-up`, ...(s.note ? [s.note] : [])].join('; '),
  };
}

/** In the order: reverse throughput and latency, memory, then the forward proxy. */
export function checkTargets(rep: Report): TargetResult[] {
  return [...REVERSE_TARGETS.map((t) => ratioTarget(rep, t)), idleRssTarget(rep), soakTarget(rep), ...FORWARD_TARGETS.map((t) => ratioTarget(rep, t))];
}

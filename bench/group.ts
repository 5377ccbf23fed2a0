// One contender group (reverse, forward or SOCKS5): start its contenders,
// check which scenario each can serve, warm up, then run interleaved rounds.
import { checkScenario } from './checks.js';
import { Skip, type Contender, type Group, type Running, type StartContext } from './contenders.js';
import type { ContenderInfo, RunRecord } from './report.js';
import { TreeSampler, treeRssKb } from './rss.js';
import { wrkRequest, type Scenario } from './scenarios.js';
import type { Pinning, Settings } from './settings.js';
import { runTunnelLoadProcess } from './tunnel-load.js';
import { log, sleep } from './util.js';
import { runWrk } from './wrk.js';

/** One run of one scenario against one contender, with RSS and CPU sampled meanwhile. */
async function measure(sc: Scenario, id: string, r: Running, env: GroupEnv, round: number, durationS: number): Promise<RunRecord> {
  const { originPort, pin, scriptDir } = env;
  const direct = id === 'direct';
  const sampler = r.proc ? new TreeSampler(r.proc.pid).start() : undefined;
  const rec: RunRecord = { scenario: sc.id, contender: id, round, ok: 0, rate: 0, p50Us: NaN, p99Us: NaN, errors: 0 };
  try {
    if (sc.wrk) {
      const request = wrkRequest(sc.wrk, originPort, direct, r.auth);
      const w = await runWrk({ port: r.port, connections: sc.connections, durationS, request, cpus: pin.load, scriptDir });
      const e = w.errors;
      rec.ok = w.requests - e.status;
      rec.rate = rec.ok / w.durationS;
      if (sc.throughput) rec.mbps = w.bytes / w.durationS / 1e6;
      rec.p50Us = w.latencyUs.p50;
      rec.p99Us = w.latencyUs.p99;
      rec.errors = e.status + e.connect + e.read + e.write + e.timeout;
      const kinds = Object.fromEntries(Object.entries(e).filter(([, n]) => n > 0));
      if (Object.keys(kinds).length) rec.errorKinds = kinds;
    } else if (sc.tunnel) {
      const t = await runTunnelLoadProcess(
        { proxyPort: r.port, protocol: direct ? 'direct' : sc.tunnel.protocol, mode: sc.tunnel.mode, targetPort: originPort, path: sc.tunnel.path, concurrency: sc.connections, durationS, ...(r.auth ? { auth: r.auth } : {}) },
        pin.load,
      );
      rec.ok = t.ok;
      rec.rate = t.ok / t.durationS;
      rec.p50Us = t.latencyUs.p50 ?? NaN;
      rec.p99Us = t.latencyUs.p99 ?? NaN;
      rec.errors = t.errors;
      if (t.firstError) rec.errorDetail = t.firstError;
    }
  } catch (err) {
    rec.errors++;
    rec.errorDetail = err instanceof Error ? err.message : String(err);
  } finally {
    if (sampler) {
      const sample = sampler.stop();
      rec.peakRssKb = sample.peakRssKb;
      rec.cpuPercent = sample.cpuPercent;
    }
  }
  return rec;
}

export interface GroupEnv {
  ctx: StartContext;
  originPort: number;
  settings: Settings;
  pin: Pinning;
  scriptDir: string;
  /** Shared across groups: one entry per contender. */
  infos: Map<string, ContenderInfo>;
}

function infoFor(env: GroupEnv, c: Contender): ContenderInfo {
  let info = env.infos.get(c.id);
  if (!info) {
    info = { id: c.id, label: c.label, groups: [], config: c.config, measured: [], skipped: [], ...(c.isGatewise ? { isGatewise: true } : {}) };
    env.infos.set(c.id, info);
  }
  return info;
}

/** Start every contender of the group; the ones that cannot start are noted with the reason. */
async function startAll(group: Group, contenders: Contender[], env: GroupEnv): Promise<Map<string, Running>> {
  const running = new Map<string, Running>();
  for (const c of contenders) {
    const info = infoFor(env, c);
    info.groups.push(group);
    for (let attempt = 1; ; attempt++) {
      try {
        running.set(c.id, await c.start(env.ctx));
        break;
      } catch (err) {
        if (!(err instanceof Skip)) throw err;
        // The free port we picked can be taken before the server binds it: pick another.
        if (attempt < 3 && /EADDRINUSE|address already in use/i.test(err.message)) continue;
        info.skipped.push({ group, reason: err.message });
        log(`${c.id}: not available — ${err.message}`);
        break;
      }
    }
  }
  await sleep(1000);
  for (const [id, r] of running) {
    const info = env.infos.get(id)!;
    if (r.proc && info.idleRssKb === undefined) info.idleRssKb = treeRssKb(r.proc.pid);
  }
  return running;
}

/** One request per scenario and contender: which pairs can run at all? scenario id -> contender ids. */
/** Whether the contender takes part in this scenario at all (some peers serve only some). */
function scenarioFor(contenders: Contender[], id: string, scenario: string): boolean {
  const only = contenders.find((c) => c.id === id)?.scenarios;
  return only === undefined || only.includes(scenario);
}

async function findRunnable(group: Group, scs: Scenario[], running: Map<string, Running>, env: GroupEnv, contenders: Contender[]): Promise<Map<string, Set<string>>> {
  const runnable = new Map<string, Set<string>>();
  for (const sc of scs) {
    const ok = new Set<string>();
    for (const [id, r] of running) {
      if (!scenarioFor(contenders, id, sc.id)) continue;
      try {
        await checkScenario(sc, r.port, env.originPort, id === 'direct', r.auth);
        ok.add(id);
      } catch (err) {
        const reason = `${sc.id}: ${err instanceof Error ? err.message : String(err)}`;
        env.infos.get(id)!.skipped.push({ group, reason });
        log(`${id}: cannot run ${reason}`);
      }
    }
    runnable.set(sc.id, ok);
  }
  for (const [id] of running) {
    if ([...runnable.values()].some((set) => set.has(id))) env.infos.get(id)!.measured.push(group);
  }
  return runnable;
}

function logRun(rec: RunRecord, sc: Scenario): void {
  log(
    `round ${rec.round} ${sc.id.padEnd(18)} ${rec.contender.padEnd(20)} ${Math.round(rec.rate).toString().padStart(7)} ${sc.unit}` +
      `${rec.mbps !== undefined ? ` ${rec.mbps.toFixed(0)} MB/s` : ''}  p99 ${(rec.p99Us / 1000).toFixed(2)} ms` +
      `${rec.peakRssKb !== undefined ? `  rss ${(rec.peakRssKb / 1024).toFixed(0)} MiB  cpu ${rec.cpuPercent?.toFixed(0)}%` : ''}` +
      `${rec.errors ? `  errors ${rec.errors} (${rec.errorDetail ?? JSON.stringify(rec.errorKinds)})` : ''}`,
  );
}

export async function runGroup(group: Group, scs: Scenario[], contenders: Contender[], env: GroupEnv): Promise<RunRecord[]> {
  const s = env.settings;
  const runs: RunRecord[] = [];
  const running = await startAll(group, contenders, env);
  try {
    const runnable = await findRunnable(group, scs, running, env, contenders);

    // A contender that dies is reported once, with the end of its stderr.
    const dead = new Set<string>();
    const alive = (id: string, r: Running, when: string): boolean => {
      if (!r.proc?.exited) return true;
      if (!dead.has(id)) {
        dead.add(id);
        const problem = r.proc.problem();
        const why = `exited during ${when} (code ${r.proc.exitCode}, signal ${r.proc.exitSignal})${problem ? `: ${problem}` : ''}`;
        env.infos.get(id)!.skipped.push({ group, reason: why });
        log(`${id}: ${why}\n${r.proc.stderrTail(40).replace(/^/gm, '    ')}`);
      }
      return false;
    };

    if (s.warmupS > 0) {
      for (const [id, r] of running) {
        const sc = scs.find((x) => runnable.get(x.id)!.has(id));
        if (sc) await measure(sc, id, r, env, 0, Math.max(1, Math.round(s.warmupS)));
        alive(id, r, `warm-up (${sc?.id})`);
      }
    }

    // Interleaved: every contender once per scenario, then the next round. Each round
    // starts one contender later, and every second round runs in reverse, so any two
    // contenders swap places from round to round. Order matters on this machine: of two
    // Gatewise processes that had both just served 200 connections, whichever ran the
    // 1 MiB scenario second was 25-45 % slower (the variant did not matter; by hand, with
    // the order swapped, the slowdown moved with it), and a fixed order turned that into a
    // steady "Gatewise without access log is slower at 1 MiB".
    const order = [...running];
    for (let round = 1; round <= s.rounds; round++) {
      const shift = (round - 1) % order.length;
      const rotated = [...order.slice(shift), ...order.slice(0, shift)];
      const thisRound = round % 2 === 0 ? rotated.reverse() : rotated;
      for (const sc of scs) {
        for (const [id, r] of thisRound) {
          if (!runnable.get(sc.id)!.has(id) || !alive(id, r, 'an earlier run')) continue;
          const rec = await measure(sc, id, r, env, round, s.durationS);
          runs.push(rec);
          logRun(rec, sc);
          alive(id, r, `${sc.id} round ${round}`);
          await sleep(300);
        }
      }
    }
  } finally {
    await Promise.all([...running.values()].map((r) => r.proc?.stop()));
  }
  return runs;
}

// `npm run bench`: Gatewise against nginx, HAProxy, node-http-proxy,
// @fastify/http-proxy, bare undici streaming (reverse), Squid, Tinyproxy,
// proxy-chain (forward) and Dante (SOCKS5), then Gatewise and nginx with 1 and
// 2 workers (scaling), all on this machine over loopback.
//
// Environment:
//   BENCH_QUICK=1        1 round of 2 s, fewer scenarios (smoke test of the harness)
//   BENCH_ROUNDS=3       interleaved rounds
//   BENCH_DURATION=5     seconds per run
//   BENCH_WARMUP=3       seconds of warm-up per contender before round 1 (0 = none; JIT warm-up: round 1 after 1 s ran ~40 % slow)
//   BENCH_DUEL_REPEATS=3 then duels (bench/duels.ts): two contenders on one core at once, drift-free ratios (0 = none)
//   BENCH_DUEL_SECONDS=6 seconds per duel
//   BENCH_SOAK=120       afterwards, run Gatewise alone for that long and judge its RSS
//   BENCH_SCENARIOS=a,b  only these scenario ids ("none" = only the soak)
//   BENCH_CONTENDERS=a,b only these contender ids ("direct" always runs)
//   BENCH_PIN=auto       auto (= load:0,origin:1,proxy:1) | none | load:0,origin:0,proxy:1 (taskset CPU lists)
//   BENCH_NO_INSTALL=1   never apt-get install missing servers
//   BENCH_DOCS=path      where the markdown goes (default docs/benchmarks.md; quick mode: bench/.work/benchmarks.md)
//   BENCH_KEEP=1         keep the temp directory with configs and logs
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { verifyOrigin } from './checks.js';
import { startOrigin, type Group, type StartContext } from './contenders.js';
import { PAIRS, runDuels } from './duels.js';
import { runGroup, type GroupEnv } from './group.js';
import { installCleanupHandlers, onCleanup, stopAll } from './procs.js';
import { backgroundLine, markdown, resultTables, summarize, targetsSection, type ContenderInfo, type Report, type RunRecord } from './report.js';
import { commandLine, pinning, readSettings } from './settings.js';
import { runSoak } from './soak.js';
import { backgroundBusyPercent, describeMachine, ensureTools, gitCommit, npmVersion } from './system.js';
import { log } from './util.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const GROUPS: Group[] = ['reverse', 'forward', 'socks', 'scaling'];
/** docs/benchmarks.md: everything from this line on is written by hand and survives `npm run bench`. */
const SESSIONS_MARK = '<!-- session notes: kept by npm run bench -->';

/**
 * The scaling group asks what a second worker buys, so its contenders are not
 * pinned: the kernel may place their workers on both cores. The origin keeps the
 * CPU it was started on and wrk gets `pin.load` on every run, as in the other groups.
 */
function groupEnv(group: Group, env: GroupEnv): GroupEnv {
  return group === 'scaling' ? { ...env, ctx: { ...env.ctx, cpus: undefined } } : env;
}

async function main(): Promise<number> {
  installCleanupHandlers();
  const s = readSettings(ROOT);
  const machine = describeMachine();
  const pin = pinning(machine.cpus);
  log(`${s.quick ? 'QUICK mode, ' : ''}${s.rounds} round(s) × ${s.durationS}s; ${s.scenarios.length} scenario(s); ${pin.text}`);

  const tools = ensureTools();
  const versions: Record<string, string> = { node: process.version };
  for (const [bin, st] of tools) versions[bin] = st.version ?? 'not available';
  for (const pkg of ['http-proxy', '@fastify/http-proxy', 'fastify', 'undici', 'proxy-chain']) versions[pkg] = npmVersion(pkg) ?? 'not installed';
  const gatewisePkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  versions.gatewise = gatewisePkg.version;

  const nginx = tools.get('nginx')?.path;
  if (!nginx) throw new Error('nginx is needed for the origin and is not available; install it (apt-get install nginx) and rerun');
  const wrkOk = Boolean(tools.get('wrk')?.path);

  const busyBefore = await backgroundBusyPercent();
  if (busyBefore !== undefined && busyBefore > 10) {
    log(`WARNING: the machine is already ${busyBefore.toFixed(0)}% busy with other work; numbers will be noisy`);
  }

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewise-bench-'));
  fs.chmodSync(dir, 0o755);
  onCleanup(() => {
    if (process.env.BENCH_KEEP === '1') log(`kept ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  });
  const scriptDir = path.join(dir, 'lua');
  fs.mkdirSync(scriptDir);
  log(`work directory ${dir}`);

  const infos = new Map<string, ContenderInfo>();
  const notes: string[] = [];
  const runs: RunRecord[] = [];
  let soak: Report['soak'];
  let duels: Report['duels'];
  let busyAfter: number | undefined;

  try {
    const origin = await startOrigin(dir, nginx, pin.origin);
    await verifyOrigin(origin.port);
    log(`origin nginx on 127.0.0.1:${origin.port} (pid ${origin.proc.pid}) verified: /1k, /1m, POST /post with keep-alive`);
    const ctx: StartContext = { dir, root: ROOT, originPort: origin.port, origin: origin.proc, tools, cpus: pin.proxy };

    const env: GroupEnv = { ctx, originPort: origin.port, settings: s, pin, scriptDir, infos };
    for (const group of GROUPS) {
      let scs = s.scenarios.filter((sc) => sc.group === group);
      if (!wrkOk && scs.some((sc) => sc.wrk)) {
        notes.push(`wrk is not available: skipped ${scs.filter((sc) => sc.wrk).map((sc) => sc.id).join(', ')}`);
        scs = scs.filter((sc) => !sc.wrk);
      }
      if (scs.length === 0) continue;
      log(`=== ${group}: ${scs.map((sc) => sc.id).join(', ')}`);
      runs.push(...(await runGroup(group, scs, s.contenders.filter((c) => c.groups.includes(group)), groupEnv(group, env))));
    }

    if (s.duelRepeats > 0) {
      // Only pairs whose contenders were selected (BENCH_CONTENDERS), on the placement of the groups.
      const chosen = new Set(s.contenders.map((c) => c.id));
      const pairs = PAIRS.filter((p) => chosen.has(p.a) && chosen.has(p.b) && s.scenarios.some((sc) => (p.load !== 'connect-per-tunnel' ? sc.group === 'reverse' : sc.id.startsWith('fwd-connect'))));
      if (!wrkOk) notes.push('duels not run: wrk is not available');
      else if (pin.load === undefined || pin.proxy === undefined) notes.push('duels not run: they need the load generators and the contenders on different CPUs (BENCH_PIN)');
      else if (pairs.length > 0) {
        log(`=== duels: ${pairs.map((p) => `${p.a} vs ${p.b}`).join(', ')}`);
        const duelScripts = path.join(dir, 'duel-lua');
        fs.mkdirSync(path.join(duelScripts, 'a'), { recursive: true });
        fs.mkdirSync(path.join(duelScripts, 'b'), { recursive: true });
        const results = await runDuels({ ctx, seconds: s.duelSeconds, repeats: s.duelRepeats, fresh: s.duelFresh, loadCpu: pin.load, scriptDir: duelScripts, pairs });
        duels = { seconds: s.duelSeconds, repeats: s.duelRepeats, fresh: s.duelFresh, results };
      }
    }

    if (s.soakS > 0) {
      if (!wrkOk) notes.push('soak not run: wrk is not available');
      else soak = await runSoak(ctx, s.soakS, pin.load, scriptDir);
    }
  } finally {
    await stopAll();
    busyAfter = await backgroundBusyPercent();
  }

  const contenders = [...infos.values()];
  const report: Report = {
    command: commandLine(),
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    ...(await gitCommit().then((c) => (c ? { commit: c } : {}))),
    settings: { rounds: s.rounds, durationS: s.durationS, warmupS: s.warmupS, quick: s.quick, pinning: pin.text },
    background: { busyBeforePct: busyBefore, busyAfterPct: busyAfter, loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100) },
    machine,
    versions,
    contenders,
    scenarios: s.scenarios,
    runs,
    summaries: summarize(s.scenarios, contenders, runs),
    ...(soak ? { soak } : {}),
    ...(duels ? { duels } : {}),
    notes,
  };

  const workDir = path.join(ROOT, 'bench', '.work');
  fs.mkdirSync(workDir, { recursive: true });
  fs.writeFileSync(path.join(workDir, 'results.json'), `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`\n${backgroundLine(report)}\n\n${resultTables(report)}\n\n${targetsSection(report)}\n\n`);
  if (runs.length > 0) {
    fs.mkdirSync(path.dirname(s.docsPath), { recursive: true });
    // Hand-written session notes below SESSIONS_MARK are kept when the page is regenerated.
    const before = fs.existsSync(s.docsPath) ? fs.readFileSync(s.docsPath, 'utf8') : '';
    const kept = before.includes(SESSIONS_MARK) ? `\n${before.slice(before.indexOf(SESSIONS_MARK))}` : '';
    fs.writeFileSync(s.docsPath, `${markdown(report)}${kept}`);
    log(`wrote ${path.relative(ROOT, s.docsPath)} and bench/.work/results.json`);
  } else {
    log('no comparison ran: wrote bench/.work/results.json only');
  }
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (err: unknown) => {
    process.stderr.write(`[bench] failed: ${err instanceof Error ? err.message : String(err)}\n`);
    await stopAll();
    process.exitCode = 1;
  },
);

// Instructions per request of one Gatewise process under callgrind (issues 13, 17, 18):
// a count instead of a wall-clock duel, for comparing two builds on a busy machine.
//
//   node dist/bench/icount.js ROOT MODE [WARM] [N]
//   ROOT: a built checkout (this one, or BENCH_BASELINE's); MODE: quiet | default | metrics | nometrics
//   (the duel contenders gatewise-quiet, gatewise, gatewise-metrics, gatewise-nometrics) | netfront |
//   nodefront (gatewise-netfront / gatewise-nodefront: the default with `front: net` or `node` set) |
//   floor (bench/peers/floor-proxy.ts: node:net on both sides, the least a proxy does).
//
// Gatewise runs under `valgrind --tool=callgrind` with instrumentation off while WARM requests
// (default 30,000) warm the JIT, then on: 300 more, counters zeroed, N requests (default 3,000)
// counted, dumped; the figure is every thread's instructions divided by N. 50 keep-alive
// connections from undici in this process, GET /1k from a local nginx origin, loopback only.
//
// What was learnt making it (2026-12-03), so the figures are read right:
// - V8 flags `--single-threaded --no-memory-reducer --no-flush-bytecode` are passed to the
//   process under test. Without them the counts of one build swung 175k–395k per request:
//   TurboFan compiles on helper threads still running in the counted window (under valgrind
//   the helpers are starved; 10,000 warm requests were not enough, 30,000 are), the memory
//   reducer's time-driven full GCs (valgrind makes the allocation rate look idle), and
//   bytecode flushed and compiled again.
// - Even so, on a machine at load average 11–16 (two cores), one build measured 170k–280k
//   instructions per request, the count rising with the wall time of the counted window
//   (time-driven work: timers, Date, GC scheduling). Compare builds only when run one after
//   the other on a quiet machine, several times each, and look at the spread.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import { callgrindTotal } from './callgrind.js';
import { metricsReverseConfig, nginxOrigin, reverseFrontConfig } from './configs.js';
import { installCleanupHandlers, runMain, startProcess, stopAll } from './procs.js';
import { freePort, waitForPort } from './util.js';

const V8_FLAGS = ['--single-threaded', '--no-memory-reducer', '--no-flush-bytecode'];
const CONNECTIONS = 50;

type Mode = 'quiet' | 'default' | 'metrics' | 'nometrics' | 'netfront' | 'nodefront' | 'floor' | 'native-layer';
const MODES: readonly Mode[] = ['quiet', 'default', 'metrics', 'nometrics', 'netfront', 'nodefront', 'floor', 'native-layer'];
/** The modes that run a peer of bench/peers/ (PORT ORIGIN_PORT) instead of Gatewise. */
const PEERS: Partial<Record<Mode, string>> = { floor: 'floor-proxy.js', 'native-layer': 'native-layer.js' };

async function gatewiseArgs(mode: Mode, dir: string, port: number, origin: number): Promise<string[]> {
  if (mode === 'quiet' || mode === 'default') {
    return ['proxy', '--listen', `127.0.0.1:${port}`, '--to', `http://127.0.0.1:${origin}`, ...(mode === 'quiet' ? ['--no-access-log'] : [])];
  }
  const file = path.join(dir, 'gatewise.yaml');
  if (mode === 'netfront' || mode === 'nodefront') {
    fs.writeFileSync(file, reverseFrontConfig(port, origin, mode === 'netfront' ? 'net' : 'node', true));
    return ['run', '-c', file];
  }
  // The config of bench/contenders.ts's gatewise-metrics / gatewise-nometrics.
  const admin = mode === 'metrics' ? await freePort() : undefined;
  fs.writeFileSync(file, metricsReverseConfig(port, origin, admin));
  return ['run', '-c', file];
}

/** N GETs over the pool's connections, each answer read to its end; returns the non-200 count. */
async function load(pool: Pool, n: number): Promise<number> {
  let started = 0;
  let bad = 0;
  const worker = async (): Promise<void> => {
    while (started < n) {
      started++;
      const r = await pool.request({ method: 'GET', path: '/1k' });
      if (r.statusCode !== 200) bad++;
      await r.body.dump();
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  return bad;
}

async function main(): Promise<void> {
  const [root, modeArg = 'quiet', warmArg = '30000', nArg = '3000'] = process.argv.slice(2);
  if (!root || !(MODES as readonly string[]).includes(modeArg)) throw new Error(`usage: icount ROOT ${MODES.join('|')} [WARM] [N]`);
  const mode = modeArg as Mode;
  const warm = Number(warmArg);
  const n = Number(nArg);
  installCleanupHandlers();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewise-icount-'));
  fs.chmodSync(dir, 0o755); // the origin's nginx worker reads its files from here
  try {
    const originPort = await freePort();
    fs.writeFileSync(path.join(dir, 'nginx.conf'), nginxOrigin(dir, originPort));
    const origin = startProcess('origin', '/usr/sbin/nginx', ['-c', path.join(dir, 'nginx.conf'), '-p', dir, '-e', path.join(dir, 'error.log')]);
    if (!(await waitForPort(originPort, 10_000, () => !origin.exited))) throw new Error(`origin nginx did not start: ${origin.problem() ?? ''}`);
    const port = await freePort();
    const out = path.join(dir, 'callgrind.out');
    // With ICOUNT_KEEP, V8 also writes its perf map (/tmp/perf-PID.map), kept beside the dumps to name the JIT code's addresses.
    const mapFlags = process.env.ICOUNT_KEEP ? ['--perf-basic-prof'] : [];
    // A peer (`floor`: the least a Node reverse proxy does; `native-layer`), counted the same way.
    const peer = PEERS[mode];
    const program = peer !== undefined ? [path.join(root, 'dist', 'bench', 'peers', peer), String(port), String(originPort)] : [path.join(root, 'bin', 'gatewise.js'), ...(await gatewiseArgs(mode, dir, port, originPort))];
    const args = ['--tool=callgrind', `--callgrind-out-file=${out}`, '--instr-atstart=no', '--separate-threads=yes', process.execPath, ...V8_FLAGS, ...mapFlags, ...program];
    const gw = startProcess('gatewise', 'valgrind', args, { cwd: root });
    if (!(await waitForPort(port, 300_000, () => !gw.exited))) throw new Error(`gatewise under valgrind did not listen: ${gw.problem() ?? ''}`);
    const ctl = (...flags: string[]): string => execFileSync('callgrind_control', [...flags, String(gw.pid)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: CONNECTIONS, pipelining: 1 });
    let bad = await load(pool, warm);
    ctl('-i', 'on');
    bad += await load(pool, 300);
    ctl('-z');
    const t0 = Date.now();
    bad += await load(pool, n);
    const seconds = (Date.now() - t0) / 1000;
    ctl('-d');
    await pool.close();
    const total = callgrindTotal(dir);
    // ICOUNT_KEEP=DIR keeps the dumps there, for callgrind_annotate.
    const keep = process.env.ICOUNT_KEEP;
    if (keep) {
      fs.mkdirSync(keep, { recursive: true });
      for (const f of fs.readdirSync(dir).filter((x) => x.startsWith('callgrind.out'))) fs.copyFileSync(path.join(dir, f), path.join(keep, f));
      const map = `/tmp/perf-${gw.pid}.map`;
      if (fs.existsSync(map)) fs.renameSync(map, path.join(keep, 'perf.map'));
    }
    process.stdout.write(`${JSON.stringify({ root, mode, warm, n, instructionsPerRequest: Math.round(total / n), countedSeconds: seconds, non200: bad, loadavg: os.loadavg()[0] })}\n`);
  } finally {
    await stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

runMain('icount', main);

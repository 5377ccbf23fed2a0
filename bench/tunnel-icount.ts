// Instructions per CONNECT tunnel of one proxy process under callgrind (issue 17): a count
// that the machine's load does not move, for bisecting the tunnel path (bench/icount.ts does
// the same for the reverse path).
//
//   node dist/bench/tunnel-icount.js CONTENDER [WARM] [N] [CALLGRIND_OUT]
//   CONTENDER: floor | floor-steps | gatewise | base   (base: the checkout in BENCH_BASELINE)
//   FLOOR_STEPS=... for floor-steps (bench/peers/connect-floor-steps.ts); NODE_EXTRA_FLAGS for V8 flags;
//   ICOUNT_ACCESS_LOG=1 counts Gatewise's default configuration (access log on) instead of the quiet build.
//
// The proxy runs under `valgrind --tool=callgrind --instr-atstart=no` with
// `--single-threaded --no-memory-reducer --no-flush-bytecode` (see icount.ts for why); WARM
// tunnels (default 3,000) warm it, 200 more with counting on, counters zeroed, N tunnels
// (default 1,000) counted and dumped. A tunnel: CONNECT, 200, GET /1k through it, close,
// 16 at once from this process (bench/tunnel-load.ts's probe), to a local nginx origin.
// Loopback only; every loop bounded by its count.
//
// Reading the figure: user-space instructions of every thread, kernel time not included
// (compare system calls with `strace -c -f`). Identical runs of the floor agree within 1 %.
// Gatewise needs ~20,000 tunnels of warm-up before TurboFan stops compiling, and a window of
// a few thousand tunnels may or may not hold a mark-compact: compare categories (callgrind_annotate)
// without GC and compiler, or use a long window.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { callgrindTotal } from './callgrind.js';
import { startOrigin } from './contenders.js';
import { installCleanupHandlers, runMain, startProcess, stopAll } from './procs.js';
import { probeTunnel, type TunnelLoadOptions } from './tunnel-load.js';
import { freePort, waitForPort } from './util.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const V8_FLAGS = ['--single-threaded', '--no-memory-reducer', '--no-flush-bytecode'];
const CONCURRENCY = 16;

function script(contender: string, port: number): string[] {
  // ICOUNT_ACCESS_LOG=1: the default configuration (access log on, to /dev/null), not the quiet build.
  const quiet = process.env.ICOUNT_ACCESS_LOG === '1' ? [] : ['--no-access-log'];
  const gw = (root: string): string[] => [path.join(root, 'bin', 'gatewise.js'), 'forward', '--listen', `127.0.0.1:${port}`, '--no-auth', '--allow-private', '--connect-ports', '1-65535', ...quiet];
  if (contender === 'floor') return [path.join(ROOT, 'dist', 'bench', 'peers', 'connect-floor.js'), String(port)];
  if (contender === 'floor-steps') return [path.join(ROOT, 'dist', 'bench', 'peers', 'connect-floor-steps.js'), String(port)];
  if (contender === 'gatewise') return gw(ROOT);
  if (contender === 'base' && process.env.BENCH_BASELINE) return gw(process.env.BENCH_BASELINE);
  throw new Error('usage: tunnel-icount floor|floor-steps|gatewise|base [WARM] [N] [OUT] (base needs BENCH_BASELINE)');
}

async function main(): Promise<void> {
  const [contender = '', warmArg = '3000', nArg = '1000', keep] = process.argv.slice(2);
  const warm = Number(warmArg);
  const n = Number(nArg);
  installCleanupHandlers();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewise-ticount-'));
  fs.chmodSync(dir, 0o755); // the origin's nginx worker reads its files from here
  try {
    const origin = await startOrigin(dir, '/usr/sbin/nginx', '0');
    const port = await freePort();
    const out = path.join(dir, 'callgrind.out');
    const extra = (process.env.NODE_EXTRA_FLAGS ?? '').split(' ').filter(Boolean);
    const args = ['--tool=callgrind', `--callgrind-out-file=${out}`, '--instr-atstart=no', process.execPath, ...V8_FLAGS, ...extra, ...script(contender, port)];
    const proc = startProcess(contender, 'valgrind', args, { cpus: '1' });
    if (!(await waitForPort(port, 300_000, () => !proc.exited))) throw new Error(`${contender} under valgrind did not listen: ${proc.problem() ?? ''}`);
    const ctl = (...flags: string[]): string => execFileSync('callgrind_control', [...flags, String(proc.pid)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const opts: TunnelLoadOptions = { proxyPort: port, protocol: 'connect', mode: 'per-tunnel', targetPort: origin.port, path: '/1k', concurrency: CONCURRENCY, durationS: 1 };
    const load = async (count: number): Promise<void> => {
      let left = count;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (left > 0) {
            left--;
            await probeTunnel(opts);
          }
        }),
      );
    };
    await load(warm);
    ctl('-i', 'on');
    await load(200);
    ctl('-z');
    const t0 = Date.now();
    await load(n);
    const seconds = (Date.now() - t0) / 1000;
    ctl('-d');
    const total = callgrindTotal(dir);
    const dumps = fs.readdirSync(dir).filter((x) => x.startsWith('callgrind.out'));
    if (keep !== undefined) fs.copyFileSync(path.join(dir, dumps.sort().at(-1)!), keep);
    process.stdout.write(`${JSON.stringify({ contender, steps: process.env.FLOOR_STEPS ?? '', warm, n, instructionsPerTunnel: Math.round(total / n), countedSeconds: seconds, loadavg: os.loadavg()[0] })}\n`);
  } finally {
    await stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

runMain('tunnel-icount', main);

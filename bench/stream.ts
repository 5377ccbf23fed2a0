// `npm run bench:stream`: one large stream over one connection through the reverse proxy,
// 1 GiB download and 1 GiB upload, for Gatewise, nginx and direct (no proxy), with the
// min–max over repeats. The client is curl; the origin is bench/peers/stream-origin.ts.
//
// Placement: curl and the origin on CPU 0, the proxy alone on CPU 1 (`taskset`), so the proxy's
// core is what limits it; "direct" is curl against the origin. Besides MiB/s (noisy when other
// work shares the machine) it reports the proxy's CPU seconds per GiB, which is steadier.
//
// Environment: STREAM_REPEATS (3), STREAM_MIB (1024), STREAM_CONTENDERS (direct,nginx,gatewise,gatewise-yg4[,gatewise-base];
// gatewise-yg4: Node started with --min-semi-space-size=4, as the Dockerfile and deploy/gatewise.service start it),
// BENCH_BASELINE (adds gatewise-base: a built checkout of an earlier commit), STREAM_DOCS (a markdown file for the table).
// Loopback only; every transfer is bounded by curl --max-time.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { installCleanupHandlers, startProcess, stopAll, trackChild, type Proc } from './procs.js';
import { treeCpuSeconds, treeRssKb } from './rss.js';
import { ensureTools, gitCommit } from './system.js';
import { envList, envNumber, freePort, log, median, waitForPort } from './util.js';
import { YOUNG_GENERATION_FLOOR_FLAG } from '../src/cli/young-generation.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const REPEATS = envNumber('STREAM_REPEATS', 3);
const MIB = envNumber('STREAM_MIB', 1024);
const BYTES = MIB * 2 ** 20;
const LOAD_CPU = '0';
const PROXY_CPU = '1';
const MAX_TIME_S = 120;

interface Running {
  port: number;
  proc: Proc | undefined;
}

function nginxStreamConfig(dir: string, port: number, origin: number): string {
  return `worker_processes 1;
daemon off;
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'error.log')} error;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${path.join(dir, 'tmp-body')};
  proxy_temp_path ${path.join(dir, 'tmp-proxy')};
  upstream origin { server 127.0.0.1:${origin}; keepalive 16; }
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 0;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_max_temp_file_size 0;
    }
  }
}
`;
}

async function launch(name: string, cmd: string, args: string[], port: number, cwd?: string): Promise<Running> {
  const proc = startProcess(name, cmd, args, { cpus: PROXY_CPU, ...(cwd ? { cwd } : {}) });
  if (!(await waitForPort(port, 10_000, () => !proc.exited))) {
    await proc.stop();
    throw new Error(`${name} did not start: ${proc.problem() ?? 'no output'}`);
  }
  return { port, proc };
}

const STARTERS: Record<string, (dir: string, origin: number) => Promise<Running>> = {
  direct: async (_dir, origin) => ({ port: origin, proc: undefined }),
  nginx: async (dir, origin) => {
    const d = path.join(dir, 'nginx');
    fs.mkdirSync(d, { recursive: true });
    const port = await freePort();
    fs.writeFileSync(path.join(d, 'nginx.conf'), nginxStreamConfig(d, port, origin));
    return launch('nginx', 'nginx', ['-c', path.join(d, 'nginx.conf'), '-p', d, '-e', path.join(d, 'error.log')], port);
  },
  gatewise: async (_dir, origin) => gatewiseAt(ROOT, 'gatewise', origin),
  // As the shipped launchers start it (Dockerfile ENTRYPOINT, deploy/gatewise.service): a 4 MiB floor under V8's young generation.
  'gatewise-yg4': async (_dir, origin) => gatewiseAt(ROOT, 'gatewise-yg4', origin, [YOUNG_GENERATION_FLOOR_FLAG]),
  'gatewise-base': async (_dir, origin) => {
    const base = process.env.BENCH_BASELINE;
    if (!base) throw new Error('gatewise-base needs BENCH_BASELINE');
    return gatewiseAt(base, 'gatewise-base', origin);
  },
};

async function gatewiseAt(root: string, name: string, origin: number, nodeFlags: string[] = []): Promise<Running> {
  const port = await freePort();
  return launch(name, process.execPath, [...nodeFlags, path.join(root, 'bin', 'gatewise.js'), 'proxy', '--listen', `127.0.0.1:${port}`, '--to', `http://127.0.0.1:${origin}`], port, root);
}

interface Transfer {
  bytes: number;
  seconds: number;
}

/** One curl transfer; resolves with the bytes moved and curl's total time. */
function curl(args: string[]): Promise<Transfer> {
  return new Promise((resolve, reject) => {
    const child = spawn('taskset', ['-c', LOAD_CPU, 'curl', '-sS', '--max-time', String(MAX_TIME_S), '-o', '/dev/null', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    trackChild(child);
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => { // 'close': all of stdout read (see wrk.ts)
      const [status, bytes, seconds] = out.trim().split(' ');
      if (code !== 0 || status !== '200') reject(new Error(`curl ${args.join(' ')}: exit ${code}, status ${status}: ${err.trim()}`));
      else resolve({ bytes: Number(bytes), seconds: Number(seconds) });
    });
  });
}

const download = (port: number): Promise<Transfer> => curl(['-w', '%{http_code} %{size_download} %{time_total}', `http://127.0.0.1:${port}/big?bytes=${BYTES}`]);
const upload = (port: number, file: string): Promise<Transfer> =>
  // `Expect:` off: curl would otherwise wait for a 100 Continue before a large body.
  curl(['-H', 'Expect:', '-T', file, '-w', '%{http_code} %{size_upload} %{time_total}', `http://127.0.0.1:${port}/upload`]);

interface Sample {
  mibs: number;
  /** Proxy CPU seconds per GiB moved (undefined for direct). */
  cpuPerGiB: number | undefined;
}

async function measure(r: Running, run: () => Promise<Transfer>): Promise<Sample> {
  const c0 = r.proc ? treeCpuSeconds(r.proc.pid) : 0;
  const t = await run();
  if (t.bytes !== BYTES) throw new Error(`moved ${t.bytes} bytes, expected ${BYTES}`);
  const cpu = r.proc ? treeCpuSeconds(r.proc.pid) - c0 : undefined;
  return { mibs: t.bytes / 2 ** 20 / t.seconds, cpuPerGiB: cpu === undefined ? undefined : cpu / (t.bytes / 2 ** 30) };
}

const range = (xs: number[], digits = 0): string => (xs.length ? `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}` : '—');

async function main(): Promise<void> {
  installCleanupHandlers();
  const tools = ensureTools();
  if (!tools.get('nginx')?.path) log('nginx not available: its rows are skipped');
  const ids = envList('STREAM_CONTENDERS') ?? ['direct', 'nginx', 'gatewise', 'gatewise-yg4', ...(process.env.BENCH_BASELINE ? ['gatewise-base'] : [])];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewise-stream-'));
  const file = path.join(dir, 'upload.bin');
  const block = Buffer.alloc(64 * 2 ** 20, 'u');
  const fd = fs.openSync(file, 'w');
  for (let left = BYTES; left > 0; left -= block.length) fs.writeSync(fd, block, 0, Math.min(left, block.length));
  fs.closeSync(fd);
  const results = new Map<string, { down: Sample[]; up: Sample[]; rssMiB?: number }>();
  try {
    const originPort = await freePort();
    const origin = startProcess('stream-origin', process.execPath, [path.join(ROOT, 'dist', 'bench', 'peers', 'stream-origin.js'), String(originPort)], { cpus: LOAD_CPU });
    if (!(await waitForPort(originPort, 10_000, () => !origin.exited))) throw new Error(`origin did not start: ${origin.problem()}`);
    for (const id of ids) {
      if (!STARTERS[id]) throw new Error(`STREAM_CONTENDERS: no contender ${id}; contenders are ${Object.keys(STARTERS).join(', ')}`);
      results.set(id, { down: [], up: [] });
    }
    for (let i = 0; i < REPEATS; i++) {
      // Interleaved: every contender once per round, the order rotated. A new process per
      // repeat: a Node process falls early into one of two GC regimes for a large stream
      // and mostly stays there (docs/benchmarks.md §37), so one process for every repeat
      // measured one draw of that, not its spread.
      const order = ids.map((_, k) => ids[(k + i) % ids.length]!);
      for (const id of order) {
        const r = await STARTERS[id]!(dir, originPort);
        // Warm-up: a short transfer.
        await curl(['-w', '%{http_code} %{size_download} %{time_total}', `http://127.0.0.1:${r.port}/big?bytes=${64 * 2 ** 20}`]);
        const d = await measure(r, () => download(r.port));
        const u = await measure(r, () => upload(r.port, file));
        const res = results.get(id)!;
        res.down.push(d);
        res.up.push(u);
        if (r.proc) {
          res.rssMiB = Math.max(res.rssMiB ?? 0, treeRssKb(r.proc.pid) / 1024);
          await r.proc.stop();
        }
        const cpu = (s: Sample): string => (s.cpuPerGiB === undefined ? '' : `, ${s.cpuPerGiB.toFixed(2)} CPU s/GiB`);
        log(`#${i + 1} ${id}: download ${d.mibs.toFixed(0)} MiB/s${cpu(d)}; upload ${u.mibs.toFixed(0)} MiB/s${cpu(u)}`);
      }
    }
  } finally {
    await stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const nginx = results.get('nginx');
  const lines = [
    `One stream of ${MIB} MiB over one connection, ${REPEATS} interleaved repeats, each on a new proxy process (min–max; median); curl and the origin on CPU ${LOAD_CPU}, the proxy alone on CPU ${PROXY_CPU}.`,
    '',
    '| contender | download MiB/s | upload MiB/s | download proxy CPU s/GiB | upload proxy CPU s/GiB | download vs nginx (median) | upload vs nginx (median) | proxy RSS after its transfers (largest), MiB |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const [id, r] of results) {
    const md = median(r.down.map((s) => s.mibs));
    const mu = median(r.up.map((s) => s.mibs));
    const cpus = (xs: Sample[]): number[] => xs.flatMap((s) => (s.cpuPerGiB === undefined ? [] : [s.cpuPerGiB]));
    const vs = (m: number, n: Sample[] | undefined): string => (n && id !== 'nginx' ? `${(m / median(n.map((s) => s.mibs))).toFixed(2)}×` : '—');
    lines.push(
      `| ${id} | ${range(r.down.map((s) => s.mibs))} (${md.toFixed(0)}) | ${range(r.up.map((s) => s.mibs))} (${mu.toFixed(0)}) | ${range(cpus(r.down), 2)} | ${range(cpus(r.up), 2)} | ${vs(md, nginx?.down)} | ${vs(mu, nginx?.up)} | ${r.rssMiB === undefined ? '—' : r.rssMiB.toFixed(0)} |`,
    );
  }
  const commit = await gitCommit();
  const table = `${lines.join('\n')}\n\n(${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}${commit ? `, commit ${commit.slice(0, 7)}` : ''}, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')})\n`;
  process.stdout.write(`\n${table}`);
  if (process.env.STREAM_DOCS) fs.writeFileSync(process.env.STREAM_DOCS, table);
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    process.stderr.write(`bench:stream: ${err instanceof Error ? err.message : String(err)}\n`);
    await stopAll();
    process.exit(1);
  },
);

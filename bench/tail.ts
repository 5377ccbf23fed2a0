// `npm run bench:tail`: latency at a fixed offered load, as a duel. Two contenders run on
// CPU 1 at the same time (with the origin), each loaded by its own wrk on CPU 0 at the same
// fixed rate (50 keep-alive connections, GET 1 KiB, one request per connection every
// TAIL_DELAY_MS ±50 %, i.e. ~2,000 req/s each at 25 ms), so both see the same machine: on a
// shared machine whose speed drifts, p99s taken minutes apart are not comparable.
// Reported per repeat: p50 and p99 of each, and the ratio of the p99s.
//
// Environment: TAIL_PAIRS (gatewise:nginx,gatewise-quiet:nginx), TAIL_SECONDS (10), TAIL_REPEATS (3),
// TAIL_DELAY_MS (25), BENCH_BASELINE (enables the gatewise-base* contenders), TAIL_DOCS (a markdown file for the table).
// Loopback only; every load bounded in time.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { verifyOrigin } from './checks.js';
import { CONTENDERS, startOrigin, type Running, type StartContext } from './contenders.js';
import { installCleanupHandlers, stopAll } from './procs.js';
import { ensureTools, gitCommit } from './system.js';
import { envList, envNumber, log, median } from './util.js';
import { runWrk, type WrkResult } from './wrk.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SECONDS = envNumber('TAIL_SECONDS', 10);
const REPEATS = envNumber('TAIL_REPEATS', 3);
const DELAY_MS = envNumber('TAIL_DELAY_MS', 25);

async function main(): Promise<void> {
  installCleanupHandlers();
  const pairs = (envList('TAIL_PAIRS') ?? ['gatewise:nginx', 'gatewise-quiet:nginx']).map((p) => p.split(':') as [string, string]);
  const tools = ensureTools();
  const nginx = tools.get('nginx')?.path;
  if (!nginx || !tools.get('wrk')?.path) throw new Error('needs nginx and wrk');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewise-tail-'));
  fs.chmodSync(dir, 0o755);
  for (const side of ['a', 'b']) fs.mkdirSync(path.join(dir, 'lua', side), { recursive: true });
  const rows: string[] = [];
  try {
    const origin = await startOrigin(dir, nginx, '1');
    await verifyOrigin(origin.port);
    const ctx: StartContext = { dir, root: ROOT, originPort: origin.port, origin: origin.proc, tools, cpus: '1' };
    const running = new Map<string, Running>();
    const get = async (id: string): Promise<Running> => {
      const have = running.get(id);
      if (have) return have;
      const c = CONTENDERS.find((x) => x.id === id);
      if (!c) throw new Error(`TAIL_PAIRS: no contender ${id}`);
      const r = await c.start(ctx);
      running.set(id, r);
      return r;
    };
    const load = (r: Running, side: string, s: number): Promise<WrkResult> =>
      runWrk({ port: r.port, connections: 50, durationS: s, request: { method: 'GET', path: '/1k', delayMs: DELAY_MS }, cpus: '0', scriptDir: path.join(dir, 'lua', side) });
    for (const [a, b] of pairs) {
      const ra = await get(a);
      const rb = await get(b);
      await Promise.all([load(ra, 'a', 3), load(rb, 'b', 3)]); // warm-up together
      const ratios: number[] = [];
      const cells: string[] = [];
      for (let i = 0; i < REPEATS; i++) {
        const [wa, wb] = await Promise.all([load(ra, 'a', SECONDS), load(rb, 'b', SECONDS)]);
        const ms = (us: number): string => (us / 1000).toFixed(2);
        ratios.push(wa.latencyUs.p99 / wb.latencyUs.p99);
        cells.push(`${ms(wa.latencyUs.p50)} / ${ms(wa.latencyUs.p99)} vs ${ms(wb.latencyUs.p50)} / ${ms(wb.latencyUs.p99)}`);
        log(`tail ${a} vs ${b} #${i + 1}: p50/p99 ${cells.at(-1)} ms (${Math.round(wa.requests / wa.durationS)} / ${Math.round(wb.requests / wb.durationS)} req/s) → p99 ratio ${ratios.at(-1)!.toFixed(2)}×`);
      }
      rows.push(`| ${a} vs ${b} | ${cells.join('; ')} | ${ratios.map((x) => x.toFixed(2)).join(', ')} | ${median(ratios).toFixed(2)}× |`);
    }
  } finally {
    await stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const commit = await gitCommit();
  const table = [
    `Fixed load, both contenders at once on CPU 1 (each ~${Math.round((50 * 1000) / DELAY_MS)} req/s from its own wrk on CPU 0), ${REPEATS} × ${SECONDS} s.`,
    '',
    '| pair | p50 / p99 ms, first vs second, each repeat | p99 ratio, each repeat | p99 ratio (median) |',
    '| --- | --- | --- | ---: |',
    ...rows,
    '',
    `(${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}${commit ? `, commit ${commit.slice(0, 7)}` : ''}, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')})`,
    '',
  ].join('\n');
  process.stdout.write(`\n${table}`);
  if (process.env.TAIL_DOCS) fs.writeFileSync(process.env.TAIL_DOCS, table);
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    process.stderr.write(`bench:tail: ${err instanceof Error ? err.message : String(err)}\n`);
    await stopAll();
    process.exit(1);
  },
);

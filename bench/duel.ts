// `npm run bench:duel`: only the duels of bench/duels.ts (two contenders on one core at
// the same time), written to docs/benchmarks-duel.md. `npm run bench` runs them too.
//
// Environment: DUEL_SECONDS (6), DUEL_REPEATS (3), DUEL_FRESH (1: both contenders started anew for each repeat;
// 0: once for all repeats and pairs), DUEL_PAIRS (a:b or a:b@load,… e.g. gatewise-quiet:nginx; default all),
// DUEL_DOCS (docs/benchmarks-duel.md). Needs nginx (origin), wrk; Squid for its pairs.
// Loopback only, every load bounded in time.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { verifyOrigin } from './checks.js';
import { startOrigin, type StartContext } from './contenders.js';
import { DUEL_LOADS, PAIRS, duelMethod, duelTable, runDuels, type Pair } from './duels.js';
import { installCleanupHandlers, stopAll } from './procs.js';
import { describeMachine, ensureTools, gitCommit } from './system.js';
import { envList, envNumber, log } from './util.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SECONDS = envNumber('DUEL_SECONDS', 6);
const REPEATS = envNumber('DUEL_REPEATS', 3);
const FRESH = envNumber('DUEL_FRESH', 1) !== 0;

function selectedPairs(): Pair[] {
  const want = envList('DUEL_PAIRS');
  if (!want) return PAIRS;
  // `a:b` selects every load of that pair; `a:b@load` one of them.
  return want.flatMap((w) => {
    const found = PAIRS.filter((x) => `${x.a}:${x.b}` === w || `${x.a}:${x.b}@${x.load}` === w);
    // Any two contenders on a named load, e.g. a pair swapped or an A/A control (`gatewise-quiet:gatewise-quiet#2@get-1k`).
    const adHoc = /^([\w-]+(?:#\d+)?):([\w-]+(?:#\d+)?)@([\w-]+)$/.exec(w);
    if (found.length === 0 && adHoc && (DUEL_LOADS as readonly string[]).includes(adHoc[3]!)) return [{ load: adHoc[3] as Pair['load'], a: adHoc[1]!, b: adHoc[2]!, reference: 'ad hoc pair' }];
    if (found.length === 0) throw new Error(`DUEL_PAIRS: no pair ${w}; pairs are ${PAIRS.map((x) => `${x.a}:${x.b}@${x.load}`).join(', ')}`);
    return found;
  });
}

async function main(): Promise<number> {
  installCleanupHandlers();
  const pairs = selectedPairs();
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
  let results;
  try {
    const origin = await startOrigin(dir, nginx, '1');
    await verifyOrigin(origin.port);
    const ctx: StartContext = { dir, root: ROOT, originPort: origin.port, origin: origin.proc, tools, cpus: '1' };
    results = await runDuels({ ctx, seconds: SECONDS, repeats: REPEATS, fresh: FRESH, loadCpu: '0', scriptDir, pairs });
  } finally {
    await stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const commit = await gitCommit();
  const m = describeMachine();
  const doc = [
    '# Duels',
    '',
    `Produced by \`npm run bench:duel\` (DUEL_SECONDS=${SECONDS}, DUEL_REPEATS=${REPEATS}, DUEL_FRESH=${FRESH ? 1 : 0}${process.env.DUEL_PAIRS ? `, DUEL_PAIRS=${process.env.DUEL_PAIRS}` : ''}) on ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}${commit ? ` at commit ${commit.slice(0, 7)}` : ''}. \`npm run bench\` runs the same duels after its interleaved rounds and judges the ratio targets on them ([benchmarks.md](benchmarks.md)).`,
    '',
    `**Machine:** ${m.cpus} cores, ${m.cpuModel}, Node ${process.version}.`,
    '',
    duelMethod(SECONDS, REPEATS, FRESH),
    '',
    duelTable(results),
    '',
    'The contenders are the ones of `npm run bench` (see its method section for their configurations).',
    '',
  ].join('\n');
  const out = process.env.DUEL_DOCS ?? path.join(ROOT, 'docs', 'benchmarks-duel.md');
  fs.writeFileSync(out, doc);
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

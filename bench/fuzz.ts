// `npm run fuzz`: the fuzz targets in test/fuzz/ for longer than the test suite runs them.
//
//   FUZZ_SECONDS  time per target (default 60)
//   FUZZ_SEED     base seed (default: random, printed first; give it back to replay the run)
//   FUZZ_CASES    cases per target instead of a time budget
//   FUZZ_CASE     one case index only (with FUZZ_SEED: replay one failure)
//   FUZZ_FILES    a comma-separated subset of test/fuzz/*.test.ts, e.g. "parsers,gateway-head"
//
// Each target stops at its time budget or case count; the whole run is killed after
// (targets × FUZZ_SECONDS + 5 min) in any case.
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dir = path.join(here, '..', 'test', 'fuzz');
const only = process.env.FUZZ_FILES?.split(',').map((s) => s.trim()).filter(Boolean);
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.test.js'))
  .filter((f) => !only || only.includes(f.replace(/\.test\.js$/, '')))
  .sort()
  .map((f) => path.join(dir, f));
const seconds = Number(process.env.FUZZ_SECONDS ?? 60);
const seed = process.env.FUZZ_SEED ?? String(randomInt(1, 2 ** 31));
const env: NodeJS.ProcessEnv = { ...process.env, FUZZ_SECONDS: String(seconds), FUZZ_SEED: seed };
// Six targets run on time budgets (see test/fuzz/*.test.ts); the rest are quick.
const capMs = (8 * seconds + 300) * 1000;
process.stdout.write(`fuzz: FUZZ_SEED=${seed} FUZZ_SECONDS=${seconds}${env.FUZZ_CASES ? ` FUZZ_CASES=${env.FUZZ_CASES}` : ''} over ${files.length} files\n`);
const child = spawn(process.execPath, ['--test', '--test-concurrency=1', ...files], { env, stdio: 'inherit' });
const killer = setTimeout(() => child.kill('SIGKILL'), capMs);
child.on('exit', (code, signal) => {
  clearTimeout(killer);
  process.stdout.write(`fuzz: ${code === 0 ? 'no failures' : `failed (${signal ?? code})`}; replay with FUZZ_SEED=${seed}\n`);
  process.exit(code ?? 1);
});

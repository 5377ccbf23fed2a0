import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const MODULE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/malloc-tuning.js');

/**
 * The malloc tuning's Brotli call needs a 15 MiB input, and that input used to stay alive
 * (and resident: Brotli reads every page of it) until V8's next garbage collection, which an
 * idle gateway may not have for a long time: ~15 MiB of the idle RSS. Measured in a fresh
 * process each time (one call per process), over several runs, since RSS depends on what
 * else the process did.
 */
test('the malloc tuning leaves no large buffer behind once it resolves (idle RSS)', { skip: process.platform !== 'linux', timeout: 60_000 }, () => {
  const script = `
    const { raiseMallocTrimThreshold } = await import(${JSON.stringify(MODULE)});
    const mib = (x) => x / 1048576;
    const before = process.memoryUsage();
    await raiseMallocTrimThreshold();
    const after = process.memoryUsage();
    process.stdout.write(JSON.stringify({ rss: mib(after.rss - before.rss), arrayBuffers: mib(after.arrayBuffers - before.arrayBuffers) }));
  `;
  // The tuning is skipped when the operator set either variable: not here.
  const env = { ...process.env };
  delete env.MALLOC_TRIM_THRESHOLD_;
  delete env.MALLOC_TOP_PAD_;
  for (let run = 0; run < 3; run++) {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env });
    const m = JSON.parse(out) as { rss: number; arrayBuffers: number };
    assert.ok(m.arrayBuffers < 1, `run ${run}: ${m.arrayBuffers.toFixed(1)} MiB of array buffers still held after the tuning`);
    assert.ok(m.rss < 6, `run ${run}: RSS grew by ${m.rss.toFixed(1)} MiB across the tuning`);
  }
});

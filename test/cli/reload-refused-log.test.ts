import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import test from 'node:test';
import { loadConfigFile, problemLine } from '../../src/config/load.js';
import { startRuntime } from '../../src/cli/runtime.js';
import { createLogger } from '../../src/observe/access-log.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * Finding (newcomer walk-through): a SIGHUP reload of a file with a YAML syntax error logged
 * `"problems":["line 42 : Flow sequence in block collection must be …"]`: no file, no column,
 * an empty path before the colon. `gatewise check` says the same problem as
 * `FILE:42:1  (root): Flow sequence …`. The reload's refusal line now says each problem in
 * check's words (`problemLine`), so what an operator greps for after a refused reload is
 * what check printed.
 *
 * Seeded: a good file, then bad ones (a YAML syntax error at a seeded line, a mistyped key, a
 * route to an unknown cluster), each reloaded; the refusal's problems are check's lines.
 */

const GOOD = (port: number) => `listeners:\n  - address: 127.0.0.1\n    port: 0\nclusters:\n  app:\n    endpoints: ["http://127.0.0.1:${port}"]\nroutes:\n  - cluster: app\n`;

test('a refused reload logs each problem as check prints it (file:line:column  path: message)', async () => {
  const rand = seededRandom();
  await withSeed(rand, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatewise-reload-log-'));
    const file = join(dir, 'gw.yaml');
    const lines: string[] = [];
    const logger = createLogger({ destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
    writeFileSync(file, GOOD(1 + rand.int(60000)));
    const rt = await startRuntime(await loadConfigFile(file), { configFile: file, probeUpstreams: false, logger });
    try {
      const blank = '\n'.repeat(rand.int(5));
      const bad = [
        `${blank}${GOOD(1)}garbage: [\n`,
        GOOD(1).replace('endpoints', 'endpoint'),
        GOOD(1).replace('cluster: app', 'cluster: ap'),
      ];
      for (const text of bad) {
        writeFileSync(file, text);
        const r = await rt.reload();
        assert.equal(r.ok, false);
        if (r.ok) continue;
        assert.ok(r.problems.length > 0);
        const refused = lines.map((l) => JSON.parse(l) as { event?: string; problems?: string[] }).filter((l) => l.event === 'reload-refused').at(-1);
        assert.ok(refused, 'a reload-refused line');
        assert.deepEqual(refused.problems, r.problems.map((p) => problemLine(p, file)));
        for (const p of refused.problems!) assert.match(p, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+  \\S+: `), p);
      }
    } finally {
      await rt.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

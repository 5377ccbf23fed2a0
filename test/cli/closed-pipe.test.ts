import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { BIN } from '../helpers/gatewise-process.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { GUARD_MS } from '../helpers/time-bounds.js';

/**
 * Finding (newcomer walk-through): `gatewise schema | head` (the schema is about 150 KB, more
 * than a pipe holds) died on the reader's close with Node's "Unhandled 'error' event … write
 * EPIPE" stack and exit 1. A reader that stops reading is not a failure of the command: a
 * one-shot command that prints (schema, help) ends quietly with 0 when its standard output is
 * closed under it, as `cat` and `grep` do for `| head`.
 *
 * The reader takes a seeded number of bytes (less than the output), then closes the pipe.
 */

/** `gatewise ARGS | head -c N` in bash (a real pipe: a child's stdio 'pipe' is a socket pair whose buffer holds the whole schema): the command's exit code and stderr. */
async function intoHead(args: string[], n: number): Promise<{ code: number; stderr: string }> {
  const line = `"$0" "$1" ${args.join(' ')} 2>&3 | head -c ${n} >/dev/null; exit \${PIPESTATUS[0]}`;
  const child = spawn('bash', ['-c', line, process.execPath, BIN], { stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });
  let stderr = '';
  (child.stdio[3] as NodeJS.ReadableStream).on('data', (c: Buffer) => (stderr += c.toString()));
  const guard = setTimeout(() => child.kill('SIGKILL'), GUARD_MS);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(guard);
  return { code: code ?? -1, stderr };
}

test('gatewise schema | head: the closed pipe ends it quietly, exit 0, no stack (seeded bytes read before the close)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  await withSeed(rand, async () => {
    for (let round = 0; round < 3; round++) {
      const n = 1 + rand.int(60_000);
      const r = await intoHead(['schema'], n);
      assert.equal(r.code, 0, `round ${round} (head -c ${n}): exit ${r.code}, stderr ${r.stderr}`);
      assert.equal(r.stderr, '', `round ${round}`);
    }
  });
});

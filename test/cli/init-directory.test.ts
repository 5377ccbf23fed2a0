import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Finding (newcomer audit): `gatewise init -c DIR --force`, DIR a directory, wrote its config
 * beside DIR as `DIR.<pid>.init.tmp`, then failed to rename it onto the directory with a bare
 * "gatewise: EISDIR: illegal operation on a directory, rename …", exit 1, and left the
 * temporary file behind; without --force it said "DIR exists; --force overwrites it", which
 * --force then did not. A --config or --users that names a directory is now a usage error
 * naming the flag and the directory (exit 2), and nothing is written.
 *
 * Every combination: the config or the users file a directory, with and without --force,
 * with --to, --proxy or both.
 */

const BIN = fileURLToPath(new URL('../../../bin/gatewise.js', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'gatewise-init-dir-'));
after(() => rmSync(root, { recursive: true, force: true }));

function cli(cwd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 30000, cwd }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** Every file and directory under `dir`, relative, sorted. */
function tree(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).sort();
}

const cases: Array<{ which: 'config' | 'users'; kind: string[]; force: boolean }> = [];
for (const which of ['config', 'users'] as const) {
  for (const kind of [['--to', 'http://127.0.0.1:3000'], ['--proxy'], ['--to', 'http://127.0.0.1:3000', '--proxy']]) {
    if (which === 'users' && !kind.includes('--proxy')) continue;
    for (const force of [false, true]) cases.push({ which, kind, force });
  }
}

test('gatewise init with --config or --users naming a directory: exit 2, the flag and the directory named, nothing written (every combination)', { timeout: 300_000 }, async () => {
  let n = 0;
  for (const c of cases) {
    const cwd = join(root, `case-${n++}`);
    mkdirSync(join(cwd, 'dir', 'inside'), { recursive: true });
    const args = ['init', ...c.kind, ...(c.force ? ['--force'] : [])];
    if (c.which === 'config') args.push('-c', 'dir');
    else args.push('-c', 'gatewise.yaml', '--users', './dir');
    const before = tree(cwd);
    const r = await cli(cwd, args);
    const what = `gatewise ${args.join(' ')}`;
    assert.equal(r.code, 2, `${what}: exit ${r.code}\n${r.stdout}${r.stderr}`);
    assert.equal(r.stdout, '', what);
    const flag = c.which === 'config' ? '--config' : '--users';
    assert.match(r.stderr, new RegExp(`^gatewise init: ${flag} ${join(cwd, 'dir').replace(/[/.]/g, '\\$&')} is a directory; `), what);
    assert.deepEqual(tree(cwd), before, `${what}: files left behind`);
  }
});

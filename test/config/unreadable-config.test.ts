import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Finding (newcomer audit): `gatewise check -c conf.d` (a directory) said "cannot read the
 * file (EISDIR)" and a mistyped name "cannot read the file (ENOENT)": errno codes a newcomer
 * has to look up. The code stays (scripts match it) and the words follow it, for the config
 * file and for a users file it names.
 */

const BIN = fileURLToPath(new URL('../../../bin/gatewise.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'gatewise-unreadable-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function check(file: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'check', '-c', file], { timeout: 30000, cwd: dir }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('gatewise check -c on a missing file or a directory: exit 1, the file, the code and what it means', async () => {
  mkdirSync(join(dir, 'conf.d'));
  for (const [file, says] of [
    ['missing.yaml', 'missing.yaml  (root): cannot read the file (ENOENT): no such file'],
    ['conf.d', 'conf.d  (root): cannot read the file (EISDIR): it is a directory, not a file'],
  ] as const) {
    const r = await check(file);
    assert.equal(r.code, 1, file);
    assert.ok(r.stderr.includes(says), `${file}: ${r.stderr}`);
  }
});

test('a users file that is missing or a directory: the file, the code and what it means', async () => {
  mkdirSync(join(dir, 'users.d'));
  for (const [users, says] of [
    ['no-users.yaml', 'cannot be read (ENOENT): no such file'],
    ['users.d', 'cannot be read (EISDIR): it is a directory, not a file'],
  ] as const) {
    writeFileSync(join(dir, 'p.yaml'), `forward:\n  listeners: [{ port: 3128 }]\n  auth:\n    usersFile: ${join(dir, users)}\n`);
    const r = await check('p.yaml');
    assert.equal(r.code, 1, users);
    assert.ok(r.stderr.includes(`users file ${join(dir, users)} ${says}`), `${users}: ${r.stderr}`);
  }
});

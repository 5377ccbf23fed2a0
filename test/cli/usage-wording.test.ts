import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { COMMANDS, shortUsage } from '../../src/cli/commands.js';

/**
 * Finding (newcomer audit): a refused command line of a command without options
 * (`gatewise passwd a b`, `gatewise schema extra`) ended with "'gatewise passwd --help' says
 * more.", odd words beside the other commands' "describes every option". Every command's
 * short usage now ends with a sentence that says what its --help describes: every option, or,
 * for a command that has none, the command.
 */

const BIN = fileURLToPath(new URL('../../../bin/gatewise.js', import.meta.url));

test('the short usage of every command ends with what its --help describes, in words that say it', () => {
  const optionless = COMMANDS.filter((d) => d.options.length === 0);
  assert.ok(optionless.some((d) => d.name === 'passwd'), 'passwd has no options (the case the finding is about)');
  for (const def of COMMANDS) {
    const last = shortUsage(def).trimEnd().split('\n').at(-1)!;
    const expected = def.options.length > 0 ? 'describes every option' : 'describes the command';
    assert.equal(last, `'gatewise ${def.name} --help' ${expected}.`, def.name);
  }
});

test('gatewise passwd with two passwords: exit 2, the reason, the usage and what --help describes', async () => {
  const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const child = execFile(process.execPath, [BIN, 'passwd', 'one', 'two'], { timeout: 15000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    child.stdin!.end();
  });
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, "gatewise passwd: one password at most\nusage: gatewise passwd [PASSWORD]\n'gatewise passwd --help' describes the command.\n");
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { COMMANDS, answerUsage, parseCommand, type CommandDef } from '../../src/cli/commands.js';
import { editDistance } from '../../src/text/index.js';
import { seededRandom, withSeed, type Rand } from '../helpers/seeded.js';

/**
 * Finding (newcomer walk-through): a mistyped flag (`gatewise run --worker 2 -c FILE`) got the
 * argument parser's own words, `Unknown option '--worker'`, with no hint, while a mistyped
 * config key names the key and the nearest right one ("did you mean"). Now an unknown flag is
 * said as the config's typos are: `unknown option --worker (did you mean --workers?)`, a usage
 * error (exit 2; diagnose 64) with the usage after it.
 *
 * Every long flag of every command, seeded typos (a letter dropped, doubled, swapped with the
 * next, a final "s" added), each closer to its flag than to any other of the command.
 */

function typo(flag: string, rand: Rand): string {
  const i = rand.int(flag.length);
  switch (rand.int(4)) {
    case 0:
      return flag.length > 3 ? flag.slice(0, i) + flag.slice(i + 1) : `${flag}s`;
    case 1:
      return flag.slice(0, i + 1) + flag[i] + flag.slice(i + 1);
    case 2:
      return i < flag.length - 1 && flag[i] !== flag[i + 1] ? flag.slice(0, i) + flag[i + 1] + flag[i] + flag.slice(i + 2) : `${flag}s`;
    default:
      return `${flag}s`;
  }
}

function refusal(def: CommandDef, argv: string[]): { code: number | undefined; errOut: string; out: string } {
  let err: unknown;
  try {
    parseCommand(def, argv);
  } catch (e) {
    err = e;
  }
  assert.ok(err !== undefined, `gatewise ${def.name} ${argv.join(' ')}: accepted`);
  let out = '';
  let errOut = '';
  const code = answerUsage(def, err, { write: (s) => (out += s) }, { write: (s) => (errOut += s) });
  return { code, errOut, out };
}

test('a mistyped flag is named with the nearest flag of its command (every command, seeded typos)', async () => {
  const rand = seededRandom();
  await withSeed(rand, async () => {
    let checked = 0;
    for (const def of COMMANDS) {
      const flags = def.options.map((o) => o.flag).filter((f) => f !== 'help');
      const all = [...flags, 'help'];
      for (const flag of flags) {
        for (let k = 0; k < 3; k++) {
          const t = typo(flag, rand);
          // Only typos that are no flag and are nearer this flag than any other one.
          if (all.includes(t)) continue;
          const d = editDistance(t, flag);
          if (all.some((f) => f !== flag && editDistance(t, f) <= d)) continue;
          const { code, errOut, out } = refusal(def, [`--${t}`]);
          const what = `gatewise ${def.name} --${t}: ${errOut}`;
          assert.equal(code, def.usageExit ?? 2, what);
          assert.equal(out, '', what);
          assert.ok(errOut.startsWith(`gatewise ${def.name}: unknown option --${t} (did you mean --${flag}?)\nusage: gatewise ${def.name}`), what);
          checked++;
        }
      }
    }
    assert.ok(checked >= 40, `only ${checked} typos checked`);
  });
});

test('a flag near none of its command is named without a guess, and with the value it was given', () => {
  const run = COMMANDS.find((c) => c.name === 'run')!;
  const r = refusal(run, ['-c', 'gatewise.yaml', '--frobnicate-everything']);
  assert.equal(r.code, 2);
  assert.ok(r.errOut.startsWith('gatewise run: unknown option --frobnicate-everything\nusage: gatewise run'), r.errOut);
  const withValue = refusal(run, ['-c', 'gatewise.yaml', '--worker=2']);
  assert.ok(withValue.errOut.startsWith('gatewise run: unknown option --worker (did you mean --workers?)\n'), withValue.errOut);
});

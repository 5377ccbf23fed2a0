import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { COMMANDS, readmeCli, readmeCliBlock, topHelp, type CommandDef } from '../../src/cli/commands.js';
import { forwardConfigFromArgs } from '../../src/cli/forward.js';
import { proxyConfig } from '../../src/cli/main.js';

const BIN = fileURLToPath(new URL('../../../bin/gatewise.js', import.meta.url));
const README = new URL('../../../README.md', import.meta.url);

function run(args: string[], input = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [BIN, ...args], { timeout: 15000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    child.stdin!.end(input);
  });
}

function flagsOf(def: CommandDef): string[] {
  return def.options.flatMap((o) => [`--${o.flag}`, ...(o.short ? [`-${o.short}`] : [])]);
}

test('README: the CLI block is the synopsis the command definitions render', () => {
  const block = readmeCliBlock(readFileSync(README, 'utf8'));
  assert.ok(block, 'README.md has a ``` block under "## CLI"');
  assert.equal(
    block.body,
    readmeCli(),
    'README.md\'s CLI block differs from the command definitions (src/cli/commands.ts); regenerate it with: npx tsc -p . && node dist/src/cli/commands.js --update-readme',
  );
});

test('README: the CLI block ends with the notes `gatewise help` ends with (durations, exit codes), from the same definition', () => {
  const block = readmeCliBlock(readFileSync(README, 'utf8'));
  assert.ok(block);
  // What `gatewise help` says after the commands' synopsis: the README said exit 2 for every
  // bad command line in words of its own, and diagnose's is 64.
  const help = topHelp();
  const notes = help.slice(help.indexOf('\n\n', help.indexOf('gatewise help | --version')) + 2);
  assert.match(notes, /Exit codes:/);
  assert.ok(block.body.endsWith(notes), `README.md's CLI block does not end with the help's notes:\n${notes}`);
});

test('gatewise COMMAND --help and -h: exit 0, the help on stdout, every option of the command named', { timeout: 120_000 }, async () => {
  for (const def of COMMANDS) {
    for (const h of ['--help', '-h']) {
      const r = await run([def.name, h]);
      assert.equal(r.code, 0, `${def.name} ${h}: exit ${r.code}, stderr ${r.stderr}`);
      assert.equal(r.stderr, '', `${def.name} ${h}`);
      assert.match(r.stdout, new RegExp(`^usage: gatewise ${def.name}\\b`), `${def.name} ${h}`);
      for (const f of [...flagsOf(def), '--help']) assert.ok(r.stdout.includes(f), `${def.name} ${h} does not mention ${f}:\n${r.stdout}`);
    }
  }
});

test('gatewise help names every command and every option (lab and demo included)', async () => {
  const r = await run(['help']);
  assert.equal(r.code, 0);
  for (const def of COMMANDS) {
    assert.match(r.stdout, new RegExp(`gatewise ${def.name}\\b`));
    // The synopsis names an option by its short alias when it has one (-c FILE).
    for (const o of def.options) {
      const f = o.short ? `-${o.short}` : `--${o.flag}`;
      assert.ok(r.stdout.includes(f), `help does not mention ${def.name} ${f}`);
    }
  }
});

test('an unknown option: exit 2, the reason and the command\'s usage on stderr, for every command', { timeout: 120_000 }, async () => {
  for (const def of COMMANDS) {
    const r = await run([def.name, '--frobnicate']);
    // diagnose keeps 2 for "your side fails" and refuses a command line with 64 (EX_USAGE).
    assert.equal(r.code, def.usageExit ?? 2, `${def.name}: exit ${r.code}, stdout ${r.stdout.slice(0, 200)}`);
    assert.equal(r.stdout, '', def.name);
    assert.match(r.stderr, new RegExp(`^gatewise ${def.name}: unknown option --frobnicate\n`), def.name);
    assert.ok(r.stderr.includes(`usage: gatewise ${def.name}`), `${def.name}: no usage in ${r.stderr}`);
  }
});

test('a missing required option names it and shows the usage', async () => {
  const r = await run(['check']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /-c FILE is required/);
  assert.match(r.stderr, /usage: gatewise check -c FILE/);
});

test('proxy without --listen listens on 127.0.0.1:8080, as its help says', async () => {
  const { config } = proxyConfig(['--to', 'http://127.0.0.1:1']);
  assert.deepEqual(config.listeners, [{ address: '127.0.0.1', port: 8080 }]);
  const help = await run(['proxy', '--help']);
  assert.match(help.stdout, /\[--listen ADDR:PORT\]/);
  assert.match(help.stdout, /--listen ADDR:PORT +where to listen \(default 127\.0\.0\.1:8080\)/);
});

test('proxy: a config problem is said as the flag the user typed (exit 2)', async () => {
  const r = await run(['proxy', '--listen', '127.0.0.1:0', '--to', 'http://127.0.0.1:1', '--to', '127.0.0.1:30300']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /^gatewise proxy: --to 127\.0\.0\.1:30300: must be an http:\/\/ or https:\/\/ URL, e\.g\. http:\/\/127\.0\.0\.1:30300\n/);
  assert.doesNotMatch(r.stderr, /clusters\.|endpoints/);
  assert.match(r.stderr, /usage: gatewise proxy/);
});

test('proxy: every --to problem names the --to as typed, without credentials or config paths', async () => {
  const { validateConfig, ConfigError } = await import('../../src/config/load.js');
  const { command, optionsError } = await import('../../src/cli/commands.js');
  const tos = ['http://127.0.0.1:99999', 'https://h/x', 'http://u:topsecret@h:1', 'ftp://h:1'];
  const { config } = proxyConfig(tos.flatMap((t) => ['--to', t]));
  let err: unknown;
  try {
    validateConfig(config);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ConfigError);
  const message = optionsError(command('proxy'), err.problems, config).message;
  assert.equal(
    message,
    [
      '4 problems:',
      '  --to http://127.0.0.1:99999: is not a valid URL (the port is 1-65535), e.g. http://127.0.0.1:3000',
      '  --to https://h/x: must be scheme://host[:port] only (no path, query or credentials)',
      '  --to http://…@h:1: must be scheme://host[:port] only (no path, query or credentials)',
      '  --to ftp://h:1: must be an http:// or https:// URL, not ftp://, e.g. http://h:1',
    ].join('\n'),
  );
  const none = await run(['proxy']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /^gatewise proxy: --to URL is required \(e\.g\. --to http:\/\/127\.0\.0\.1:3000\)/);
});

test('forward: --http-ports sets forward.rules.httpPorts (absent: the schema default)', async () => {
  const set = await forwardConfigFromArgs(['--user', 'a:b', '--http-ports', '80, 8000-8999']);
  assert.deepEqual(set.rules?.httpPorts, [80, '8000-8999']);
  const unset = await forwardConfigFromArgs(['--user', 'a:b']);
  assert.equal(unset.rules?.httpPorts, undefined);
});

test('forward: config problems are said as --no-auth, --user, --egress, --via, --connect-ports, --http-ports', async () => {
  await assert.rejects(forwardConfigFromArgs(['--listen', '127.0.0.1:0']), (err: Error) => {
    assert.match(err.message, /^--user: no users: give --user NAME:PASSWORD \(repeatable\), or --no-auth/);
    assert.doesNotMatch(err.message, /auth\.required|auth\.users/);
    return true;
  });
  await assert.rejects(forwardConfigFromArgs(['--user', 'a:b', '--egress', '127.0.0.2,not-an-ip']), /: --egress not-an-ip: expected a local IP address$/);
  await assert.rejects(forwardConfigFromArgs(['--user', 'a:b', '--via', 'ftp://u:topsecret@h:1']), (err: Error) => {
    assert.match(err.message, /^--via ftp:\/\/…@h:1: expected a proxy URL/);
    assert.ok(!err.message.includes('topsecret'));
    return true;
  });
  await assert.rejects(forwardConfigFromArgs(['--user', 'a:b', '--connect-ports', '443,0']), /: --connect-ports 0: expected a port \(1-65535\)/);
  await assert.rejects(forwardConfigFromArgs(['--user', 'a:b', '--http-ports', '80,0']), /: --http-ports 0: expected a port \(1-65535\)/);
  await assert.rejects(forwardConfigFromArgs(['--user', 'a:b', '--session-ttl', 'forever', '--egress', '127.0.0.2']), /: --session-ttl forever: expected a duration/);
  await assert.rejects(forwardConfigFromArgs(['--user', 'a:b', '--user', 'a:c']), (err: Error) => {
    assert.match(err.message, /^--user \(name\): duplicate user a/);
    assert.ok(!err.message.includes('scrypt'), 'no password hash echoed');
    return true;
  });
  // Flags that would do nothing are said, not dropped (finding, session 29).
  await assert.rejects(forwardConfigFromArgs(['--no-auth', '--session-ttl', '5m']), /--session-ttl needs --egress or --via/);
  await assert.rejects(forwardConfigFromArgs(['--no-auth', '--user', 'bob:pw']), /--user and --no-auth together/);
  // An address that is not this host's is refused at start, naming the flag (192.0.2.0/24 is TEST-NET-1).
  await assert.rejects(forwardConfigFromArgs(['--user', 'a:b', '--egress', '127.0.0.2,192.0.2.199']), /: --egress 192\.0\.2\.199: not an address of this host/);
  const foreign = await run(['forward', '--listen', '127.0.0.1:0', '--user', 'a:b', '--egress', '192.0.2.199']);
  assert.equal(foreign.code, 2);
  assert.match(foreign.stderr, /^gatewise forward: --egress 192\.0\.2\.199: not an address of this host/);
  // Several are listed as every other set of problems is: counted, one per indented line.
  const two = await run(['forward', '--listen', '127.0.0.1:0', '--user', 'a:b', '--egress', '192.0.2.198,192.0.2.199']);
  assert.equal(two.code, 2);
  assert.match(two.stderr, /^gatewise forward: 2 problems:\n {2}--egress 192\.0\.2\.198: not an address of this host[^\n]*\n {2}--egress 192\.0\.2\.199: not an address of this host/);
  const r = await run(['forward', '--listen', '127.0.0.1:0', '--user', 'a:b', '--egress', 'nowhere']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^gatewise forward: --egress nowhere: expected a local IP address\n/);
  assert.match(r.stderr, /usage: gatewise forward/);
});

test('schema --help is the help, not the schema', async () => {
  const r = await run(['schema', '--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^usage: gatewise schema/);
  assert.doesNotMatch(r.stdout, /"\$schema"|"properties"/);
});

test('gatewise help COMMAND is the command\'s help; a missing value or a stray argument is said plainly', async () => {
  const h = await run(['help', 'lab']);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /^usage: gatewise lab/);
  assert.match(h.stdout, /--host ADDR +address to listen on \(default 127\.0\.0\.1\)/);
  const missing = await run(['run', '-c']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^gatewise run: -c needs a value \(FILE\)\nusage: gatewise run -c FILE/);
  const stray = await run(['check', 'gatewise.yaml']);
  assert.equal(stray.code, 2);
  assert.match(stray.stderr, /^gatewise check: unexpected argument 'gatewise\.yaml'/);
});

test('gatewise lab: a number flag out of its range is a usage error naming the flag (exit 2), before anything listens', async () => {
  // Finding (session 29): `lab --port 70000` answered the lab's own error ("options.port should be …") with exit 1.
  const cases: Array<[string[], RegExp]> = [
    [['--port', '70000'], /--port expects a whole number from 0 to 65535, got "70000"/],
    [['--port=-1'], /--port expects a whole number/],
    [['--capacity', '0'], /--capacity expects a whole number from 1, got "0"/],
    [['--max-requests', '0'], /--max-requests expects a whole number from 1, got "0"/],
    [['--queue', '1.5'], /--queue expects a whole number from 0, got "1\.5"/],
  ];
  for (const [args, message] of cases) {
    const r = await run(['lab', ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.match(r.stderr, /usage: gatewise lab/);
  }
});

/**
 * Finding (review of session 37): `gatewise help` said durations need a unit, but lab's
 * `--keep-alive-timeout MS` and `--idle-close MIN-MAX` take bare milliseconds (the README shows
 * `--keep-alive-timeout 5000`). The note is now made from the definitions: each option that takes
 * a time says its `unit`, and the note names the value names of each kind.
 */
test('the help\'s note on durations names the flags it applies to, and the millisecond flags apart, from the one command definition', () => {
  const help = topHelp();
  const timeWords = /timeout|ttl|milliseconds|\bms\b|how long|time to|longest/i;
  const kinds = { duration: new Set<string>(), ms: new Set<string>() };
  for (const c of COMMANDS) {
    for (const o of c.options) {
      const unit = (o as { unit?: 'duration' | 'ms' }).unit;
      if (o.type === 'string' && timeWords.test(`${o.flag} ${o.description}`)) assert.ok(unit !== undefined, `${c.name} --${o.flag} takes a time but says no unit`);
      if (unit === undefined) continue;
      kinds[unit].add(o.value!);
      if (o.default !== undefined) assert.match(o.default, unit === 'ms' ? /^\d+$/ : /^\d+(ms|s|m|h)$/, `${c.name} --${o.flag}'s default`);
    }
  }
  assert.ok(kinds.duration.size > 0 && kinds.ms.size > 0);
  for (const v of kinds.duration) assert.ok(!kinds.ms.has(v), `${v} names both kinds`);
  const durations = /Durations \(([^)]*)\): 250ms, 2s, 1m, 1h \(a number needs its unit\)/.exec(help);
  assert.ok(durations, help);
  assert.deepEqual(new Set(durations[1]!.split(', ')), kinds.duration);
  const ms = /;\n([A-Z, -]+): milliseconds, a bare number/.exec(help);
  assert.ok(ms, help);
  assert.deepEqual(new Set(ms[1]!.split(', ')), kinds.ms);
});

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkConfigText, isLocalAddress } from '../../src/config/check.js';

const BIN = fileURLToPath(new URL('../../../bin/gatewise.js', import.meta.url));
const CA = fileURLToPath(new URL('../../../src/lab/certs/ca.pem', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'gatewise-check-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 15000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const HASH = 'scrypt$16384$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g=';

test('check lists type errors, unknown keys (with "did you mean") and reference errors at once, sorted by line', () => {
  const text = [
    'listeners:',
    '  - port: "eighty"', // 2: a type error (invalid_type aborts zod's own refinements)
    '    adress: 127.0.0.1', // 3: a typo
    'clusters:',
    '  api:',
    '    endpoints: ["127.0.0.1:3000"]', // 6: no scheme
    '    timeout: { connect: 1s }', // 7: timeouts
    'routes:',
    '  - cluster: apl', // 9: no such cluster
    'forward:',
    '  auth: { users: [{ name: bob, password: "' + HASH + '", plan: gold }] }', // 11: no such plan
    '  egress: { defaultPool: home }', // 12: no such pool
  ].join('\n');
  const r = checkConfigText(text, 'c.yaml', { host: false });
  assert.equal(r.config, undefined);
  const lines = r.problems.map((p) => `${p.line} ${p.path}: ${p.message}`);
  assert.deepEqual(
    lines.map((l) => l.split(':')[0]),
    ['2 listeners[0].port', '3 listeners[0].adress', '6 clusters.api.endpoints[0]', '7 clusters.api.timeout', '9 routes[0].cluster', '11 forward.auth.users[0].plan', '12 forward.egress.defaultPool'],
    lines.join('\n'),
  );
  assert.match(lines[1]!, /unknown key "adress" \(did you mean "address"\?\)/);
  assert.match(lines[3]!, /unknown key "timeout" \(did you mean "timeouts"\?\)/);
  assert.match(lines[2]!, /"127\.0\.0\.1:3000" is not an http:\/\/ or https:\/\/ URL/);
  assert.match(lines[4]!, /no cluster named "apl" \(known: api\)/);
});

test('check reads the files the config names: a missing or bad CA file, a bad users file (its own path and line)', async () => {
  const badPem = join(dir, 'bad.pem');
  writeFileSync(badPem, 'not a certificate\n');
  const users = join(dir, 'users.yaml');
  writeFileSync(users, `users:\n  - name: ann\n    password: "${HASH}"\n  - name: bob\n    pasword: x\n`);
  const cfg = join(dir, 'files.yaml');
  writeFileSync(
    cfg,
    [
      'listeners: [{ port: 0 }]',
      'clusters:',
      `  a: { endpoints: ["https://127.0.0.1:1"], tls: { ca: ${join(dir, 'missing.pem')} } }`,
      `  b: { endpoints: ["https://127.0.0.1:2"], tls: { ca: ${badPem} } }`,
      `  c: { endpoints: ["https://127.0.0.1:3"], tls: { ca: ${CA} } }`,
      'routes: [{ cluster: a }]',
      `forward: { listeners: [{ port: 0 }], auth: { usersFile: ${users} } }`,
    ].join('\n') + '\n',
  );
  const r = await cli(['check', '-c', cfg]);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /files\.yaml:3:\d+\s+clusters\.a\.tls\.ca: CA file \S+missing\.pem cannot be read \(ENOENT\)/);
  assert.match(r.stderr, /files\.yaml:4:\d+\s+clusters\.b\.tls\.ca: CA file \S+bad\.pem holds no PEM certificate/);
  assert.doesNotMatch(r.stderr, /clusters\.c\./);
  // The users file's problems name that file and the line of the bad user.
  assert.match(r.stderr, /users\.yaml:4:\d+\s+users\[1\]\.password: /);
  assert.match(r.stderr, /users\.yaml:5:\d+\s+users\[1\]\.pasword: unknown key "pasword" \(did you mean "password"\?\)/);
  // Sorted: the config's own problems first (by line), then the users file's.
  const order = [...r.stderr.matchAll(/^ {2}(\S+?):(\d+)/gm)].map((m) => `${m[1]!.endsWith('users.yaml') ? 'u' : 'c'}${m[2]}`);
  assert.deepEqual(order, ['c3', 'c4', 'u4', 'u5']);
});

test('check refuses listeners that collide (reverse, forward and admin together) and addresses that are not this host\'s; egress addresses only warn', async () => {
  const cfg = join(dir, 'ports.yaml');
  writeFileSync(
    cfg,
    [
      'listeners:',
      '  - { port: 18080 }',
      '  - { address: 0.0.0.0, port: 18081 }',
      '  - { address: 192.0.2.77, port: 18082 }',
      'clusters: { a: { endpoints: ["http://127.0.0.1:3000"] } }',
      'routes: [{ cluster: a }]',
      'admin: { port: 18081 }',
      'forward:',
      '  auth: { required: false }',
      '  listeners: [{ port: 18080 }]',
      '  egress: { pools: { out: { addresses: [192.0.2.78] } } }',
    ].join('\n') + '\n',
  );
  const r = await cli(['check', '-c', cfg]);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /ports\.yaml:4:\d+\s+listeners\[2\]\.address: cannot listen on 192\.0\.2\.77: not an address of this host/);
  assert.match(r.stderr, /ports\.yaml:7:\d+\s+admin\.port: 127\.0\.0\.1:18081 collides with listeners\[1\] \(0\.0\.0\.0:18081\)/);
  assert.match(r.stderr, /ports\.yaml:10:\d+\s+forward\.listeners\[0\]\.port: 127\.0\.0\.1:18080 collides with listeners\[0\] \(127\.0\.0\.1:18080\)/);
  assert.match(r.stderr, /1 warning\n\s+\S+ports\.yaml:11:\d+\s+forward\.egress\.pools\.out\.addresses\[0\]: egress address 192\.0\.2\.78 is not an address of this host/);
  assert.match(r.stderr, /3 problems/);
});

test('run refuses a config with the same messages as check (one function), before binding anything', async () => {
  const cfg = join(dir, 'same.yaml');
  writeFileSync(cfg, 'listeners: [{ port: 18090 }, { port: 18090 }]\nclusters: { a: { endpoints: ["http://127.0.0.1:3000"], tls: { ca: /nonexistent/ca.pem } } }\nroutes: [{ cluster: b }]\n');
  const c = await cli(['check', '-c', cfg]);
  const r = await cli(['run', '-c', cfg]);
  assert.equal(c.code, 1);
  assert.equal(r.code, 1);
  assert.match(c.stderr, /3 problems/);
  assert.equal(r.stderr, c.stderr);
  assert.equal(r.stdout, '', 'nothing started');
});

test('isLocalAddress: wildcards, localhost, 127/8 and the interfaces\' addresses', () => {
  assert.ok(isLocalAddress('0.0.0.0', []));
  assert.ok(isLocalAddress('::', []));
  assert.ok(isLocalAddress('localhost', []));
  assert.ok(isLocalAddress('127.0.0.9', []));
  assert.ok(isLocalAddress('10.1.2.3', ['10.1.2.3']));
  assert.ok(!isLocalAddress('10.9.9.9', ['10.1.2.3']));
  assert.ok(isLocalAddress('::1'));
});

test('YAML trouble is a located problem: a key given twice is named, aliases expand up to the limit and an alias bomb is refused with its line (seeded counts)', () => {
  // Findings (session 29): a duplicate key said only "(root): Map keys must be unique", and a DRY
  // config of ~100 aliases escaped as a bare "Excessive alias count" with no file or line.
  const seed = Number(process.env.GATEWISE_SEED ?? Date.now() % 2 ** 31);
  let x = seed;
  const rnd = (n: number): number => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) % n;
  const dup = checkConfigText(`listeners:\n  - port: 8080\n    port: ${8081 + rnd(100)}\nclusters: {a: {endpoints: ["http://127.0.0.1:1"]}}\nroutes: [{cluster: a}]\n`, 'd.yaml', { host: false });
  assert.equal(dup.problems.length, 1, JSON.stringify(dup.problems));
  assert.match(dup.problems[0]!.message, /the key "port" appears twice/);
  assert.equal(dup.problems[0]!.line, 3);
  const n = 100 + rnd(200);
  const clusters = Array.from({ length: n }, (_, i) => (i === 0 ? `  c0: {endpoints: ["http://127.0.0.1:1"], timeouts: &t {connect: 2s, response: 10s}}` : `  c${i}: {endpoints: ["http://127.0.0.1:1"], timeouts: *t}`)).join('\n');
  const dry = checkConfigText(`clusters:\n${clusters}\nroutes: [{cluster: c0}]\nlisteners: [{port: 8080}]\n`, 'dry.yaml', { host: false });
  assert.deepEqual(dry.problems, [], `${n} aliases (seed ${seed})`);
  // A billion laughs: each level doubles the one before.
  let bomb = 'a: &a0 ["x", "x"]\n';
  for (let i = 1; i < 30; i++) bomb += `a${i}: &a${i} [*a${i - 1}, *a${i - 1}]\n`;
  const b = checkConfigText(bomb, 'bomb.yaml', { host: false });
  assert.equal(b.config, undefined);
  assert.match(b.problems[0]!.message, /expands YAML aliases .* more than 1000 times/, JSON.stringify(b.problems));
  assert.equal(b.problems[0]!.line, 1);
});

test('check looks at what run would open: a cache.dir under a file, a log.file that is a directory, a tracing.setup that does not exist', () => {
  // Finding (session 29): each passed check, then run failed with a bare ENOTDIR, EISDIR or "Cannot find module".
  const aFile = join(dir, 'a-file');
  writeFileSync(aFile, 'x');
  const text = [
    'listeners: [{ port: 0 }]',
    'clusters: { a: { endpoints: ["http://127.0.0.1:1"] } }',
    'routes: [{ cluster: a, cache: {} }]',
    `cache: { dir: ${join(aFile, 'sub')} }`,
    `log: { file: ${dir} }`,
    `tracing: { enabled: true, setup: ${join(dir, 'no-such-setup.mjs')} }`,
  ].join('\n');
  const r = checkConfigText(text, 'host.yaml');
  const said = r.problems.map((p) => `${p.line} ${p.path}: ${p.message}`);
  assert.ok(said.some((p) => /^4 cache\.dir: cache directory .*a-file\/sub: .*a-file is not a directory$/.test(p)), said.join('\n'));
  assert.ok(said.some((p) => /^5 log\.file: log file .* is a directory$/.test(p)), said.join('\n'));
  assert.ok(said.some((p) => /^6 tracing\.setup: tracing setup module .*no-such-setup\.mjs does not exist/.test(p)), said.join('\n'));
  // A cache.dir that does not exist yet but can be made is fine.
  const ok = checkConfigText(text.replace(join(aFile, 'sub'), join(dir, 'new', 'cache')).replace(`log: { file: ${dir} }`, '').replace(/tracing: .*/, ''), 'ok.yaml');
  assert.deepEqual(ok.problems, []);
});

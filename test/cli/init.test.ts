import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request as httpRequest } from 'node:http';
import { request } from 'undici';
import { startLab } from '../../src/lab/index.js';

const BIN = fileURLToPath(new URL('../../../bin/gatewise.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'gatewise-init-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 15000, cwd: dir }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** Start `gatewise run -c FILE` and wait for the log line that `pick` finds a value in. */
async function runUntil(file: string, pick: (line: Record<string, unknown>) => string | undefined): Promise<{ child: ChildProcess; value: string }> {
  const child = spawn(process.execPath, [BIN, 'run', '-c', file], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const value = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ready line: ${out} ${err}`)), 10000);
    child.on('exit', (code) => reject(new Error(`exited ${code}: ${out} ${err}`)));
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      for (const l of out.split('\n')) {
        if (!l.startsWith('{')) continue;
        const v = pick(JSON.parse(l) as Record<string, unknown>);
        if (v !== undefined) {
          clearTimeout(t);
          resolve(v);
        }
      }
    });
  });
  return { child, value };
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

test('init --to writes a commented reverse-gateway config that check accepts, run serves, and refuses to overwrite without --force', async () => {
  const lab = await startLab();
  try {
    const r = await cli(['init', '--to', lab.url, '--to', lab.url.replace('127.0.0.1', 'localhost'), '--listen', '127.0.0.1:0', '-c', 'rev.yaml']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /wrote \S+rev\.yaml/);
    const text = readFileSync(join(dir, 'rev.yaml'), 'utf8');
    assert.match(text, /^# Gatewise starter config/m);
    assert.ok(text.split('\n').filter((l) => /#/.test(l)).length >= 10, 'commented');
    const checked = await cli(['check', '-c', 'rev.yaml']);
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout, /rev\.yaml: ok — 1 listener\(s\), 1 cluster\(s\), 1 route\(s\)/);
    // It runs: a request through it reaches the lab.
    const { child, value: url } = await runUntil('rev.yaml', (l) => (l.event === 'ready' ? (l.listeners as string[])[0] : undefined));
    try {
      const res = await request(`${url}/ok`);
      assert.equal(res.statusCode, 200);
      await res.body.dump();
    } finally {
      await stop(child);
    }
    // An existing file is kept unless --force.
    writeFileSync(join(dir, 'rev.yaml'), '# mine\n');
    const again = await cli(['init', '--to', lab.url, '-c', 'rev.yaml']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /rev\.yaml exists; --force overwrites it/);
    assert.equal(readFileSync(join(dir, 'rev.yaml'), 'utf8'), '# mine\n');
    const forced = await cli(['init', '--to', lab.url, '-c', 'rev.yaml', '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(readFileSync(join(dir, 'rev.yaml'), 'utf8'), /^# Gatewise starter config/);
  } finally {
    await lab.close();
  }
});

test('init --proxy writes a proxy service with plans and a users file; check accepts it, run authenticates its user', async () => {
  const r = await cli(['init', '--proxy', '--listen', '127.0.0.1:0', '-c', 'fwd.yaml', '--users', 'people.yaml']);
  assert.equal(r.code, 0, r.stderr);
  const password = /user alice, password (\S+)/.exec(r.stdout)?.[1];
  assert.ok(password, r.stdout);
  const users = readFileSync(join(dir, 'people.yaml'), 'utf8');
  assert.match(users, /name: alice/);
  assert.ok(!users.includes(password), 'only the hash is stored');
  assert.match(readFileSync(join(dir, 'fwd.yaml'), 'utf8'), /plans:/);
  const checked = await cli(['check', '-c', 'fwd.yaml']);
  assert.equal(checked.code, 0, checked.stderr);
  // What check says will listen is what run binds: the forward proxy's listener, not
  // "0 listener(s), 0 cluster(s), 0 route(s)" (the reverse gateway's counts, all zero).
  assert.equal(checked.stdout, 'fwd.yaml: ok — forward proxy on 127.0.0.1:0\n');
  const { child, value: port } = await runUntil('fwd.yaml', (l) => (l.event === 'forward-ready' ? String((l.listeners as Array<{ port: number }>)[0]!.port) : undefined));
  try {
    const ask = (auth?: string, path = 'http://127.0.0.1:9999/'): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = httpRequest(
          { host: '127.0.0.1', port: Number(port), path, headers: auth ? { 'proxy-authorization': `Basic ${Buffer.from(auth).toString('base64')}` } : {} },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end();
      });
    assert.equal(await ask(), 407);
    assert.equal(await ask('alice:wrong'), 407);
    // The right password passes auth; the starter rules refuse a loopback destination
    // (502 destination_ip_prohibited, RFC 9209), after authentication, not with a 407.
    assert.equal(await ask(`alice:${password}`), 502);
    // A port outside the default forward.rules.httpPorts (9, discard) is refused first: 403 http_request_denied.
    assert.equal(await ask(`alice:${password}`, 'http://127.0.0.1:9/'), 403);
  } finally {
    await stop(child);
  }
});

test('init refuses a command line that says nothing to start from, and a bad --to, naming the flag', async () => {
  const none = await cli(['init']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /--reverse --to URL .* or --proxy/);
  const bad = await cli(['init', '--to', '127.0.0.1:3000', '-c', 'never.yaml']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--to 127\.0\.0\.1:3000: must be an http:\/\/ or https:\/\/ URL, e\.g\. http:\/\/127\.0\.0\.1:3000/);
});

test('init --proxy writes both files or neither: an unwritable --users or --config leaves nothing, names the flag, and a retry works; one file for both is refused', async () => {
  // Findings (session 29): a users file that could not be written left a config pointing at it
  // (the retry then refused: "exists"), and `--users` naming the config overwrote it, exit 0.
  const cases: Array<[string[], RegExp]> = [
    [['-c', 'half.yaml', '--users', join(dir, 'no-such-dir', 'u.yaml')], /--users .*no-such-dir.*cannot write the users file there \(ENOENT\)/],
    [['-c', join(dir, 'no-such-dir', 'c.yaml'), '--users', 'half-users.yaml'], /--config .*no-such-dir.*cannot write the config there \(ENOENT\)/],
    [['-c', 'same.yaml', '--users', 'same.yaml'], /--users and --config name the same file/],
  ];
  for (const [args, message] of cases) {
    const before = readdirSync(dir).sort();
    const r = await cli(['init', '--proxy', ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.deepEqual(readdirSync(dir).sort(), before, `${args.join(' ')} left files behind`);
  }
  const ok = await cli(['init', '--proxy', '-c', 'half.yaml', '--users', 'half-users.yaml']);
  assert.equal(ok.code, 0, ok.stderr);
});

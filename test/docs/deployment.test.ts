import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { configSchema } from '../../src/config/schema.js';
import { YOUNG_GENERATION_FLOOR_FLAG } from '../../src/cli/young-generation.js';

const ROOT = new URL('../../../', import.meta.url);
const BIN = fileURLToPath(new URL('bin/gatewise.js', ROOT));
const dir = mkdtempSync(join(tmpdir(), 'gatewise-deploy-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function node(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { timeout: 20000, cwd: dir }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** A systemd unit: sections of Key=Value lines (comments and blank lines skipped). */
function parseUnit(text: string): Map<string, Array<[string, string]>> {
  const sections = new Map<string, Array<[string, string]>>();
  let current: Array<[string, string]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(\w+)\]$/.exec(line);
    if (s) {
      current = [];
      sections.set(s[1]!, current);
      continue;
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    assert.ok(kv && current, `not a unit line: ${line}`);
    current.push([kv[1]!, kv[2]!]);
  }
  return sections;
}

const get = (sec: Array<[string, string]>, key: string): string[] => sec.filter(([k]) => k === key).map(([, v]) => v);


/** The config a deployment would use, written by `gatewise init` into the temp dir. */
async function starterConfig(name: string): Promise<string> {
  const r = await node([BIN, 'init', '--to', 'http://127.0.0.1:9', '--listen', '127.0.0.1:0', '-c', name]);
  assert.equal(r.code, 0, r.stderr);
  return join(dir, name);
}

test('deploy/gatewise.service parses, runs unprivileged with only CAP_NET_BIND_SERVICE, and its ExecStartPre/ExecStart command lines are valid gatewise commands', async () => {
  const unit = parseUnit(readFileSync(new URL('deploy/gatewise.service', ROOT), 'utf8'));
  assert.deepEqual([...unit.keys()], ['Unit', 'Service', 'Install']);
  const svc = unit.get('Service')!;
  assert.equal(get(svc, 'User')[0], 'gatewise');
  assert.deepEqual(get(svc, 'AmbientCapabilities'), ['CAP_NET_BIND_SERVICE']);
  assert.deepEqual(get(svc, 'CapabilityBoundingSet'), ['CAP_NET_BIND_SERVICE']);
  assert.equal(get(svc, 'NoNewPrivileges')[0], 'true');
  assert.equal(get(svc, 'KillSignal')[0], 'SIGTERM');
  // systemd waits longer than the default drain before it kills.
  const drain = Number(/^(\d+)s$/.exec(configSchema.parse({ listeners: [{ port: 1 }], clusters: { a: { endpoints: ['http://x:1'] } }, routes: [{ cluster: 'a' }] }).shutdown.drainTimeout)![1]);
  assert.ok(Number(get(svc, 'TimeoutStopSec')[0]) > drain);
  const config = await starterConfig('unit.yaml');
  const [pre] = get(svc, 'ExecStartPre');
  const [start] = get(svc, 'ExecStart');
  const argvOf = (line: string): string[] => {
    const [bin, ...args] = line.split(/\s+/);
    assert.equal(bin, '/usr/bin/gatewise');
    return args.map((a) => (a === '/etc/gatewise/gatewise.yaml' ? config : a));
  };
  // ExecStart starts Node itself, with the young generation's floor (Node refuses the flag in
  // NODE_OPTIONS), on the same /usr/bin/gatewise: `env node FLAGS /usr/bin/gatewise ARGS`.
  const nodeFlagsOf = (line: string): { flags: string[]; rest: string } => {
    const m = /^\/usr\/bin\/env node((?: --[\w-]+(?:=\S+)?)*) (\/usr\/bin\/gatewise .*)$/.exec(line);
    assert.ok(m, `ExecStart is env node FLAGS /usr/bin/gatewise ARGS: ${line}`);
    return { flags: m[1]!.trim().split(/\s+/), rest: m[2]! };
  };
  // ExecStartPre is `gatewise check` as written; it passes on the starter config.
  const preArgs = argvOf(pre!);
  assert.equal(preArgs[0], 'check');
  const checked = await node([BIN, ...preArgs]);
  assert.equal(checked.code, 0, checked.stderr);
  // ExecStart's command line parses (flags and values) and names the same config: `check` with the
  // same -c passes, and `run` with the same flags answers --help (its parser accepted every flag).
  const { flags, rest } = nodeFlagsOf(start!);
  assert.deepEqual(flags, [YOUNG_GENERATION_FLOOR_FLAG]);
  const startArgs = argvOf(rest);
  assert.equal(startArgs[0], 'run');
  assert.deepEqual(startArgs.slice(startArgs.indexOf('-c'), startArgs.indexOf('-c') + 2), ['-c', config]);
  const parsed = await node([...flags, BIN, ...startArgs, '--help']);
  assert.equal(parsed.code, 0, parsed.stderr);
  assert.match(parsed.stdout, /^usage: gatewise run/);
});

/** Dockerfile instructions, continuation lines joined. */
function parseDockerfile(text: string): Array<{ op: string; args: string }> {
  const out: Array<{ op: string; args: string }> = [];
  for (const line of text.replace(/\\\n/g, ' ').split('\n')) {
    const t = line.trim();
    if (!t || t.startsWith('#')) continue;
    const m = /^([A-Z]+)\s+(.*)$/.exec(t);
    assert.ok(m, `not an instruction: ${t}`);
    out.push({ op: m[1]!, args: m[2]! });
  }
  return out;
}

test('Dockerfile: node:20-slim, a non-root user, COPY sources that exist, and its ENTRYPOINT + CMD start Gatewise on a generated config', async () => {
  const steps = parseDockerfile(readFileSync(new URL('Dockerfile', ROOT), 'utf8'));
  const froms = steps.filter((s) => s.op === 'FROM').map((s) => s.args.split(/\s+/)[0]);
  assert.ok(froms.length >= 1 && froms.every((f) => f === 'node:20-slim'), froms.join());
  const final = steps.slice(steps.map((s) => s.op).lastIndexOf('FROM'));
  const user = final.filter((s) => s.op === 'USER').at(-1)?.args;
  assert.ok(user && user !== 'root' && user !== '0', `runs as ${user ?? 'root'}`);
  for (const s of steps.filter((x) => x.op === 'COPY' && !x.args.startsWith('--from'))) {
    for (const src of s.args.split(/\s+/).slice(0, -1)) assert.ok(existsSync(new URL(src, ROOT)), `COPY ${src} exists`);
  }
  const entrypoint = JSON.parse(final.find((s) => s.op === 'ENTRYPOINT')!.args) as string[];
  const cmd = JSON.parse(final.find((s) => s.op === 'CMD')!.args) as string[];
  assert.deepEqual(entrypoint, ['node', YOUNG_GENERATION_FLOOR_FLAG, '/app/bin/gatewise.js']);
  // The image's command line, with the repository for /app and a generated config for the mounted one.
  const config = await starterConfig('image.yaml');
  const argv = [...entrypoint.slice(1), ...cmd].map((a) => (a === '/app/bin/gatewise.js' ? BIN : a === '/etc/gatewise/gatewise.yaml' ? config : a));
  const child = spawn(process.execPath, argv, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`not ready: ${out}`)), 10000);
      child.on('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        if (/"event":"ready"/.test(out)) {
          clearTimeout(t);
          resolve();
        }
      });
    });
  } finally {
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0, 'SIGTERM drains and exits 0 (docker stop)');
  }
  // The config the image expects listens on 0.0.0.0 at a high port: the sample in docs/deployment.md.
  const doc = readFileSync(new URL('docs/deployment.md', ROOT), 'utf8');
  const sample = /```yaml\n(# \/etc\/gatewise\/gatewise\.yaml in the container[\s\S]*?)```/.exec(doc);
  assert.ok(sample, 'docs/deployment.md has the container config sample');
  const l = (parseYaml(sample[1]!) as { listeners: Array<{ address: string; port: number }> }).listeners[0]!;
  assert.equal(l.address, '0.0.0.0');
  assert.ok(l.port >= 1024);
});

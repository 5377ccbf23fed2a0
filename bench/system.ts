// Finding (and, as root on Debian, installing) the third-party servers and
// wrk; versions of everything; a description of the machine.
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { log } from './util.js';

export interface Tool {
  /** Binary name. */
  bin: string;
  /** Debian package that ships it. */
  pkg: string;
  /** Arguments that print the version. */
  versionArgs: string[];
  /** Pulls the version out of the output. */
  versionRe: RegExp;
  /** Service names the package may start on install. */
  services: string[];
}

export const TOOLS: Tool[] = [
  { bin: 'nginx', pkg: 'nginx', versionArgs: ['-v'], versionRe: /nginx\/(\S+)/, services: ['nginx'] },
  { bin: 'haproxy', pkg: 'haproxy', versionArgs: ['-v'], versionRe: /HA-?Proxy version (\S+)/i, services: ['haproxy'] },
  { bin: 'squid', pkg: 'squid', versionArgs: ['-v'], versionRe: /Version (\S+)/, services: ['squid'] },
  { bin: 'tinyproxy', pkg: 'tinyproxy', versionArgs: ['-v'], versionRe: /tinyproxy (\S+)/, services: ['tinyproxy'] },
  { bin: 'danted', pkg: 'dante-server', versionArgs: ['-v'], versionRe: /Dante v?(\S+)/i, services: ['danted'] },
  { bin: 'wrk', pkg: 'wrk', versionArgs: ['-v'], versionRe: /wrk (\S+)/, services: [] },
];

const SEARCH_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

export function findBinary(bin: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), ...SEARCH_DIRS];
  for (const dir of dirs) {
    const p = path.join(dir, bin);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

function run(cmd: string, args: string[], timeoutMs: number, env?: NodeJS.ProcessEnv): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, env: env ?? process.env });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

const POLICY_RC_D = '/usr/sbin/policy-rc.d';

/**
 * Install the Debian packages of missing tools (root only). While apt runs,
 * policy-rc.d answers 101 ("action forbidden") so that no package starts its
 * system service; the previous policy-rc.d, if any, is put back afterwards.
 */
function aptInstall(pkgs: string[]): void {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let previous: string | undefined;
  try {
    previous = fs.readFileSync(POLICY_RC_D, 'utf8');
  } catch {
    previous = undefined;
  }
  fs.writeFileSync(POLICY_RC_D, '#!/bin/sh\n# written by gatewise bench: do not start services during install\nexit 101\n', { mode: 0o755 });
  try {
    log('apt-get update');
    const up = run('apt-get', ['update'], 300_000, env);
    if (!up.ok) log(`apt-get update failed:\n${up.out.trim().split('\n').slice(-3).join('\n')}`);
    for (const pkg of pkgs) {
      log(`apt-get install -y --no-install-recommends ${pkg}`);
      const r = run('apt-get', ['install', '-y', '--no-install-recommends', pkg], 600_000, env);
      if (!r.ok) log(`installing ${pkg} failed:\n${r.out.trim().split('\n').slice(-3).join('\n')}`);
    }
  } finally {
    if (previous === undefined) fs.rmSync(POLICY_RC_D, { force: true });
    else fs.writeFileSync(POLICY_RC_D, previous, { mode: 0o755 });
  }
}

/** Stop system services that a package may have started anyway (e.g. systemd ignoring policy-rc.d). */
function stopServices(names: string[]): void {
  if (names.length === 0) return;
  const systemd = fs.existsSync('/run/systemd/system');
  for (const name of names) {
    if (systemd) run('systemctl', ['stop', name], 30_000);
    else if (findBinary('service')) run('service', [name, 'stop'], 30_000);
  }
}

export interface ToolStatus {
  tool: Tool;
  path?: string;
  version?: string;
  /** Why it cannot be used. */
  problem?: string;
}

/** Find every tool; install the missing ones when allowed; return what is usable. */
export function ensureTools(): Map<string, ToolStatus> {
  const isRoot = process.getuid?.() === 0;
  const allowInstall = process.env.BENCH_NO_INSTALL !== '1';
  const missing = TOOLS.filter((t) => !findBinary(t.bin));
  if (missing.length > 0) {
    const names = missing.map((t) => t.pkg).join(', ');
    if (!allowInstall) log(`missing: ${names} (BENCH_NO_INSTALL=1, not installing)`);
    else if (!isRoot) log(`missing: ${names} (not root, cannot install; apt-get install ${missing.map((t) => t.pkg).join(' ')})`);
    else if (!findBinary('apt-get')) log(`missing: ${names} (no apt-get on this machine)`);
    else {
      aptInstall(missing.map((t) => t.pkg));
      stopServices(missing.filter((t) => findBinary(t.bin)).flatMap((t) => t.services));
    }
  }
  const out = new Map<string, ToolStatus>();
  for (const tool of TOOLS) {
    const p = findBinary(tool.bin);
    if (!p) {
      out.set(tool.bin, { tool, problem: `not available (${tool.pkg} not installed)` });
      continue;
    }
    const v = run(p, tool.versionArgs, 10_000);
    out.set(tool.bin, { tool, path: p, version: tool.versionRe.exec(v.out)?.[1]?.replace(/[.,]$/, '') ?? 'unknown' });
  }
  return out;
}

const requireFromRoot = createRequire(path.join(process.cwd(), 'package.json'));

/** Version of an installed npm package, read from its package.json. */
export function npmVersion(name: string): string | undefined {
  try {
    const pkgPath = requireFromRoot.resolve(`${name}/package.json`);
    return (JSON.parse(fs.readFileSync(pkgPath, 'utf8')) as { version?: string }).version;
  } catch {
    // packages whose "exports" hide package.json: walk node_modules directly
    try {
      const p = path.join(process.cwd(), 'node_modules', name, 'package.json');
      return (JSON.parse(fs.readFileSync(p, 'utf8')) as { version?: string }).version;
    } catch {
      return undefined;
    }
  }
}

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  os: string;
  node: string;
}

export function describeMachine(): Machine {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpuModel = m[1]!.trim();
  } catch {
    // keep os.cpus()
  }
  let osName = `${os.type()} ${os.release()}`;
  try {
    const m = /^PRETTY_NAME="?([^"\n]+)"?$/m.exec(fs.readFileSync('/etc/os-release', 'utf8'));
    if (m) osName = m[1]!;
  } catch {
    // keep uname
  }
  return {
    cpus: os.availableParallelism?.() ?? os.cpus().length,
    cpuModel,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: os.release(),
    os: osName,
    node: process.version,
  };
}

/** Current git commit of the work tree, read-only; undefined outside git or before the first commit. */
export function gitCommit(): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('git', ['rev-parse', '--short', 'HEAD'], { timeout: 5000 }, (err, stdout) => {
      resolve(err ? undefined : stdout.trim() || undefined);
    });
  });
}

function cpuTimes(): { idle: number; total: number } {
  const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  return { idle: fields[3]! + fields[4]!, total };
}

/**
 * How busy the machine is with work that is not ours, in % of all CPUs,
 * measured over `ms` while the harness itself is idle.
 */
export async function backgroundBusyPercent(ms = 2000): Promise<number | undefined> {
  try {
    const a = cpuTimes();
    await new Promise((resolve) => setTimeout(resolve, ms));
    const b = cpuTimes();
    const total = b.total - a.total;
    return total > 0 ? 100 * (1 - (b.idle - a.idle) / total) : undefined;
  } catch {
    return undefined;
  }
}

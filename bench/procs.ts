// Every process the harness starts goes through here, so that all of them
// (and their children: nginx workers, danted helpers) are stopped on exit,
// on error and on Ctrl-C. Each child is started in its own process group and
// stopped by that group's id.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { sleep } from './util.js';

export interface StartOptions {
  /** CPU list for taskset, e.g. "1"; undefined = no pinning. */
  cpus?: string | undefined;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Where the child's stdout goes (default /dev/null). */
  stdoutFile?: string;
}

export class Proc {
  readonly child: ChildProcess;
  readonly pid: number;
  exitCode: number | null = null;
  exitSignal: string | null = null;
  exited = false;
  #stderr = '';
  readonly #exitPromise: Promise<void>;

  constructor(readonly name: string, child: ChildProcess) {
    if (child.pid === undefined) throw new Error(`${name}: spawn failed`);
    this.child = child;
    this.pid = child.pid;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      this.#stderr = (this.#stderr + d).slice(-8192);
    });
    this.#exitPromise = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exited = true;
        this.exitCode = code;
        this.exitSignal = signal;
        live.delete(this);
        resolve();
      });
    });
  }

  stderrTail(lines = 6): string {
    return this.#stderr.trim().split('\n').slice(-lines).join('\n');
  }

  /** The most telling stderr line: the first that names an error, else the last one. */
  problem(): string | undefined {
    const lines = this.#stderr.split('\n').map((l) => l.trim()).filter(Boolean);
    return lines.find((l) => /error|exception|fatal|alert|emerg|cannot|failed/i.test(l)) ?? lines.at(-1);
  }

  /** Resolves when the process exits, or false after timeoutMs. */
  waitExit(timeoutMs: number): Promise<boolean> {
    return Promise.race([this.#exitPromise.then(() => true), sleep(timeoutMs).then(() => this.exited)]);
  }

  /** SIGTERM the process group, then SIGKILL it if it lingers. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.exited) return;
    signalGroup(this.pid, 'SIGTERM');
    if (await this.waitExit(graceMs)) {
      // The leader is gone; make sure no helper of its group survived.
      signalGroup(this.pid, 'SIGKILL');
      return;
    }
    signalGroup(this.pid, 'SIGKILL');
    await this.waitExit(2000);
  }
}

const live = new Set<Proc>();

function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // group already gone
  }
}

export function startProcess(name: string, cmd: string, args: string[], opts: StartOptions = {}): Proc {
  const [file, argv] = opts.cpus !== undefined ? ['taskset', ['-c', opts.cpus, cmd, ...args]] : [cmd, args];
  const stdoutFd = fs.openSync(opts.stdoutFile ?? '/dev/null', 'a');
  try {
    const child = spawn(file, argv, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      detached: true, // own process group, so the whole tree can be signalled
      stdio: ['ignore', stdoutFd, 'pipe'],
    });
    const proc = new Proc(name, child);
    live.add(proc);
    child.on('error', () => {
      /* reported through exit */
    });
    return proc;
  } finally {
    fs.closeSync(stdoutFd);
  }
}

/** Short-lived children (wrk, the tunnel load generator): killed if the harness stops early. */
const transient = new Set<ChildProcess>();

export function trackChild(child: ChildProcess): void {
  transient.add(child);
  child.once('exit', () => transient.delete(child));
}

const exitHooks: (() => void)[] = [];
/** Run on every way out (normal end, error, signal), after the processes are stopped. */
export function onCleanup(fn: () => void): void {
  exitHooks.push(fn);
}

function runExitHooks(): void {
  for (const fn of exitHooks.splice(0)) {
    try {
      fn();
    } catch {
      // best effort
    }
  }
}

export async function stopAll(): Promise<void> {
  for (const c of transient) c.kill('SIGKILL');
  await Promise.all([...live].map((p) => p.stop()));
  runExitHooks();
}

let installed = false;
/** Stop every child on normal exit, on error and on SIGINT/SIGTERM/SIGHUP. */
export function installCleanupHandlers(): void {
  if (installed) return;
  installed = true;
  process.on('exit', () => {
    for (const c of transient) c.kill('SIGKILL');
    for (const p of live) signalGroup(p.pid, 'SIGKILL');
    runExitHooks();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\n[bench] ${sig}: stopping ${live.size} process(es)\n`);
      void stopAll().finally(() => process.exit(130));
    });
  }
}

/** Run a bench command's main: exit 0 when it resolves; on an error print it under `name`, stop what it started, exit 1. */
export function runMain(name: string, main: () => Promise<unknown>): void {
  main().then(
    () => process.exit(0),
    async (err: unknown) => {
      process.stderr.write(`${name}: ${err instanceof Error ? err.message : String(err)}\n`);
      await stopAll();
      process.exit(1);
    },
  );
}

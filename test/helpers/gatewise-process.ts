import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { withTestUpstreamClient } from './upstream-client.js';
import { withTestFront } from './front.js';

export const BIN = fileURLToPath(new URL('../../../bin/gatewise.js', import.meta.url));

/**
 * `gatewise run --config FILE [--workers N]` as a real process: its JSON log lines gathered
 * (stdout), started when `readyLines` forward listeners said they listen (and, with `admin`
 * in the config, each process's admin listener).
 */
export class GatewiseProcess {
  readonly lines: Array<Record<string, unknown>> = [];
  stderr = '';
  readonly #child: ChildProcess;
  #buf = '';

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.stdout!.on('data', (c: Buffer) => {
      this.#buf += c.toString();
      let i;
      while ((i = this.#buf.indexOf('\n')) >= 0) {
        const l = this.#buf.slice(0, i);
        this.#buf = this.#buf.slice(i + 1);
        if (l.trim().startsWith('{')) {
          try {
            this.lines.push(JSON.parse(l) as Record<string, unknown>);
          } catch {
            // not a log line
          }
        }
      }
    });
    child.stderr!.on('data', (c: Buffer) => (this.stderr += c.toString()));
  }

  static async start(configFile: string, config: unknown, opts: { workers?: number; readyLines?: number } = {}): Promise<GatewiseProcess> {
    writeFileSync(configFile, JSON.stringify(withTestFront(withTestUpstreamClient(config))));
    const args = [BIN, 'run', '--config', configFile, ...(opts.workers ? ['--workers', String(opts.workers)] : [])];
    const p = new GatewiseProcess(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    const want = opts.readyLines ?? opts.workers ?? 1;
    try {
      // Generous: a CI machine that stalls may take long to load and start N workers.
      await p.waitFor(() => p.lines.filter((l) => l.event === 'forward-ready').length >= want, 60_000, `${want} forward listeners ready`);
      // Each process starts its admin listener after its forward listeners: a test that calls
      // the admin API right after 'forward-ready' could find nothing listening yet.
      if ((config as { admin?: unknown }).admin !== undefined) {
        await p.waitFor(() => p.lines.filter((l) => l.event === 'admin').length >= (opts.workers ?? 1), 60_000, 'the admin listener of each process');
      }
    } catch (err) {
      // Never leave a half-started group behind: its pipes would keep the test process alive.
      await p.kill();
      throw err;
    }
    return p;
  }

  /** The process's pid (with `--workers`, the primary's). */
  get pid(): number {
    return this.#child.pid!;
  }

  get exited(): boolean {
    return this.#child.exitCode !== null || this.#child.signalCode !== null;
  }

  async waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
    const end = Date.now() + ms;
    while (!cond()) {
      if (this.exited) throw new Error(`gatewise exited while waiting for ${what}: ${this.stderr}`);
      if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}; stderr: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Access lines (type "access"). */
  access(): Array<Record<string, unknown>> {
    return this.lines.filter((l) => l.type === 'access');
  }

  /**
   * Write `config` to `configFile` and send SIGHUP: every process of the group reloads.
   * Resolves once `processes` more `reloaded` lifecycle lines were logged.
   */
  async reload(configFile: string, config: unknown, processes: number): Promise<void> {
    const before = this.lines.filter((l) => l.event === 'reloaded').length;
    writeFileSync(configFile, JSON.stringify(withTestFront(withTestUpstreamClient(config))));
    this.#child.kill('SIGHUP');
    await this.waitFor(() => this.lines.filter((l) => l.event === 'reloaded').length >= before + processes, 30_000, `${processes} processes reloaded`);
  }

  /** SIGTERM: drain, flush usage, exit. */
  async stop(): Promise<number | null> {
    if (this.exited) return this.#child.exitCode;
    const done = once(this.#child, 'exit');
    this.#child.kill('SIGTERM');
    const t = setTimeout(() => this.#child.kill('SIGKILL'), 15_000);
    const [code] = (await done) as [number | null];
    clearTimeout(t);
    return code;
  }

  /** SIGKILL: the node dies with whatever it holds. */
  async kill(): Promise<void> {
    if (this.exited) return;
    const done = once(this.#child, 'exit');
    this.#child.kill('SIGKILL');
    await done;
  }
}

/** The process that served a request: request ids start with a per-process random prefix. */
export function processOf(requestId: unknown): string {
  return String(requestId).split('-')[0]!;
}

/** `gatewise demo --port 0` as a real process, once it printed its table ("Ctrl-C to stop"). */
export interface DemoProcess {
  /** Everything it printed on stdout so far. */
  readonly out: () => string;
  /** Its exit code, once it exits. */
  readonly exited: Promise<number | null>;
  /** Signal it, wait for it to exit and remove its temp directory; its exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startDemo(): Promise<DemoProcess> {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const tmp = mkdtempSync(join(tmpdir(), 'gatewise-demo-tmp-'));
  const child = spawn(process.execPath, [BIN, 'demo', '--port', '0'], { env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let out = '';
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    child.kill(signal);
    const code = await exited;
    rmSync(tmp, { recursive: true, force: true });
    return code;
  };
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('Ctrl-C to stop')) resolve();
      });
      void exited.then((code) => reject(new Error(`demo exited ${code}: ${out}`)));
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { out: () => out, exited, stop };
}

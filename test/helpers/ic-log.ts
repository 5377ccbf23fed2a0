import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/**
 * The shipped `gatewise` command run under V8's inline-cache log (`--log-ic`), for the tests that
 * watch Node's socket sites stay polymorphic in either face (test/forward/socket-shape.test.ts,
 * test/gateway/socket-shape.test.ts). Its output goes to a file, not a pipe: Node makes a piped
 * stdout or stderr a socket of its own (with its own `_destroy`), which the stopping message
 * touches at exit, outside what is measured.
 */
export class IcLoggedGatewise {
  readonly #child: ChildProcess;
  readonly #dir: string;
  readonly #log: string;
  readonly #out: string;

  /** Start `gatewise ARGS` under the IC log, its files in a new temporary folder named from `dirPrefix`. */
  constructor(args: readonly string[], dirPrefix: string) {
    this.#dir = fs.mkdtempSync(path.join(os.tmpdir(), dirPrefix));
    this.#log = path.join(this.#dir, 'v8.log');
    this.#out = path.join(this.#dir, 'out.log');
    const outFd = fs.openSync(this.#out, 'w');
    this.#child = spawn(process.execPath, ['--log-ic', `--logfile=${this.#log}`, '--no-logfile-per-isolate', path.join(ROOT, 'bin', 'gatewise.js'), ...args], { stdio: ['ignore', outFd, outFd] });
    fs.closeSync(outFd);
  }

  /** Resolves once its output holds `marker`; rejects when it exits first or has not within 60 s (`what` names it). */
  ready(marker: string, what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const started = Date.now();
      const check = (): void => {
        const out = fs.readFileSync(this.#out, 'utf8');
        if (out.includes(marker)) resolve();
        else if (this.#child.exitCode !== null || Date.now() - started > 60_000) reject(new Error(`${what} did not start: ${out}`));
        else setTimeout(check, 20);
      };
      check();
    });
  }

  /**
   * Stop the process and read its IC log, complete once the process is gone: the lines of its
   * loads (`LoadIC,` and `KeyedLoadIC,`; fields: kind,pc,time,line,column,old state,new
   * state,map,key,…, state N is megamorphic).
   */
  async loads(): Promise<string[]> {
    this.#child.kill();
    await once(this.#child, 'exit');
    return fs
      .readFileSync(this.#log, 'latin1')
      .split('\n')
      .filter((l) => l.startsWith('LoadIC,') || l.startsWith('KeyedLoadIC,'));
  }

  /** Stop the process if it still runs and remove its files. */
  async close(): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      this.#child.kill();
      await once(this.#child, 'exit');
    }
    fs.rmSync(this.#dir, { recursive: true, force: true });
  }
}

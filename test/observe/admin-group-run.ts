import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { GUARD_MS } from '../helpers/time-bounds.js';

/** Log lines as parsed JSON, with a wait for one that matches (bounded). */
export class LogSink {
  readonly lines: Array<Record<string, unknown>> = [];
  readonly #events = new EventEmitter();
  readonly stream = new Writable({
    write: (c: Buffer, _e, cb) => {
      for (const l of c.toString().split('\n')) {
        if (l.trim() === '') continue;
        const line = JSON.parse(l) as Record<string, unknown>;
        this.lines.push(line);
        this.#events.emit('line', line);
      }
      cb();
    },
  });

  /** The first line `ok` accepts, now or when it is written within `ms`. */
  wait(ok: (line: Record<string, unknown>) => boolean, ms: number): Promise<Record<string, unknown>> {
    const seen = this.lines.find(ok);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.#events.off('line', on);
        reject(new Error(`no such log line within ${ms} ms; lines: ${JSON.stringify(this.lines)}`));
      }, ms);
      const on = (line: Record<string, unknown>): void => {
        if (!ok(line)) return;
        clearTimeout(t);
        this.#events.off('line', on);
        resolve(line);
      };
      this.#events.on('line', on);
    });
  }
}

/** A running fixture group (`startGroup`). */
export interface Group {
  url: string;
  sink: LogSink;
  primary: number;
  stderr(): string;
  stop(): Promise<void>;
}

/**
 * The fixture's process group (admin-group-fixture.ts) with `env` added, once both workers
 * listen on one port; their log lines in `sink`, the primary's pid in `primary`.
 */
export async function startGroup(env: Record<string, string>): Promise<Group> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./admin-group-fixture.js', import.meta.url))], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const sink = new LogSink();
  let partial = '';
  child.stdout.on('data', (c: Buffer) => {
    partial += c.toString();
    const end = partial.lastIndexOf('\n');
    if (end < 0) return;
    sink.stream.write(partial.slice(0, end + 1));
    partial = partial.slice(end + 1);
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (): Promise<void> => {
    child.kill('SIGTERM');
    await exited;
  };
  try {
    const ready = await Promise.all([1, 2].map((w) => sink.wait((l) => l.fixture === 'ready' && l.worker === w, 30_000)));
    const url = String(ready[0]!.url);
    assert.equal(ready[1]!.url, url, 'one port for both workers');
    return { url, sink, primary: child.pid!, stderr: () => stderr, stop };
  } catch (err) {
    (err as Error).message += `\nfixture stderr: ${stderr}`;
    await stop();
    throw err;
  }
}

/**
 * `startGroup(env)`, `run` on it, and the group stopped however `run` ends; an error `run`
 * throws carries the fixture's stderr. With `blockable`, FIXTURE_UNBLOCK_FILE is `unblockFile`,
 * a file in a fresh temporary directory: written before the stop (a primary the test blocked
 * resumes and takes the SIGTERM), the directory removed after.
 */
export async function withGroup(env: Record<string, string>, run: (group: Group & { unblockFile: string }) => Promise<void>, o: { blockable?: boolean } = {}): Promise<void> {
  const dir = o.blockable ? mkdtempSync(join(tmpdir(), 'gatewise-group-')) : undefined;
  const unblockFile = dir === undefined ? '' : join(dir, 'unblock');
  try {
    const group = await startGroup(dir === undefined ? env : { ...env, FIXTURE_UNBLOCK_FILE: unblockFile });
    try {
      await run({ ...group, unblockFile });
    } catch (err) {
      (err as Error).message += `\nfixture stderr: ${group.stderr()}`;
      throw err;
    } finally {
      if (dir !== undefined) writeFileSync(unblockFile, '');
      await group.stop();
    }
  } finally {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  }
}

export type Answer = { status: number; headers: Record<string, string>; text: string };

/** `method path` asked of the group's admin listener at `url` on a connection of its own (a POST with the admin's header). */
export async function ask(url: string, path: string, method: 'GET' | 'POST'): Promise<Answer> {
  const r = await request(`${url}${path}`, { method, reset: true, headersTimeout: GUARD_MS, bodyTimeout: GUARD_MS, headers: method === 'POST' ? { 'gatewise-admin': '1' } : {} });
  return { status: r.statusCode, headers: r.headers as Record<string, string>, text: await r.body.text() };
}

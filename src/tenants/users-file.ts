import { watch, type FSWatcher } from 'node:fs';
import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import { onIpcLockChanged, withIpcLock } from '../state/ipc-lock.js';
import { yaml } from '../text/index.js';

export interface UsersFileLogger {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * A users file (YAML or JSON: a list of users, or `{ users: [...] }`) loaded at start and
 * reloaded without restart: fs.watch plus a periodic stat (watch events are not
 * reliable on every filesystem or across editors' rename-on-save). Every version is
 * validated by `parse` before it replaces the current users; a bad file keeps the old
 * users and logs an error.
 *
 * With `--workers N`, changes are made one worker at a time under a lock the primary holds
 * (state/ipc-lock.ts), each reading the file as the one before left it, and the other workers
 * re-read it as soon as it is written.
 */
export class UsersFile<T> {
  readonly #file: string;
  readonly #parse: (raw: unknown) => T;
  readonly #apply: (users: T) => void;
  readonly #logger: UsersFileLogger;
  readonly #intervalMs: number;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #lastSig = '';
  #loading: Promise<void> | undefined;
  readonly #lockName: string;
  #unlisten: (() => void) | undefined;
  /** How many versions were applied (the first load included) and rejected. */
  loads = 0;
  rejected = 0;

  constructor(file: string, opts: { parse: (raw: unknown) => T; apply: (users: T) => void; logger: UsersFileLogger; intervalMs?: number }) {
    this.#file = file;
    this.#lockName = `users-file:${resolve(file)}`;
    this.#parse = opts.parse;
    this.#apply = opts.apply;
    this.#logger = opts.logger;
    this.#intervalMs = opts.intervalMs ?? 5000;
  }

  /** Read, parse and validate the file; throws when any step fails. */
  async read(): Promise<T> {
    return this.#parse((await this.#readRaw()).list);
  }

  /** The file's document and its list of users (a list, or `{ users: [...] }`). */
  async #readRaw(): Promise<{ doc: unknown; list: unknown }> {
    const text = await readFile(this.#file, 'utf8');
    const doc: unknown = /\.json$/i.test(this.#file) ? JSON.parse(text) : yaml().parse(text);
    const list = doc && typeof doc === 'object' && !Array.isArray(doc) && 'users' in doc ? (doc as { users: unknown }).users : doc;
    return { doc, list: list ?? [] };
  }

  /**
   * Change the users in the file (the admin API): `change` gets the file's entries as read and
   * returns the new ones; they are validated by `parse` (a bad result throws and the file is
   * left as it was), written atomically (a temporary file beside it, synced, renamed over it:
   * a reader never sees half a file), and applied at once. One change at a time, queued with
   * the watcher's reloads, and the watcher takes the written version as already seen, so the
   * two never fight. Comments in a YAML users file do not survive a change.
   */
  update(change: (entries: unknown[]) => unknown[]): Promise<T> {
    const run = this.#queue.then(() => withIpcLock(this.#lockName, () => this.#change(change)));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** One read-change-write (under the group's lock with --workers). */
  async #change(change: (entries: unknown[]) => unknown[]): Promise<T> {
    const { doc, list } = await this.#readRaw();
    const next = change(Array.isArray(list) ? [...list] : []);
    const users = this.#parse(next);
    const wrapped = doc && typeof doc === 'object' && !Array.isArray(doc) ? { ...(doc as object), users: next } : next;
    const text = /\.json$/i.test(this.#file) ? JSON.stringify(wrapped, null, 2) + '\n' : yaml().stringify(wrapped);
    const tmp = `${this.#file}.${process.pid}.${Date.now()}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, this.#file);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw err;
    }
    this.#lastSig = await this.#sig();
    this.#apply(users);
    this.loads++;
    return users;
  }

  /** Changes and reloads, one at a time. */
  #queue: Promise<unknown> = Promise.resolve();

  async #sig(): Promise<string> {
    const s = await stat(this.#file);
    return `${s.mtimeMs}|${s.size}|${s.ino}`;
  }

  /** Load now (throws on a bad file) and start watching. */
  async start(): Promise<T> {
    const sig = await this.#sig();
    const users = await this.read();
    this.#lastSig = sig;
    this.#apply(users);
    this.loads++;
    try {
      this.#watcher = watch(this.#file, { persistent: false }, () => this.#soon());
      this.#watcher.on('error', () => {});
    } catch {
      // Polling alone still works.
    }
    this.#timer = setInterval(() => this.#check(), this.#intervalMs);
    this.#timer.unref();
    // Another worker changed the file (--workers): read it now, after any check under way.
    this.#unlisten = onIpcLockChanged(this.#lockName, () => void this.#recheck());
    return users;
  }

  #soon(): void {
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => this.#check(true), 50);
    this.#debounce.unref();
  }

  async #recheck(): Promise<void> {
    while (this.#loading) await this.#loading;
    await this.#check(true);
  }

  async #check(force = false): Promise<void> {
    if (this.#loading) return;
    const previous = this.#queue;
    this.#loading = (async () => {
      await previous;
      try {
        const sig = await this.#sig();
        if (!force && sig === this.#lastSig) return;
        this.#lastSig = sig;
        await this.reload(force ? 'the file changed (watch)' : 'the file changed (poll)');
      } catch (err) {
        this.rejected++;
        this.#logger.error({ component: 'forward', usersFile: this.#file, err: (err as Error).message }, `users file ${this.#file} cannot be read; keeping the current users`);
      }
    })().finally(() => {
      this.#loading = undefined;
    });
    this.#queue = this.#loading;
    await this.#loading;
  }

  /** Reload now; a bad file keeps the current users (logged, counted, not thrown). */
  async reload(reason = 'reload requested'): Promise<boolean> {
    let users: T;
    try {
      users = await this.read();
      this.#apply(users);
    } catch (err) {
      this.rejected++;
      this.#logger.error({ component: 'forward', type: 'users', event: 'rejected', usersFile: this.#file, reason, err: (err as Error).message }, `users file ${this.#file} is invalid (${reason}); keeping the current users`);
      return false;
    }
    this.loads++;
    this.#logger.info({ component: 'forward', type: 'users', event: 'reloaded', usersFile: this.#file, reason }, `users reloaded from ${this.#file}: ${reason}`);
    return true;
  }

  close(): void {
    this.#unlisten?.();
    this.#watcher?.close();
    clearInterval(this.#timer);
    clearTimeout(this.#debounce);
  }
}

import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readdirSync, readSync, statSync, unlinkSync } from 'node:fs';
import { readFile, writeFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { CacheEntry, type VaryValues } from './entry.js';
import { routeOfKey } from './memory-store.js';

/** The first line of an entry file: everything but the body, which follows it. */
interface FileHead {
  key: string;
  status: number;
  headers: string[];
  requestTime: number;
  responseTime: number;
  varyValues: VaryValues;
}

const SUFFIX = '.entry';
/** An entry's file name (`fileName`): 40 hex digits of a hash. */
const OWN_ENTRY = /^[0-9a-f]{40}\.entry$/;
/** A write in progress, left by a crash (`put`): the entry's name, a pid, a random tag. */
const OWN_TEMP = /^[0-9a-f]{40}\.entry\.\d+\.[0-9a-z]+\.tmp$/;
/** The longest head line read back (headers are bounded by the upstream's header limit). */
const MAX_HEAD = 256 * 1024;

/**
 * The optional disk tier (`cache.dir`): every stored response is also written to a file
 * under the directory (a head line of JSON, then the body), so the cache survives a restart
 * and holds more than memory. The index (key → files, bytes) is read at start (synchronously:
 * start-up, not the request path) and kept in memory, least recently used first; a memory
 * miss whose key is on disk is read back asynchronously (`load`) and put into memory. Writes
 * go to a temporary name and are renamed into place, so a crash never leaves half an entry.
 */
export class DiskTier {
  readonly dir: string;
  readonly maxBytes: number;
  readonly #index = new Map<string, Map<string, number>>();
  #bytes = 0;

  constructor(dir: string, maxBytes: number) {
    this.dir = dir;
    this.maxBytes = maxBytes;
    mkdirSync(dir, { recursive: true });
    const found: Array<{ file: string; key: string; size: number; mtime: number }> = [];
    for (const file of readdirSync(dir)) {
      // Only this tier's own names are read or removed: the directory may hold other files
      // (finding, session 29: every *.tmp and unreadable *.entry of the configured directory
      // was deleted, `cache.dir: /tmp` included).
      if (!OWN_ENTRY.test(file)) {
        if (OWN_TEMP.test(file)) tryUnlink(join(dir, file));
        continue;
      }
      const head = readHead(join(dir, file));
      if (head === undefined) {
        tryUnlink(join(dir, file));
        continue;
      }
      const st = statSync(join(dir, file));
      found.push({ file, key: head.key, size: st.size, mtime: st.mtimeMs });
    }
    found.sort((a, b) => a.mtime - b.mtime);
    for (const f of found) this.#add(f.key, f.file, f.size);
    this.#evict();
  }

  get bytes(): number {
    return this.#bytes;
  }

  get keys(): number {
    return this.#index.size;
  }

  has(key: string): boolean {
    return this.#index.has(key);
  }

  /** Read a key's stored responses back (newest first); files that cannot be read are forgotten. */
  async load(key: string): Promise<CacheEntry[]> {
    const files = this.#index.get(key);
    if (files === undefined) return [];
    const out: CacheEntry[] = [];
    for (const file of [...files.keys()].reverse()) {
      try {
        const buf = await readFile(join(this.dir, file));
        const nl = buf.indexOf(10);
        const head = JSON.parse(buf.subarray(0, nl).toString('utf8')) as FileHead;
        out.push(new CacheEntry({ ...head, body: buf.subarray(nl + 1) }));
      } catch {
        this.#remove(key, file);
      }
    }
    return out;
  }

  /** Write a stored response (replacing the file of the same key and Vary values). */
  save(e: CacheEntry): void {
    const file = fileName(e.key, e.varyValues);
    const head: FileHead = { key: e.key, status: e.status, headers: [...e.headers], requestTime: e.requestTime, responseTime: e.responseTime, varyValues: e.varyValues };
    const headBuf = Buffer.from(JSON.stringify(head) + '\n', 'utf8');
    const size = headBuf.length + e.body.length;
    if (size > this.maxBytes) return;
    this.#remove(e.key, file, false);
    this.#add(e.key, file, size);
    this.#evict(e.key);
    const path = join(this.dir, file);
    const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    // The newest write of a file wins, and a delete cancels the writes under way: each write has
    // a generation, and is renamed into place only while it is still the file's newest. Before
    // (adversarial review, session 30), a slow older write was renamed over a newer one, and a
    // write finishing after a purge put the purged response back (served after a restart).
    const gen = ++this.#generation;
    this.#writing.set(file, gen);
    const current = (): boolean => this.#writing.get(file) === gen;
    const done = writeFile(tmp, [headBuf, e.body])
      .then(async () => {
        if (!current()) {
          await unlink(tmp);
          return;
        }
        await rename(tmp, path);
        // Deleted or superseded while it was being renamed: the file goes again.
        if (!current()) await unlink(path).catch(() => {});
        else this.#writing.delete(file);
      })
      .catch(() => {
        // A full or read-only disk: the entry stays in memory only.
        void unlink(tmp).catch(() => {});
        if (current()) {
          this.#writing.delete(file);
          this.#remove(e.key, file, false);
        }
      })
      .finally(() => this.#pending.delete(done));
    this.#pending.add(done);
  }

  /** Writes under way (settled or not). */
  readonly #pending = new Set<Promise<void>>();

  /** Resolves once every write started so far has settled (renamed, dropped or failed). */
  async flushed(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  /** The newest write under way per file, by generation (`save`). */
  readonly #writing = new Map<string, number>();
  #generation = 0;

  delete(key: string): boolean {
    const files = this.#index.get(key);
    if (files === undefined) return false;
    for (const file of [...files.keys()]) this.#remove(key, file);
    return true;
  }

  deletePrefix(prefix: string, route?: string): number {
    let n = 0;
    for (const key of [...this.#index.keys()]) if (key.startsWith(prefix) && (route === undefined || routeOfKey(key) === route) && this.delete(key)) n++;
    return n;
  }

  #add(key: string, file: string, size: number): void {
    let files = this.#index.get(key);
    if (files === undefined) files = new Map();
    else this.#index.delete(key);
    this.#index.set(key, files);
    files.set(file, size);
    this.#bytes += size;
  }

  #remove(key: string, file: string, unlinkFile = true): void {
    const files = this.#index.get(key);
    const size = files?.get(file);
    if (files === undefined || size === undefined) return;
    files.delete(file);
    this.#bytes -= size;
    if (files.size === 0) this.#index.delete(key);
    if (unlinkFile) {
      // A write of it under way is not renamed into place (save).
      this.#writing.delete(file);
      void unlink(join(this.dir, file)).catch(() => {});
    }
  }

  #evict(keep?: string): void {
    for (const key of [...this.#index.keys()]) {
      if (this.#bytes <= this.maxBytes) return;
      if (key !== keep) this.delete(key);
    }
  }
}

function fileName(key: string, vary: VaryValues): string {
  return createHash('sha256').update(key).update('\0').update(JSON.stringify(vary)).digest('hex').slice(0, 40) + SUFFIX;
}

function readHead(path: string): FileHead | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const buf = Buffer.alloc(MAX_HEAD);
    const n = readSync(fd, buf, 0, MAX_HEAD, 0);
    const nl = buf.subarray(0, n).indexOf(10);
    if (nl < 0) return undefined;
    const head = JSON.parse(buf.subarray(0, nl).toString('utf8')) as FileHead;
    return typeof head.key === 'string' && Array.isArray(head.headers) ? head : undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function tryUnlink(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

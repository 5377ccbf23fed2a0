import { createHash } from 'node:crypto';
import { accessSync, chmodSync, closeSync, constants, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The ACME files on disk, under the configured storage folder (created 0700 when missing):
 * the account key and URL per directory, and per certificate its chain and key. Every file
 * is written 0600 to a temporary name and renamed over the old one, so a reader (this
 * process, a certificate store's watch, another node on a shared disk) never sees half a file.
 */
export class AcmeDiskStorage {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Undefined when the folder exists (or was created) and can be written; else a sentence saying why not. */
  writable(): string | undefined {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      accessSync(this.dir, constants.W_OK);
      return undefined;
    } catch (err) {
      return `the ACME storage folder ${this.dir} cannot be created or written (${(err as NodeJS.ErrnoException).code ?? 'EIO'})`;
    }
  }

  /** The files of an account at one directory URL (one account per directory). */
  #account(directory: string): { key: string; meta: string } {
    const id = createHash('sha256').update(directory).digest('hex').slice(0, 16);
    return { key: join(this.dir, `account-${id}.key`), meta: join(this.dir, `account-${id}.json`) };
  }

  /** The stored account key and URL (undefined when none is stored yet, or only its key). */
  readAccount(directory: string): { keyPem: string; url: string | undefined } | undefined {
    const f = this.#account(directory);
    const keyPem = readOptional(f.key);
    if (keyPem === undefined) return undefined;
    const meta = readOptional(f.meta);
    let url: string | undefined;
    if (meta !== undefined) {
      try {
        const parsed = JSON.parse(meta) as { url?: unknown };
        url = typeof parsed.url === 'string' ? parsed.url : undefined;
      } catch {
        url = undefined; // a damaged file: the account is looked up again by its key (RFC 8555 §7.3.1)
      }
    }
    return { keyPem, url };
  }

  writeAccountKey(directory: string, keyPem: string): void {
    this.#write(this.#account(directory).key, keyPem);
  }

  writeAccountUrl(directory: string, url: string): void {
    this.#write(this.#account(directory).meta, `${JSON.stringify({ directory, url }, null, 2)}\n`);
  }

  /** The files of the certificate named after its first host. */
  certificateFiles(firstHost: string): { cert: string; key: string } {
    return { cert: join(this.dir, `${firstHost}.crt`), key: join(this.dir, `${firstHost}.key`) };
  }

  /** Write a new certificate and key: the key first, so the pair on disk is never a new certificate with an old key for long. */
  writeCertificate(firstHost: string, certPem: string, keyPem: string): { cert: string; key: string } {
    const f = this.certificateFiles(firstHost);
    this.#write(f.key, keyPem);
    this.#write(f.cert, certPem);
    return f;
  }

  /**
   * Take the order lock of a certificate: the processes that share this folder (the workers of
   * `--workers`, nodes on a shared disk) order one at a time, and the others then find the new
   * certificate on disk. A lock older than `staleMs` (its holder died) is broken. Returns the
   * release, or undefined when another process holds it.
   */
  tryLock(firstHost: string, staleMs: number): (() => void) | undefined {
    const file = join(this.dir, `${firstHost}.lock`);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(file, 'wx', 0o600);
        writeSync(fd, `${process.pid} ${new Date().toISOString()}\n`);
        closeSync(fd);
        return () => {
          try {
            unlinkSync(file);
          } catch {
            // already broken by another process as stale
          }
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        let age: number;
        try {
          age = Date.now() - statSync(file).mtimeMs;
        } catch {
          continue; // released meanwhile: try again
        }
        if (age < staleMs) return undefined;
        try {
          unlinkSync(file);
        } catch {
          // another process broke it first
        }
      }
    }
    return undefined;
  }

  /** HTTP-01 tokens are also written here, so a process that shares the folder answers a validation that reaches it. */
  writeChallenge(token: string, keyAuthorization: string): void {
    if (!TOKEN.test(token)) return;
    mkdirSync(join(this.dir, 'challenges'), { recursive: true, mode: 0o700 });
    this.#write(join(this.dir, 'challenges', token), keyAuthorization);
  }

  deleteChallenge(token: string): void {
    if (!TOKEN.test(token)) return;
    try {
      unlinkSync(join(this.dir, 'challenges', token));
    } catch {
      // gone already
    }
  }

  /** A token written by any process sharing the folder (undefined: none, or not a token). */
  readChallenge(token: string): string | undefined {
    return TOKEN.test(token) ? readOptional(join(this.dir, 'challenges', token)) : undefined;
  }

  #write(file: string, text: string): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, text, { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
  }
}

/** ACME tokens are base64url (RFC 8555 §8.1); anything else is never a file name here. */
const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;

function readOptional(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

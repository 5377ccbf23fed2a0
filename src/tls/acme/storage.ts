import { createHash } from 'node:crypto';
import { accessSync, chmodSync, constants, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
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

  #write(file: string, text: string): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, text, { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
  }
}

function readOptional(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

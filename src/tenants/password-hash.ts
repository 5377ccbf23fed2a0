import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { HASH_RE, passwordHashProblem } from '../config/scrypt-hash.js';

export { MAX_SCRYPT_MEMORY, MAX_SCRYPT_WORK, passwordHashProblem } from '../config/scrypt-hash.js';

/**
 * Password hashes in a self-describing string: `scrypt$N$r$p$saltB64$hashB64`.
 * The parameters travel with the hash, so they can be raised later without breaking
 * stored entries.
 */

export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

export const DEFAULT_SCRYPT: ScryptParams = { N: 16384, r: 8, p: 1 };

const KEY_LENGTH = 32;
const SALT_LENGTH = 16;

export interface ParsedHash extends ScryptParams {
  salt: Buffer;
  hash: Buffer;
}

function scrypt(password: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** The `maxmem` scrypt needs for these parameters. */
export function scryptMemoryFor(p: ScryptParams): number {
  // scrypt needs about 128 * N * r bytes (plus p * 128 * r); leave generous headroom.
  return 256 * p.N * p.r + 1024 * 1024;
}

/** Parse a stored hash; undefined when it cannot be used (`passwordHashProblem` says why). */
export function parsePasswordHash(s: string): ParsedHash | undefined {
  if (passwordHashProblem(s) !== undefined) return undefined;
  const m = HASH_RE.exec(s)!;
  const N = Number(m[1]);
  const r = Number(m[2]);
  const p = Number(m[3]);
  const salt = Buffer.from(m[4]!, 'base64');
  const hash = Buffer.from(m[5]!, 'base64');
  if (salt.length < 8 || hash.length < 16) return undefined;
  return { N, r, p, salt, hash };
}

export function isPasswordHash(s: string): boolean {
  return parsePasswordHash(s) !== undefined;
}

/** Hash a password into the stored string format. */
export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(SALT_LENGTH);
  const key = await scrypt(password, salt, KEY_LENGTH, { ...params, maxmem: scryptMemoryFor(params) });
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** Check a password against a stored hash in constant time (for equal-length keys). */
export async function verifyPassword(password: string, stored: string | ParsedHash): Promise<boolean> {
  const parsed = typeof stored === 'string' ? parsePasswordHash(stored) : stored;
  if (!parsed) return false;
  const key = await scrypt(password, parsed.salt, parsed.hash.length, {
    N: parsed.N,
    r: parsed.r,
    p: parsed.p,
    maxmem: scryptMemoryFor(parsed),
  });
  return key.length === parsed.hash.length && timingSafeEqual(key, parsed.hash);
}

/**
 * The stored password hash format, `scrypt$N$r$p$saltB64$hashB64`, and the parameters a hash
 * may carry: the config, the users file and the admin API validate with it
 * (`passwordHashProblem`), and `tenants/password-hash.ts` parses and checks with it.
 */

/** The format: N, r, p, the salt and the hash (base64). */
export const HASH_RE = /^scrypt\$(\d{1,8})\$(\d{1,3})\$(\d{1,3})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

/**
 * The most memory one password check may take (scrypt's 128·N·r bytes): 128 MiB, OWASP's
 * recommended parameters (N=2^17, r=8). Every check as a user runs the parameters of its stored
 * hash, and any client can make one by sending a wrong password, so a hash is refused where it
 * enters (config, users file, admin API) above this. Before (adversarial review, session 31) a
 * hash with N=2^20, r=32, p=16 was taken: ~4 GiB and 16 passes per wrong password.
 */
export const MAX_SCRYPT_MEMORY = 128 * 1024 * 1024;
/** The most work one check may be (N·r·p): 8× that of the hashes `gatewise passwd` makes (N=2^14, r=8, p=1). */
export const MAX_SCRYPT_WORK = 2 ** 20;

/**
 * Why a stored hash cannot be used: not the scrypt string format, N not a power of two above 1,
 * or one check dearer than the caps above; undefined when it can.
 */
export function passwordHashProblem(s: string): string | undefined {
  const m = HASH_RE.exec(s);
  if (!m) return 'expected a scrypt hash (scrypt$N$r$p$salt$hash); create one with `gatewise passwd`';
  const N = Number(m[1]);
  const r = Number(m[2]);
  const p = Number(m[3]);
  if (N < 2 || (N & (N - 1)) !== 0) return `scrypt N must be a power of two above 1, not ${N}`;
  if (r < 1 || p < 1) return `scrypt r and p must be at least 1 (r=${r}, p=${p})`;
  const memory = 128 * N * r;
  if (memory > MAX_SCRYPT_MEMORY || N * r * p > MAX_SCRYPT_WORK) {
    return `scrypt N=${N} r=${r} p=${p} takes ${formatMiB(memory)} and ${p} pass${p === 1 ? '' : 'es'} per check; at most ${formatMiB(MAX_SCRYPT_MEMORY)} (128·N·r) and N·r·p ≤ ${MAX_SCRYPT_WORK} (8× \`gatewise passwd\`'s), since any client can make a check with a wrong password`;
  }
  if (Buffer.from(m[4]!, 'base64').length < 8 || Buffer.from(m[5]!, 'base64').length < 16) return 'the salt must be at least 8 bytes and the hash at least 16';
  return undefined;
}

function formatMiB(bytes: number): string {
  return bytes >= 1024 ** 3 ? `${bytes / 1024 ** 3} GiB` : `${Math.round((bytes / 1024 ** 2) * 100) / 100} MiB`;
}

/** What a redacted value reads as. */
export const REDACTED = '[redacted]';

/** Keys whose string values are secrets: passwords, password hashes, tokens, keys, credentials. */
const SECRET_KEY = /(password|passwd|secret|token|api[-_]?key|access[-_]?key|private[-_]?key|authorization|credential)s?$|^(hash|key|cookie)$/i;

/**
 * `scheme://user:pass@host` → `scheme://[redacted]@host`, anywhere in a string. Up to the last
 * `@` of the authority: a password may hold an `@` (finding, session 29: the part after it was shown).
 */
function stripUserinfo(s: string): string {
  return s.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#]*@/gi, `$1${REDACTED}@`);
}

/**
 * A deep copy of a config (or any JSON-like value) with its secrets replaced: the values of
 * secret-named keys (passwords and their scrypt hashes, tokens, keys, Authorization) and the
 * credentials in URLs (an upstream proxy's `http://user:pass@host`). Numbers, booleans and
 * the shape stay, so the running config can be read and compared.
 */
export function redactSecrets(value: unknown, key = ''): unknown {
  if (typeof value === 'string') return SECRET_KEY.test(key) ? REDACTED : stripUserinfo(value);
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v, key));
  if (value instanceof Map) return redactSecrets(Object.fromEntries(value), key);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = redactSecrets(v, k);
    return out;
  }
  return value;
}

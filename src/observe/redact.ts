/** What a redacted value reads as. */
export const REDACTED = '[redacted]';

/**
 * Whether a name (a config key, a query parameter) says its value is a secret: passwords,
 * passphrases, password hashes, tokens, keys (API, access, private, HMAC, TSIG, signing),
 * credentials, Authorization. The name is cut into words (camelCase, `-`, `_`, `.`).
 * Anywhere in it: `password`, `passwd`, `passphrase`, `secret`, `credential`, `hmac`, `tsig`,
 * `privateKey`, `apiKey`, `accessKey`. As its last word (`sharedKey`, `bearerAuth`,
 * `userPass`, `passwordHash`, `X-Amz-Signature`): `key`, `pass`, `auth`, `token(s)`, `hash`,
 * `pwd`, `psk`, `cookie`, `signature`, `authorization`, `sig`. Not secrets: `keyPrefix`,
 * `keyFile`, `maxKeys`, `monkey`, `tokenizer`, `author`, `passive`.
 */
const ANYWHERE = /passw(or)?d|passphrase|secret|credential|hmac|tsig|privatekey|apikey|accesskey/;
const LAST_WORD = new Set(['key', 'pass', 'auth', 'token', 'tokens', 'hash', 'pwd', 'psk', 'cookie', 'signature', 'authorization', 'sig']);
export function isSecretName(name: string): boolean {
  const words = name.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase().split(/[^a-z0-9]+/).filter(Boolean);
  return ANYWHERE.test(words.join('')) || LAST_WORD.has(words[words.length - 1] ?? '');
}

/** Config paths whose every value is a secret whatever its key: header and query matches (often a shared secret) and a certificate provider's own options. */
function secretSubtree(path: readonly string[]): boolean {
  const n = path.length;
  if (n >= 2 && path[n - 2] === 'match' && (path[n - 1] === 'headers' || path[n - 1] === 'query')) return true;
  return n >= 2 && path[n - 1] === 'options' && (path[n - 2] === 'dns' || path.includes('acme'));
}

/** Keys that name a secret but hold something else in the config: a TLS key's file path, the cookie a balancer hashes on, the retry flag for an Idempotency-Key. */
function notSecret(path: readonly string[], key: string): boolean {
  const parent = path[path.length - 2];
  return (key === 'key' && parent === 'certificates') || (key === 'cookie' && parent === 'hashOn') || (key === 'idempotencyKey' && parent === 'retry');
}

/** A PEM private key, under whatever key it sits. */
const PEM_PRIVATE = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

/**
 * `scheme://user:pass@host` → `scheme://[redacted]@host`, anywhere in a string. Up to the last
 * `@` of the authority: a password may hold an `@` (finding, session 29: the part after it was shown).
 */
function stripUserinfo(s: string): string {
  return s.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#]*@/gi, `$1${REDACTED}@`);
}

/** `?password=x&db=0` → `?password=[redacted]&db=0`: the value of every query (or fragment) parameter named like a secret, anywhere in a string. */
function stripQuerySecrets(s: string): string {
  return s.replace(/([?&;#])([^=&;#?\s]+)=([^&;#\s]*)/g, (all, sep: string, name: string) => {
    let decoded = name;
    try {
      decoded = decodeURIComponent(name);
    } catch {
      // the raw name then
    }
    return isSecretName(decoded) ? `${sep}${name}=${REDACTED}` : all;
  });
}

/** A string with the credentials of the URLs in it redacted (userinfo, secret query parameters): for `/config` and for every URL the gateway logs. */
export function redactUrl(s: string): string {
  return stripQuerySecrets(stripUserinfo(s));
}

function redactAll(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactAll);
  if (value instanceof Map) return redactAll(Object.fromEntries(value));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = redactAll(v);
    return out;
  }
  return value === null || value === undefined ? value : REDACTED;
}

function walk(value: unknown, path: string[]): unknown {
  const key = path[path.length - 1] ?? '';
  if (typeof value === 'string') {
    if (PEM_PRIVATE.test(value)) return REDACTED;
    return isSecretName(key) && !notSecret(path, key) ? REDACTED : redactUrl(value);
  }
  // A number or a boolean can be a secret too (a PIN, a numeric key): hidden under a secret's name as a string is.
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return isSecretName(key) && !notSecret(path, key) ? REDACTED : value;
  if (Array.isArray(value)) return value.map((v) => walk(v, path));
  if (value instanceof Map) return walk(Object.fromEntries(value), path);
  if (value !== null && typeof value === 'object') {
    if (secretSubtree(path)) return redactAll(value);
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = walk(v, [...path, k]);
    return out;
  }
  return value;
}

/**
 * A deep copy of a config (or any JSON-like value) with its secrets replaced: the values of
 * secret-named keys (passwords and their scrypt hashes, tokens, keys, Authorization), strings,
 * numbers and booleans alike, every value of `routes[].match.headers`, `routes[].match.query`
 * and of a certificate provider's `options` (`tls.acme.dns.options`), PEM private keys, and
 * the credentials in URLs (an upstream proxy's `http://user:pass@host`, a Redis URL's
 * `?password=`). Other numbers and booleans, the keys and the shape stay, so the running
 * config can be read and compared.
 */
export function redactSecrets(value: unknown, key = ''): unknown {
  return walk(value, key === '' ? [] : [key]);
}

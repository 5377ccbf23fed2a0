/**
 * tchar (RFC 9110 §5.6.2) by byte: 1 for a byte a token (a method, a field name, a
 * chunk-extension name) may hold, 0 for any other byte 0–255. One table for the parsers
 * written for speed (forward/connect-head.ts, pool/native-client.ts).
 */
export const TCHAR: Uint8Array = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;

/** A byte a field value may hold (RFC 9110 §5.5: VCHAR, obs-text, SP, HTAB): 1, else 0. */
export const VALUE_BYTE: Uint8Array = new Uint8Array(256);
VALUE_BYTE[0x09] = 1;
for (let c = 0x20; c <= 0x7e; c++) VALUE_BYTE[c] = 1;
for (let c = 0x80; c <= 0xff; c++) VALUE_BYTE[c] = 1;

/** A field name: one or more tchar. A concatenation of names passes exactly when each does (pool/native-client.ts judges a head's names at once). */
export const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A byte a field value may not hold (VCHAR, obs-text, SP and HTAB are allowed: what Node's own check allows). */
export const BAD_VALUE_RE = /[^\t\x20-\x7e\x80-\xff]/;

/**
 * Whether `name` is `lower` (a lower-case ASCII constant) in any letter case, without making
 * a lower-cased copy: String#toLowerCase on a name with capitals calls into V8's runtime and
 * allocates (bench/icount.ts, 2026-12-05: ~300 instructions a call, ~3k per proxied request
 * on the net front where the framing names of a head were lower-cased to be compared).
 */
export function nameIs(name: string, lower: string): boolean {
  const n = lower.length;
  if (name.length !== n) return false;
  if (name === lower) return true;
  for (let i = 0; i < n; i++) {
    let c = name.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) c += 0x20;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * `s` in lower case, itself when it has nothing to change (the common case: undici, curl's
 * Host, HTTP/2 names) without the call into V8's runtime that toLowerCase makes for a
 * one-byte string. Any byte above 0x7f goes to toLowerCase, so the result is always its.
 */
export function lowerCase(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c >= 0x41 && c <= 0x5a) || c > 0x7f) return s.toLowerCase();
  }
  return s;
}

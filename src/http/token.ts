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

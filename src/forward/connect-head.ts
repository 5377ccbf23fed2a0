import type { IncomingHttpHeaders } from 'node:http';
import { TCHAR } from '../http/token.js';

/** What the CONNECT handler needs of a request: its target and header fields. */
export interface ConnectRequest {
  url: string;
  headers: IncomingHttpHeaders;
  /** Every field as received, from Node's parser (the fast path takes no repeated field, so has none). */
  rawHeaders?: readonly string[];
}

export interface ParsedConnectHead extends ConnectRequest {
  /** Bytes of the head, CRLF CRLF included; what follows is early tunnel data. */
  length: number;
  /** Header field lines (the fast path takes no repeated field: one per key of `headers`). */
  fields: number;
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const PREFIX = 'CONNECT ';
const MAX_FIELDS = 64;


// Characters of an authority-form target this fast path accepts: host names, IPv4,
// bracketed IPv6 and the port. Anything else (percent-encoding, zone ids, userinfo)
// goes to the full parser.
const TARGET = new Uint8Array(128);
for (const c of '.-_:[]') TARGET[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TARGET[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TARGET[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TARGET[c] = 1;

/**
 * A fast path for the common CONNECT head, checked byte by byte against a strict
 * subset of RFC 9112: `CONNECT host:port HTTP/1.x`, CRLF line ends, token field
 * names, visible-ASCII field values, no obs-fold, no repeated field, no message body
 * framing, within `maxSize`. Returns undefined for anything outside that subset, and
 * the caller hands the bytes to Node's own parser (llhttp), which accepts or refuses
 * them as it does for every other request: the fast path never accepts what llhttp
 * would refuse, it only skips building an IncomingMessage for a tunnel.
 *
 * Why by hand: going through http.Server for a CONNECT (parser allocation, connection
 * tracking, IncomingMessage, the 'connect' hand-off) cost ~60 µs of ~450 µs CPU per
 * tunnel on the CONNECT-per-request benchmark.
 */
export function parseConnectHead(buf: Buffer, maxSize: number): ParsedConnectHead | undefined {
  const n = Math.min(buf.length, maxSize);
  if (n < PREFIX.length + 16 || buf[0] !== 0x43) return undefined;
  // One conversion for the whole read (Buffer#toString per field cost more than the scan).
  const text = buf.toString('latin1', 0, n);
  if (!text.startsWith(PREFIX)) return undefined;
  // request-line: target, SP, HTTP-version, CRLF
  let i = PREFIX.length;
  const targetStart = i;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === SP) break;
    if (c >= 128 || TARGET[c] !== 1) return undefined;
    i++;
  }
  if (i === targetStart || i + 10 > n) return undefined;
  const url = text.slice(targetStart, i);
  if (!text.startsWith('HTTP/1.1\r\n', i + 1) && !text.startsWith('HTTP/1.0\r\n', i + 1)) return undefined;
  i += 11;
  const headers: IncomingHttpHeaders = {};
  for (let fields = 0; ; fields++) {
    if (i + 1 >= n) return undefined; // incomplete (or too large): let the full parser decide
    if (text.charCodeAt(i) === CR) {
      if (text.charCodeAt(i + 1) !== LF) return undefined;
      return { url, headers, length: i + 2, fields };
    }
    if (fields === MAX_FIELDS) return undefined;
    // field-name ":"
    const nameStart = i;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x3a) break;
      if (c >= 128 || TCHAR[c] !== 1) return undefined;
      i++;
    }
    if (i === nameStart || i >= n) return undefined;
    const name = text.slice(nameStart, i).toLowerCase();
    i++;
    // OWS field-value OWS CRLF; the value is visible ASCII with inner SP / HTAB
    while (i < n && (text.charCodeAt(i) === SP || text.charCodeAt(i) === HTAB)) i++;
    const valueStart = i;
    let valueEnd = i;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === CR) break;
      if (c > 0x20 && c < 0x7f) valueEnd = i + 1;
      else if (c !== SP && c !== HTAB) return undefined;
      i++;
    }
    if (i + 1 >= n || text.charCodeAt(i + 1) !== LF) return undefined;
    i += 2;
    if (name === 'content-length' || name === 'transfer-encoding' || Object.hasOwn(headers, name) || name === '__proto__') return undefined;
    headers[name] = text.slice(valueStart, valueEnd);
  }
}

import { stripHopByHop, viaValue } from '../http/headers.js';

/** Request fields never passed on, beyond the hop-by-hop set (lower-case). */
const DROP_REQUEST = new Set(['host', 'expect']);

/**
 * The header list sent to the destination: hop-by-hop fields (Proxy-Authorization,
 * Proxy-Connection, Connection and what it names, TE, Transfer-Encoding, …) removed,
 * Host set to the target's authority, our Via appended.
 */
export function forwardRequestHeaders(rawHeaders: readonly string[], authority: string, httpVersion: string, pseudonym: string): string[] {
  const kept = stripHopByHop(rawHeaders, 'request');
  const out: string[] = ['host', authority];
  for (let i = 0; i < kept.length; i += 2) {
    const lower = kept[i]!.toLowerCase();
    if (DROP_REQUEST.has(lower)) continue;
    out.push(kept[i]!, kept[i + 1]!);
  }
  out.push('via', viaValue(httpVersion, pseudonym));
  return out;
}

/** Approximate size of a header section on the wire (for metering). */
export function headerBytes(raw: readonly string[]): number {
  let n = 2;
  for (let i = 0; i < raw.length; i += 2) n += raw[i]!.length + raw[i + 1]!.length + 4;
  return n;
}

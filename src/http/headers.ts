/**
 * Header rules shared by the reverse gateway and the forward proxy (RFC 9110 §7.6).
 * Works on Node's flat raw header arrays ([name, value, name, value, ...]) in one pass.
 */

/** Hop-by-hop fields always removed, lower-case. */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'transfer-encoding',
  'upgrade',
]);

/** Names listed in Connection header values (lower-case), or undefined when none. */
export function connectionListed(connectionValues: readonly string[]): Set<string> | undefined {
  let set: Set<string> | undefined;
  for (const v of connectionValues) {
    for (const part of v.split(',')) {
      const n = part.trim().toLowerCase();
      if (n && n !== 'close' && n !== 'keep-alive') (set ??= new Set()).add(n);
    }
  }
  return set;
}

/**
 * Copy a flat raw header list, dropping hop-by-hop fields and those named in Connection.
 * `keep` names hop-by-hop fields the caller wants back (e.g. 'trailer' on responses).
 */
export function stripHopByHop(raw: readonly string[], keep?: ReadonlySet<string>): string[] {
  let connValues: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === 'connection') (connValues ??= []).push(raw[i + 1]!);
  }
  const listed = connValues ? connectionListed(connValues) : undefined;
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if ((HOP_BY_HOP.has(lower) && !keep?.has(lower)) || listed?.has(lower)) continue;
    out.push(name, raw[i + 1]!);
  }
  return out;
}

/** The `Via` value this hop adds, for the received protocol version. */
export function viaValue(httpVersion: string, pseudonym: string): string {
  return `${httpVersion === '1.0' ? '1.0' : httpVersion === '2.0' ? '2' : '1.1'} ${pseudonym}`;
}

/** True when any Via element names `pseudonym` (loop detection). */
export function viaContains(viaValues: readonly string[], pseudonym: string): boolean {
  for (const v of viaValues) {
    for (const el of v.split(',')) {
      const parts = el.trim().split(/\s+/);
      if (parts[1] === pseudonym) return true;
    }
  }
  return false;
}

import { HOP_BY_HOP, connectionListed, fieldText, type RawField } from '../http/headers.js';
import { gatewayWrites } from './request-headers.js';

/** Response header helpers of the cache phase and its background revalidation. */

/** The response's fields as the store keeps them: hop-by-hop and Connection-listed ones dropped. */
export function storedPairs(raw: readonly RawField[]): string[] {
  let listed: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) if (fieldText(raw[i]!).toLowerCase() === 'connection') listed = connectionListed(fieldText(raw[i + 1]!), listed);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = fieldText(raw[i]!);
    const n = name.toLowerCase();
    if (HOP_BY_HOP.response.has(n) || n === 'proxy-status' || n === 'cache-status' || listed?.has(n)) continue;
    out.push(name, fieldText(raw[i + 1]!));
  }
  return out;
}

/** Lower-case name → value (list fields joined) for the storability rules. */
export function headerObject(raw: readonly RawField[]): Record<string, string> {
  const o: Record<string, string> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const n = fieldText(raw[i]!).toLowerCase();
    const v = fieldText(raw[i + 1]!);
    o[n] = o[n] === undefined ? v : `${o[n]}, ${v}`;
  }
  return o;
}

export function varyOf(pairs: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < pairs.length; i += 2) {
    if (pairs[i]!.toLowerCase() !== 'vary') continue;
    for (const f of pairs[i + 1]!.split(',')) {
      const t = f.trim().toLowerCase();
      if (t.length > 0) out.push(t);
    }
  }
  return out;
}

/**
 * Whether a response's Vary names a request field the gateway writes itself on its way
 * upstream (Via, Forwarded, X-Forwarded-*, X-Real-IP, the request id): the store matches
 * variants on the client's fields, which for these are not what the upstream saw (finding,
 * adversarial review, session 29: `Vary: X-Forwarded-For` answers for one client address
 * were hits for every other client). Such a response is not stored.
 */
export function variesOnGatewayField(vary: string | undefined, requestIdHeader: string): boolean {
  if (vary === undefined) return false;
  for (const f of vary.split(',')) if (gatewayWrites(f.trim().toLowerCase(), requestIdHeader)) return true;
  return false;
}

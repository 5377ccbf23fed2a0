import { createHmac, randomBytes } from 'node:crypto';
import { HOP_BY_HOP, connectionListed, fieldText, type RawField } from '../http/headers.js';
import { varyValuesOf, type CacheEntry, type RequestHeaders } from '../cache/index.js';
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

/** The Set-Cookie fields of an upstream head, as pairs (undefined: none): the answer to the request that brought them carries them, the store never. */
export function setCookiePairs(raw: readonly RawField[]): string[] | undefined {
  let out: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = fieldText(raw[i]!);
    if (name.length === 10 && name.toLowerCase() === 'set-cookie') (out ??= []).push(name, fieldText(raw[i + 1]!));
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

/** The request fields that say who the client is: a background revalidation never sends another client's. */
const CREDENTIALS = new Set(['cookie', 'authorization', 'proxy-authorization']);

export function isCredential(name: string): boolean {
  return CREDENTIALS.has(name.toLowerCase());
}

/** The key of `credentialDigest`, new in every process (digests are never written anywhere). */
const DIGEST_KEY = randomBytes(32);

/**
 * A keyed digest (HMAC-SHA256, a per-process key) of the credential fields among request header
 * pairs, in their order; undefined when there are none. It tells whether two requests carried the
 * same credentials without keeping them: `CacheEntry.credentials`.
 */
export function credentialDigest(pairs: readonly string[]): string | undefined {
  let h: ReturnType<typeof createHmac> | undefined;
  for (let i = 0; i < pairs.length; i += 2) {
    const n = pairs[i]!.toLowerCase();
    if (!CREDENTIALS.has(n)) continue;
    (h ??= createHmac('sha256', DIGEST_KEY)).update(n).update('\0').update(pairs[i + 1]!).update('\0');
  }
  return h?.digest('base64');
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
 * Whether a response's Vary names a request field that went upstream other than the client
 * sent it: dropped (hop-by-hop, listed in Connection, an underscore name), written or changed
 * by the gateway (Via, Forwarded, X-Forwarded-*, X-Real-IP, the request id: these always, as
 * `request-headers.ts` `gatewayWrites` names them) or by a request hook. The response
 * describes the value the upstream saw, and the store matches variants on the client's
 * values: stored, it would answer other clients with another variant. Findings:
 * `Vary: X-Forwarded-For` answers for one client address were hits for every other client
 * (adversarial review, session 29); `Accept-Language: fr` with `Connection: accept-language`
 * stored the upstream's default page as the French one (session 30). Such a response is not
 * stored (nor is a stored one renamed for this request's values). Values compare as the
 * store compares them (`varyValuesOf`: list members trimmed, field lines joined).
 */
export function variesOnAlteredField(vary: readonly string[], client: RequestHeaders, forwarded: readonly string[], requestIdHeader: string): boolean {
  if (vary.length === 0) return false;
  // The fields the gateway may write: never stored on, whatever this request's values (the
  // upstream's answer may follow what the gateway writes for other clients).
  for (const f of vary) if (gatewayWrites(f, requestIdHeader)) return true;
  const sent = varyValuesOf(vary, client);
  const seen: Record<string, string[] | undefined> = {};
  for (let i = 0; i < forwarded.length; i += 2) {
    const n = forwarded[i]!.toLowerCase();
    if (vary.includes(n)) (seen[n] ??= []).push(forwarded[i + 1]!);
  }
  const upstream = varyValuesOf(vary, seen);
  for (let i = 0; i < vary.length; i++) if (sent[i] !== upstream[i]) return true;
  return false;
}

/** A stored response freshened by a 304 or a HEAD answer (`freshened`). */
export interface Freshened {
  readonly entry: CacheEntry;
  /** Its fields as the storability rules read them, with the update's Set-Cookie (which the entry never keeps). */
  readonly fields: Record<string, string>;
  /** False: its new Vary names a field that went upstream other than the client sent it (`variesOnAlteredField`): not kept. */
  readonly mayStore: boolean;
}

/**
 * `stored` freshened by an update's fields (RFC 9111 §4.3.4, §4.3.5: `CacheEntry.updated`), for the
 * client's request `client` sent upstream as `sent`. `rename`: selected for this request's values
 * of its Vary fields (a 304 on a Vary miss). When the update changes the Vary field names, the
 * stored values are this request's values of the new names; before session 38 the old values
 * stayed, read against the new names (the validated client's next request missed, and one whose
 * new field's value equalled an old value hit). Such a response is not kept when the new Vary
 * names a field that went upstream other than the client sent it, as a new response is not.
 */
export function freshened(stored: CacheEntry, update: readonly string[], requestTime: number, responseTime: number, client: RequestHeaders, sent: readonly string[], requestIdHeader: string, rename: boolean): Freshened {
  let entry = stored.updated(update, requestTime, responseTime, rename ? varyValuesOf(stored.vary, client) : stored.varyValues);
  let mayStore = true;
  if (!sameNames(entry.vary, stored.vary)) {
    mayStore = !variesOnAlteredField(entry.vary, client, sent, requestIdHeader);
    entry = stored.updated(update, requestTime, responseTime, varyValuesOf(entry.vary, client));
  }
  const fields = headerObject(entry.headers);
  for (let i = 0; i < update.length; i += 2) {
    if (update[i]!.length !== 10 || update[i]!.toLowerCase() !== 'set-cookie') continue;
    fields['set-cookie'] = fields['set-cookie'] === undefined ? update[i + 1]! : `${fields['set-cookie']}, ${update[i + 1]!}`;
  }
  return { entry, fields, mayStore };
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

import type { EndedBy, Failure, Phase, ProxyErrorType } from '../failure/index.js';
import type { FinishFields } from '../tenants/index.js';

/** The classification context of a failure before anything was connected. */
export const NOT_CONNECTED = { connected: false, responseStarted: false, headersReceived: false } as const;

/**
 * A record's fields from the front's (status, reply, method) and the outcome, as one
 * object literal of a fixed shape: spreading the front's fields into a literal made V8
 * build it key by key on every tunnel.
 */
export function fieldsOf(front: FinishFields, error: ProxyErrorType | null, endedBy: EndedBy, address: string | null | undefined, refused = false, reason?: string, phase?: Phase, detail?: string): FinishFields {
  return { status: front.status, reply: front.reply, method: front.method, error, endedBy, address, refused, reason, phase, detail };
}

/**
 * A record's fields for something the proxy cut (close() at the drain timeout: `connectionCut`'s
 * failure), on top of `base` (the front's status, reply, method, address): the failure's type,
 * reason, phase and detail, ended by the gateway. One translation for the HTTP request, the
 * tunnel, the pipelined request never started, the SOCKS handshake and the UDP association.
 * `detail` is appended to the failure's words when the case needs its own; the status, where
 * the record has one, is the caller's (the failure's, or the answer's already sent).
 */
export function cutFields(f: Failure, base: FinishFields, detail?: string): FinishFields {
  return { ...base, error: f.type, reason: f.reason, phase: f.phase, detail: detail === undefined ? f.detail : `${f.detail ?? ''}; ${detail}`, endedBy: 'gateway' };
}

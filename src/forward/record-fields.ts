import type { EndedBy, Phase, ProxyErrorType } from '../failure/index.js';
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

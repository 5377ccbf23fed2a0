import type { ListenerConfig } from '../config/schema.js';
import type { ClientBodyLimits } from '../timing/body-timer.js';
import { ms } from './context.js';

/**
 * What a listener allows its clients' own slowness (the upstream's has the cluster's
 * timeouts): the request body's gap and minimum rate, and how long a response may wait
 * for a client that does not read it. 0 turns a limit off.
 */
export interface ClientLimits {
  readonly body: ClientBodyLimits;
  /** Longest wait for a client to take a full buffer of the response (the send timeout). */
  readonly sendMs: number;
}

export const NO_CLIENT_LIMITS: ClientLimits = { body: { gapMs: 0, minRate: 0 }, sendMs: 0 };

export function clientLimits(l: ListenerConfig): ClientLimits {
  return { body: { gapMs: ms(l.clientBodyTimeout), minRate: l.clientBodyMinRate }, sendMs: ms(l.sendTimeout) };
}

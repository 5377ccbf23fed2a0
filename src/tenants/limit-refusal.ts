import { Failure, type FailureInit } from '../failure/index.js';

/**
 * Refusals by a customer's own plan, or of a client's own behaviour (too many password
 * checks). Their detail (which limit, when it resets) is meant for the client, so it is
 * shown even when topology details are hidden.
 */
const customerFacing = new WeakSet<Failure>();

/** A plan's refusal: `denied` (403, the plan does not include it) or `too_many_requests` (429, a limit). */
export function limitRefusal(kind: 'denied' | 'too_many_requests', detail: string, retryAfterSec?: number): Failure {
  return customerFacingFailure({ type: 'http_request_denied', phase: 'admit', reason: kind === 'too_many_requests' ? kind : undefined, detail, retryAfter: retryAfterSec });
}

/** A Failure whose detail the client is shown (see above). */
export function customerFacingFailure(init: FailureInit): Failure {
  const f = new Failure(init);
  customerFacing.add(f);
  return f;
}

export function isCustomerFacing(f: Failure): boolean {
  return customerFacing.has(f);
}

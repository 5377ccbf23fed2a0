import { Failure } from '../failure/index.js';

/**
 * Refusals by a customer's own plan. Their detail (which limit, when it resets) is meant
 * for the customer, so it is shown even when topology details are hidden.
 */
const customerFacing = new WeakSet<Failure>();

/** A plan's refusal: `denied` (403, the plan does not include it) or `too_many_requests` (429, a limit). */
export function limitRefusal(kind: 'denied' | 'too_many_requests', detail: string, retryAfterSec?: number): Failure {
  const f = new Failure({ type: 'http_request_denied', phase: 'admit', reason: kind === 'too_many_requests' ? kind : undefined, detail, retryAfter: retryAfterSec });
  customerFacing.add(f);
  return f;
}

export function isCustomerFacing(f: Failure): boolean {
  return customerFacing.has(f);
}

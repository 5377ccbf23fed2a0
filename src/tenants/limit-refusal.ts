import { Failure } from '../failure/index.js';

/**
 * Refusals by a customer's own plan. Their detail (which limit, when it resets) is meant
 * for the customer, so it is shown even when topology details are hidden.
 */
const customerFacing = new WeakSet<Failure>();

export function limitRefusal(status: 403 | 407 | 429, detail: string, retryAfterSec?: number): Failure {
  const f = new Failure({ type: 'http_request_denied', phase: 'admit', status, detail, retryAfter: retryAfterSec });
  customerFacing.add(f);
  return f;
}

export function isCustomerFacing(f: Failure): boolean {
  return customerFacing.has(f);
}

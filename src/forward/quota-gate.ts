import type { Failure } from '../failure/index.js';
import type { PlanEnforcer } from '../tenants/index.js';

/**
 * The refusal when `user` is held at a byte quota in either direction (a request, tunnel or
 * body is one unit: over in one direction ends it), else undefined. Per chunk: for a user not
 * held, two failed map lookups and no allocation.
 */
export function quotaOver(plans: PlanEnforcer, user: string): Failure | undefined {
  return plans.allowBytes(user, 'up') ?? plans.allowBytes(user, 'down');
}

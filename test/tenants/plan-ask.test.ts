import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryStore } from '../../src/state/index.js';
import { PlanEnforcer, type PlanSpec } from '../../src/tenants/index.js';

/**
 * `Plans.ask` (the plan's part of an admission through a store that answers it whole) hands
 * out one shared ask per user when no quota total must be read. It must still follow the
 * user's plan as it changes (users file reloaded), and a shared ask must not be changeable.
 */
describe('PlanEnforcer.ask shared per user', () => {
  const plans = new Map<string, PlanSpec>([
    ['five', { requestsPerSecond: 5 }],
    ['seven', { requestsPerSecond: 7 }],
    ['open', {}],
  ]);

  it('follows the user’s plan across a users-file swap, and shares the ask while it stays the same', () => {
    const p = new PlanEnforcer(plans, new Map([['u', 'five']]), new MemoryStore());
    const a1 = p.ask('u');
    assert.ok(a1 !== undefined && !('status' in a1));
    assert.deepEqual(a1.rate, { key: 'rate:u', perSecond: 5, burst: 5 });
    assert.equal(a1.quota.length, 0);
    assert.equal(p.ask('u'), a1, 'the same ask while nothing changed');
    p.setUserPlans(new Map([['u', 'seven']]));
    const a2 = p.ask('u');
    assert.ok(a2 !== undefined && !('status' in a2));
    assert.deepEqual(a2.rate, { key: 'rate:u', perSecond: 7, burst: 7 });
    p.setUserPlans(new Map([['u', 'open']]));
    const a3 = p.ask('u');
    assert.ok(a3 !== undefined && !('status' in a3));
    assert.equal(a3.rate, undefined, 'a plan without a rate asks for none');
    assert.equal(p.ask('nobody'), undefined, 'no plan: nothing to ask');
  });

  it('a shared ask’s lists cannot be pushed into', () => {
    const p = new PlanEnforcer(plans, new Map([['u', 'five']]), new MemoryStore());
    const a = p.ask('u');
    assert.ok(a !== undefined && !('status' in a));
    assert.throws(() => a.quota.push({ key: 'k', up: 1, down: 1 }), TypeError);
    assert.throws(() => a.periods.push('day'), TypeError);
  });
});

import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { describe, it } from 'node:test';
import { AUTH_LOCKOUT_CHANNEL, AuthLockout, lockoutKey, type AuthLockoutEvent, type AuthLockoutSettings } from '../../src/net/auth-lockout.js';
import { between, seededRun } from '../helpers/seeded.js';

/** The limiter on a clock the test moves (the sockets' tests are test/forward/auth-lockout and test/observe/admin-lockout). */
function rig(s: Partial<AuthLockoutSettings> = {}): { l: AuthLockout; events: AuthLockoutEvent[]; at: { t: number } } {
  const at = { t: 1000 };
  const events: AuthLockoutEvent[] = [];
  const l = new AuthLockout('forward', { maxFailures: 10, windowMs: 60_000, lockoutMs: 60_000, maxLockoutMs: 3_600_000, maxAddresses: 10_000, ...s }, (e) => events.push(e), () => at.t);
  return { l, events, at };
}

describe('AuthLockout', () => {
  it('locks an address out at exactly maxFailures within the window, and not before (a seeded family)', async () => {
    await seededRun('thresholds', (rand) => {
      for (let c = 0; c < 50; c++) {
        const n = between(rand, 1, 30);
        const windowMs = between(rand, 10, 10_000);
        const { l, events, at } = rig({ maxFailures: n, windowMs, lockoutMs: between(rand, 1, 5000) });
        for (let i = 1; i < n; i++) {
          assert.equal(l.failed('10.0.0.1'), 0, `n=${n}: failure ${i} locks nothing`);
          at.t += Math.floor((windowMs - 1) / n); // all within one window
        }
        assert.equal(l.lockedFor('10.0.0.1'), 0);
        assert.ok(l.failed('10.0.0.1') > 0, `n=${n}: failure ${n} locks`);
        assert.ok(l.lockedFor('10.0.0.1') > 0);
        assert.equal(l.lockedFor('10.0.0.2'), 0, 'another address is not locked');
        assert.equal(events.length, 1);
      }
    });
  });

  it('failures spread over more than a window never lock', () => {
    const { l, at } = rig({ maxFailures: 3, windowMs: 1000 });
    for (let i = 0; i < 20; i++) {
      assert.equal(l.failed('10.0.0.1'), 0, `failure ${i}`);
      if (i % 2 === 1) at.t += 1000; // two per window
    }
  });

  it('a lockout ends at its time; each next one doubles up to maxLockout; a quiet address is forgotten and starts short again', () => {
    const { l, events, at } = rig({ maxFailures: 2, windowMs: 1000, lockoutMs: 100, maxLockoutMs: 350 });
    const lengths: number[] = [];
    for (let round = 0; round < 4; round++) {
      l.failed('10.0.0.1');
      lengths.push(l.failed('10.0.0.1'));
      const ms = l.lockedFor('10.0.0.1');
      at.t += ms - 1;
      assert.ok(l.lockedFor('10.0.0.1') > 0, 'still locked 1 ms before');
      at.t += 1;
      assert.equal(l.lockedFor('10.0.0.1'), 0, 'free at its end');
    }
    assert.deepEqual(lengths, [100, 200, 350, 350]);
    assert.deepEqual(events.map((e) => e.strike), [1, 2, 3, 4]);
    // Quiet for the window and the last lockout's length: forgotten.
    at.t += 1000;
    assert.equal(l.lockedFor('10.0.0.1'), 0);
    assert.equal(l.size, 0, 'forgotten');
    l.failed('10.0.0.1');
    assert.equal(l.failed('10.0.0.1'), 100, 'starts short again');
  });

  it('a refused attempt does not count, and a late wrong answer during a lockout does not lock again', () => {
    const { l, events } = rig({ maxFailures: 1 });
    l.failed('10.0.0.1');
    for (let i = 0; i < 5; i++) assert.equal(l.failed('10.0.0.1'), 0);
    assert.equal(events.length, 1);
  });

  it('keeps at most maxAddresses, forgetting the one that failed least recently', async () => {
    await seededRun('cap', (rand) => {
      const cap = between(rand, 1, 200);
      const { l } = rig({ maxFailures: 2, maxAddresses: cap });
      const total = cap + between(rand, 1, 500);
      for (let i = 0; i < total; i++) {
        l.failed(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
        assert.ok(l.size <= cap, `size ${l.size} over cap ${cap}`);
      }
      // The newest is still counted: its second failure locks it.
      const last = total - 1;
      assert.ok(l.failed(`10.${(last >> 16) & 255}.${(last >> 8) & 255}.${last & 255}`) > 0);
    });
  });

  it('counts an IPv4-mapped address as its IPv4 one, and an IPv6 address by its /64', () => {
    assert.equal(lockoutKey('::ffff:127.0.0.2'), '127.0.0.2');
    assert.equal(lockoutKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(lockoutKey('2001:db8:1:2::ffff'), '2001:db8:1:2::/64');
    assert.equal(lockoutKey('not:an:address'), undefined);
    const { l } = rig({ maxFailures: 2 });
    l.failed('::ffff:127.0.0.2');
    l.failed('127.0.0.2');
    assert.ok(l.lockedFor('::ffff:7f00:2') > 0);
    l.failed('2001:db8:1:2::1');
    l.failed('2001:db8:1:2::2');
    assert.ok(l.lockedFor('2001:db8:1:2:ffff::9') > 0, 'the same /64');
    assert.equal(l.lockedFor('2001:db8:1:3::1'), 0, 'another /64');
  });

  it('maxFailures 0 counts nothing; publishes each lockout on the channel once', () => {
    const off = rig({ maxFailures: 0 });
    for (let i = 0; i < 100; i++) assert.equal(off.l.failed('10.0.0.1'), 0);
    assert.equal(off.l.size, 0);
    const seen: unknown[] = [];
    const fn = (m: unknown): void => void seen.push(m);
    subscribe(AUTH_LOCKOUT_CHANNEL, fn);
    try {
      const { l } = rig({ maxFailures: 3 });
      for (let i = 0; i < 9; i++) l.failed('10.0.0.9');
      assert.equal(seen.length, 1);
      assert.equal((seen[0] as AuthLockoutEvent).address, '10.0.0.9');
    } finally {
      unsubscribe(AUTH_LOCKOUT_CHANNEL, fn);
    }
  });
});

import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { describe, it } from 'node:test';
import { AUTH_UNTRACKED_CHANNEL, AuthLockout, connectionLockoutKey, lockoutKey, type AuthLockoutEvent, type AuthLockoutSettings } from '../../src/net/auth-lockout.js';
import { between, seededRun, } from '../helpers/seeded.js';

/** The limiter on a clock the test moves. */
function rig(s: Partial<AuthLockoutSettings> = {}): { l: AuthLockout; events: AuthLockoutEvent[]; at: { t: number } } {
  const at = { t: 1000 };
  const events: AuthLockoutEvent[] = [];
  const l = new AuthLockout('forward', { maxFailures: 10, windowMs: 60_000, lockoutMs: 60_000, maxLockoutMs: 3_600_000, maxAddresses: 10_000, ...s }, (e) => events.push(e), () => at.t);
  return { l, events, at };
}

const v4 = (i: number): string => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

describe('AuthLockout: a locked-out address is not pushed out by newcomers', () => {
  it('locked addresses stay locked through a flood of newcomers past maxAddresses; newcomers are counted while there is room (seeded over maxAddresses)', async () => {
    await seededRun('evict', (rand) => {
      for (let c = 0; c < 40; c++) {
        const cap = between(rand, 1, 40);
        const locked = between(rand, 1, cap);
        const maxFailures = between(rand, 2, 5);
        const { l, events, at } = rig({ maxFailures, maxAddresses: cap, lockoutMs: 10_000, maxLockoutMs: 10_000, windowMs: 60_000 });
        for (let i = 0; i < locked; i++) for (let f = 0; f < maxFailures; f++) l.failed(v4(i));
        assert.equal(events.length, locked, `cap ${cap}: ${locked} lockouts`);
        // The flood: newcomers, each one wrong credential short of a lockout, within the lockouts.
        const flood = between(rand, cap, 6 * cap);
        const untracked: unknown[] = [];
        const fn = (m: unknown): void => void untracked.push(m);
        subscribe(AUTH_UNTRACKED_CHANNEL, fn);
        try {
          for (let i = 0; i < flood; i++) {
            for (let f = 0; f < maxFailures - 1; f++) l.failed(v4(1000 + i));
            assert.ok(l.size <= cap, `size ${l.size} over cap ${cap}`);
            at.t += 1;
          }
        } finally {
          unsubscribe(AUTH_UNTRACKED_CHANNEL, fn);
        }
        for (let i = 0; i < locked; i++) assert.ok(l.lockedFor(v4(i)) > 0, `cap ${cap}, ${locked} locked, ${flood} newcomers: ${v4(i)} was pushed out of its lockout`);
        if (locked === cap) {
          // Every tracked address locked out: the newcomers' wrong credentials are not counted, and that is visible.
          const expected = flood * (maxFailures - 1);
          assert.equal(l.untracked, expected, 'every newcomer failure counted as untracked');
          assert.equal(untracked.length, expected, 'and published');
          assert.deepEqual(untracked[0], { face: 'forward', address: v4(1000), key: v4(1000) });
        } else {
          // Room left: the newest newcomer is counted, and its next wrong credential locks it out.
          assert.equal(l.untracked, 0);
          assert.ok(l.failed(v4(1000 + flood - 1)) > 0, `cap ${cap}, ${locked} locked: the newest newcomer is counted`);
        }
        // Once the lockouts end, newcomers push the ended ones out and are counted again.
        at.t += 10_000;
        const fresh = v4(900_000 + c);
        for (let f = 0; f < maxFailures - 1; f++) l.failed(fresh);
        assert.ok(l.failed(fresh) > 0, `cap ${cap}: a newcomer after the lockouts ended is counted`);
        assert.ok(l.size <= cap);
      }
    });
  });

  it('a locked address is never forgotten for a newcomer, whatever the order of failures (seeded interleavings)', async () => {
    await seededRun('evict-interleaved', (rand) => {
      for (let c = 0; c < 30; c++) {
        const cap = between(rand, 2, 16);
        const { l, at } = rig({ maxFailures: 2, maxAddresses: cap, lockoutMs: 5_000, maxLockoutMs: 5_000 });
        const lockedUntil = new Map<string, number>();
        for (let step = 0; step < 400; step++) {
          const a = v4(between(rand, 0, (cap * 4) - 1));
          if (l.failed(a) > 0) lockedUntil.set(a, at.t + 5_000);
          at.t += between(rand, 0, 40);
          for (const [addr, until] of lockedUntil) {
            if (until > at.t) assert.ok(l.lockedFor(addr) > 0, `step ${step}: ${addr} locked until ${until}, now ${at.t}, was forgotten`);
            else lockedUntil.delete(addr);
          }
          assert.ok(l.size <= cap);
        }
      }
    });
  });

  it('lockouts counts locked addresses only: counted failures leave the hot path a field test', () => {
    const { l } = rig({ maxFailures: 3 });
    l.failed('10.0.0.1');
    l.failed('10.0.0.2');
    assert.equal(l.size, 2);
    assert.equal(l.lockouts, 0);
    l.failed('10.0.0.1');
    l.failed('10.0.0.1');
    assert.equal(l.lockouts, 1);
  });
});

/** A random IPv6 address and a few spellings of it (and of other addresses of its /64). */
function ipv6Spellings(rand: () => number): { groups: number[]; spellings: string[] } {
  const groups = Array.from({ length: 8 }, () => (between(rand, 0, (4) - 1) === 0 ? 0 : between(rand, 0, (0x10000) - 1)));
  const full = groups.map((g) => g.toString(16).padStart(4, '0')).join(':');
  const short = groups.map((g) => g.toString(16)).join(':');
  const upper = short.toUpperCase();
  // The longest run of zero groups compressed, as Node gives a socket's address.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) (best = i), (bestLen = j - i);
    i = j;
  }
  const compressed = best < 0 ? short : `${groups.slice(0, best).map((g) => g.toString(16)).join(':')}::${groups.slice(best + bestLen).map((g) => g.toString(16)).join(':')}`;
  return { groups, spellings: [full, short, upper, compressed] };
}

describe('lockout keys per connection', () => {
  it('a connection\'s cached key is the key of its address, for IPv6, IPv4-mapped and IPv4 spellings (seeded)', async () => {
    await seededRun('ipv6-key', (rand) => {
      for (let c = 0; c < 300; c++) {
        const { groups, spellings } = ipv6Spellings(rand);
        const want = `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
        const conn = {};
        for (const s of spellings) {
          // Twice on the same connection: the cached answer is the computed one.
          assert.equal(connectionLockoutKey(s, conn), want, s);
          assert.equal(connectionLockoutKey(s, conn), want, `${s} (cached)`);
          assert.equal(lockoutKey(s), want, s);
        }
        const a = `${between(rand, 0, (224) - 1) + 1}.${between(rand, 0, (256) - 1)}.${between(rand, 0, (256) - 1)}.${between(rand, 0, (256) - 1)}`;
        const mapped = [`::ffff:${a}`, `::FFFF:${a}`, `0:0:0:0:0:ffff:${a}`];
        const conn4 = {};
        for (const m of mapped) {
          assert.equal(connectionLockoutKey(m, conn4), a, m);
          assert.equal(connectionLockoutKey(m, conn4), a, `${m} (cached)`);
        }
        // An IPv4 address is its own key, the same string: nothing made for it.
        assert.equal(connectionLockoutKey(a, conn4), a);
        assert.equal(connectionLockoutKey(a, undefined), a);
        // One object asked with another address (a reused wrapper): the key of that address, not the cached one.
        assert.equal(connectionLockoutKey(spellings[0]!, conn4), want);
        assert.equal(connectionLockoutKey('not:an:address', conn), undefined);
      }
    });
  });

  it('lockedFor and failed with a connection: the same /64 in any spelling is one address, another /64 another (seeded)', async () => {
    await seededRun('ipv6-limit', (rand) => {
      for (let c = 0; c < 50; c++) {
        const { groups, spellings } = ipv6Spellings(rand);
        const maxFailures = between(rand, 1, 4);
        const { l } = rig({ maxFailures });
        const conns = spellings.map(() => ({}));
        for (let f = 0; f < maxFailures; f++) {
          assert.equal(l.lockedFor(spellings[f % spellings.length]!, conns[f % conns.length]), 0, 'not yet');
          l.failed(spellings[f % spellings.length]!, conns[f % conns.length]);
        }
        for (let i = 0; i < spellings.length; i++) assert.ok(l.lockedFor(spellings[i]!, conns[i]) > 0, `${spellings[i]} locked`);
        // Another host of the same /64, on a new connection: locked too.
        const sibling = [...groups.slice(0, 4), 0xabc, 1, 2, 3].map((g) => g.toString(16)).join(':');
        assert.ok(l.lockedFor(sibling, {}) > 0);
        const other = [...groups.slice(0, 3), (groups[3]! + 1) % 0x10000, ...groups.slice(4)].map((g) => g.toString(16)).join(':');
        assert.equal(l.lockedFor(other, {}), 0, 'another /64');
      }
    });
  });
});

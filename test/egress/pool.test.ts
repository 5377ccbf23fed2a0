import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import { ExitPool, FailureMarker, SessionTable, type Exit, type RotationStrategy } from '../../src/egress/index.js';
import { parseUsername } from '../../src/tenants/index.js';
import { runSeed, seededRandom, withSeed } from '../helpers/seeded.js';

function fakeExit(id: string, weight = 1): Exit {
  return { id, label: id, kind: 'address', weight, dial: async () => ({}) as Socket };
}

function pool(strategy: RotationStrategy, n = 3, clock = { t: 0 }, extra: { threshold?: number } = {}): ExitPool {
  const exits = Array.from({ length: n }, (_, i) => fakeExit(`e${i}`));
  return new ExitPool(exits, {
    name: 'p',
    strategy,
    sessionTtlMs: 10_000,
    sessionIdleMs: 3_000,
    maxAttempts: 3,
    failure: { threshold: extra.threshold ?? 2, cooldownMs: 1000, maxCooldownMs: 4000 },
    now: () => clock.t,
  });
}

function counts(p: ExitPool, n: number, host = 'example.com'): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const r = p.pick({ host, user: 'alice' })!;
    m.set(r.exit.id, (m.get(r.exit.id) ?? 0) + 1);
  }
  return m;
}

describe('exit pool rotation', () => {
  it('request (default) and random spread evenly over many picks', () => {
    for (const s of ['request', 'random'] as const) {
      const c = counts(pool(s), 3000);
      assert.equal(c.size, 3);
      for (const v of c.values()) assert.ok(v > 850 && v < 1150, `${s}: ${[...c.values()]}`);
    }
  });

  it('weights shift random picks', () => {
    const p = new ExitPool([fakeExit('a', 3), fakeExit('b', 1)], { name: 'w', strategy: 'random', sessionTtlMs: 1, sessionIdleMs: 1, maxAttempts: 1, failure: { threshold: 1, cooldownMs: 1, maxCooldownMs: 1 } });
    const c = counts(p, 4000);
    assert.ok(c.get('a')! > 2700 && c.get('a')! < 3300, String(c.get('a')));
  });

  it('round-robin cycles in order and skips a cooled exit', () => {
    const p = pool('round-robin');
    const seq = Array.from({ length: 6 }, () => p.pick({ host: 'h', user: null })!.exit.id);
    assert.deepEqual(seq, ['e0', 'e1', 'e2', 'e0', 'e1', 'e2']);
    p.failed(p.exits[1]!, 'h', 'exit');
    p.failed(p.exits[1]!, 'h', 'exit');
    const seq2 = Array.from({ length: 4 }, () => p.pick({ host: 'h', user: null })!.exit.id);
    assert.ok(!seq2.includes('e1'));
  });

  it('least-used picks the exit with fewest open connections', () => {
    const p = pool('least-used');
    const r0 = p.opened(p.exits[0]!);
    p.opened(p.exits[1]!);
    assert.equal(p.pick({ host: 'h', user: null })!.exit.id, 'e2');
    p.opened(p.exits[2]!);
    p.opened(p.exits[2]!);
    r0();
    assert.equal(p.pick({ host: 'h', user: null })!.exit.id, 'e0');
  });

  it('hash keeps one host on one exit and spreads hosts', () => {
    const p = pool('hash', 4);
    const first = p.pick({ host: 'a.example', user: null })!.exit.id;
    for (let i = 0; i < 20; i++) assert.equal(p.pick({ host: 'a.example', user: null })!.exit.id, first);
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) seen.add(p.pick({ host: `h${i}.example`, user: null })!.exit.id);
    assert.equal(seen.size, 4);
  });
});

describe('sticky sessions', () => {
  it('keeps the exit for the session lifetime, then may move', () => {
    const clock = { t: 0 };
    const p = pool('request', 8, clock);
    const first = p.pick({ host: 'h', user: 'alice', session: 's1' })!;
    for (let i = 0; i < 20; i++) {
      clock.t += 400; // within the idle timeout
      const r = p.pick({ host: `h${i}`, user: 'alice', session: 's1' })!;
      assert.equal(r.exit.id, first.exit.id);
      assert.equal(r.repinned, false);
    }
    // lifetime (10 s) is over at t=10_000: a fresh pin, not a re-pin
    clock.t = 10_001;
    const after = p.pick({ host: 'h', user: 'alice', session: 's1' })!;
    assert.equal(after.repinned, false);
    // different users with the same session id are different sessions
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) seen.add(p.pick({ host: 'h', user: `u${i}`, session: 's1' })!.exit.id);
    assert.ok(seen.size > 1);
  });

  it('a ttl from the username shortens the lifetime', () => {
    const clock = { t: 0 };
    const p = pool('request', 50, clock);
    const a = p.pick({ host: 'h', user: 'alice', session: 'x', ttlMs: 1000 })!;
    clock.t = 999;
    assert.equal(p.pick({ host: 'h', user: 'alice', session: 'x', ttlMs: 1000 })!.exit.id, a.exit.id);
    clock.t = 1000;
    assert.equal(p.sessions.get('alice|x'), undefined);
  });

  it('ends a session idle past the idle timeout', () => {
    const clock = { t: 0 };
    const p = pool('request', 3, clock);
    p.pick({ host: 'h', user: 'alice', session: 'idle' });
    clock.t = 2000;
    assert.ok(p.sessions.get('alice|idle'));
    clock.t = 2000 + 3001;
    assert.equal(p.sessions.get('alice|idle'), undefined);
  });

  it('re-pins to a healthy exit when the pinned exit dies, keeping the lifetime', () => {
    const clock = { t: 0 };
    const p = pool('request', 3, clock);
    const a = p.pick({ host: 'h', user: 'alice', session: 's' })!;
    p.failed(a.exit, 'h', 'exit');
    p.failed(a.exit, 'h', 'exit'); // threshold 2: down
    const b = p.pick({ host: 'h', user: 'alice', session: 's' })!;
    assert.notEqual(b.exit.id, a.exit.id);
    assert.equal(b.repinned, true);
    assert.equal(p.sessions.get('alice|s')!.expires, 10_000);
    assert.equal(p.pick({ host: 'h', user: 'alice', session: 's' })!.exit.id, b.exit.id);
  });

  it('sticky strategy pins per user without a session id', () => {
    const p = pool('sticky', 10);
    const a = p.pick({ host: 'x', user: 'alice' })!.exit.id;
    for (let i = 0; i < 10; i++) assert.equal(p.pick({ host: `y${i}`, user: 'alice' })!.exit.id, a);
  });
});

describe('failure markers', () => {
  it('a domain mark cools the exit for that domain only', () => {
    const p = pool('round-robin', 2);
    const e0 = p.exits[0]!;
    p.failed(e0, 'bad.example', 'domain');
    p.failed(e0, 'bad.example', 'domain');
    assert.ok(!p.marker.available('e0', 'bad.example'));
    assert.ok(p.marker.available('e0', 'good.example'));
    for (let i = 0; i < 4; i++) assert.equal(p.pick({ host: 'bad.example', user: null })!.exit.id, 'e1');
    const good = new Set(Array.from({ length: 4 }, () => p.pick({ host: 'good.example', user: null })!.exit.id));
    assert.deepEqual([...good].sort(), ['e0', 'e1']);
  });

  it('cool-down grows on each trip up to the maximum, and a success resets it', () => {
    const clock = { t: 0 };
    const m = new FailureMarker({ threshold: 1, cooldownMs: 1000, maxCooldownMs: 3000 }, () => clock.t);
    assert.equal(m.fail('x'), true);
    assert.equal(m.coolingFor('x'), 1000);
    clock.t = 1000;
    m.fail('x');
    assert.equal(m.coolingFor('x'), 2000);
    clock.t = 3000;
    m.fail('x');
    assert.equal(m.coolingFor('x'), 3000);
    clock.t = 6000;
    assert.ok(!m.down('x'));
    m.succeed('x');
    m.fail('x');
    assert.equal(m.coolingFor('x'), 1000);
  });

  it('a cool-down that runs out reports exactly its length, even on a clock that moves between readings (seeded lengths)', async () => {
    // state-changes.test finding: the start was read from the clock a second time, so a
    // 302 ms cool-down whose start fell into the next millisecond was reported as 301.
    const rand = seededRandom(runSeed());
    await withSeed(rand, async () => {
      for (let i = 0; i < 20; i++) {
        let t = 1_000_000;
        const now = (): number => (t += 1 + rand.int(3)); // every reading is later than the one before
        const ends: number[] = [];
        const cooldownMs = 50 + rand.int(500);
        const m = new FailureMarker({ threshold: 1, cooldownMs, maxCooldownMs: 10_000 }, now, (_exit, _domain, forMs) => ends.push(forMs));
        const shared = rand.next() < 0.5;
        if (shared) m.coolFor('a', undefined, cooldownMs);
        else assert.ok(m.fail('a'));
        t += cooldownMs + 10; // past its end; a success now reports it (as the sweep would), from its start to its end
        m.succeed('a');
        assert.deepEqual(ends, [cooldownMs], `${shared ? 'coolFor' : 'fail'} ${cooldownMs} ms`);
      }
    });
  });

  it('a failure never shortens a cool-down that is running (shared or tripped earlier), over seeded lengths', async () => {
    // CI finding (seed 922811734 of the family below): a shared 108 ms cool-down, then a local
    // trip of 62 ms, ended the exit's cool-down 46 ms early and reported it as over.
    const rand = seededRandom(runSeed());
    await withSeed(rand, async () => {
      for (let i = 0; i < 50; i++) {
        const clock = { t: 1_000_000 };
        const ends: number[] = [];
        const cooldownMs = 10 + rand.int(200);
        const m = new FailureMarker({ threshold: 1, cooldownMs, maxCooldownMs: 10_000 }, () => clock.t, (_e, _d, forMs) => ends.push(forMs));
        const domain = rand.next() < 0.5 ? undefined : 'x.test';
        const first = cooldownMs + 1 + rand.int(300); // longer than the trip below
        if (rand.next() < 0.5) m.coolFor('a', domain, first);
        else {
          const other = new FailureMarker({ threshold: 1, cooldownMs: first, maxCooldownMs: 10_000 }, () => clock.t);
          assert.ok(other.fail('a', domain)); // the same lengths, from the policy
          m.coolFor('a', domain, other.remaining('a', domain));
        }
        clock.t += rand.int(Math.min(first - cooldownMs, 50));
        const left = m.remaining('a', domain);
        assert.ok(m.fail('a', domain));
        assert.equal(m.remaining('a', domain), Math.max(left, cooldownMs), `first ${first} ms, trip ${cooldownMs} ms`);
        assert.deepEqual(ends, [], 'nothing ended');
      }
    });
  });

  it('every cool-down reports its end exactly once: when it runs out, or when a success ends it early (seeded family of fail/succeed/shared-cool sequences)', async () => {
    const rand = seededRandom(runSeed());
    await withSeed(rand, async () => {
      for (let round = 0; round < 3; round++) {
        const ends: Array<{ key: string; at: number; forMs: number; bySuccess: boolean; over: boolean }> = [];
        let inSucceed = false;
        // The marker's clock is the wall clock, held still during each step so the model reads exact times.
        let held: number | undefined;
        const now = (): number => held ?? Date.now();
        const m: FailureMarker = new FailureMarker({ threshold: 1 + rand.int(2), cooldownMs: 20 + rand.int(60), maxCooldownMs: 200 }, now, (exit, domain, forMs) =>
          ends.push({ key: `${exit}|${domain ?? ''}`, at: now(), forMs, bySuccess: inSucceed, over: m.remaining(exit, domain) === 0 }),
        );
        // The model: per key, whether a cool-down is running (until) and how many began.
        const running = new Map<string, number>();
        const began = new Map<string, number>();
        const keyOf = (exit: string, domain?: string): string => `${exit}|${domain ?? ''}`;
        const start = (k: string, until: number): void => {
          if (!running.has(k)) began.set(k, (began.get(k) ?? 0) + 1);
          running.set(k, Math.max(running.get(k) ?? 0, until));
        };
        // Ends the timer has reported take the key out of `running`.
        const settle = (): void => {
          for (const e of ends) if (running.has(e.key) && (running.get(e.key) ?? 0) <= e.at) running.delete(e.key);
        };
        for (let i = 0; i < 40; i++) {
          settle();
          const exit = rand.pick(['a', 'b']);
          const domain = rand.next() < 0.5 ? undefined : rand.pick(['x.test', 'y.test']);
          const k = keyOf(exit, domain);
          const op = rand.int(3);
          held = Date.now();
          if (op === 0) {
            if (m.fail(exit, domain)) start(k, held + m.remaining(exit, domain));
          } else if (op === 1) {
            running.delete(k);
            inSucceed = true;
            m.succeed(exit, domain);
            inSucceed = false;
            // A success for a domain also forgets the exit's whole mark once its cool-down ran out.
            if (domain !== undefined && m.remaining(exit) === 0) running.delete(keyOf(exit));
          } else {
            const forMs = 10 + rand.int(100);
            m.coolFor(exit, domain, forMs);
            if (m.remaining(exit, domain) > 0) start(k, held + m.remaining(exit, domain));
          }
          held = undefined;
          await new Promise((r) => setImmediate(r));
          if (rand.next() < 0.3) await new Promise((r) => setTimeout(r, rand.int(40)));
        }
        // Every cool-down still running ends on its own: wait for the reports (bounded).
        const deadline = Date.now() + 3000;
        while (Date.now() < deadline) {
          const want = [...began.values()].reduce((a, b) => a + b, 0);
          if (ends.length >= want) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        await new Promise((r) => setTimeout(r, 250)); // room for a wrong extra report to show
        for (const [k, n] of began) assert.equal(ends.filter((e) => e.key === k).length, n, `round ${round}: ${k} began ${n} cool-down(s)`);
        assert.equal(ends.length, [...began.values()].reduce((a, b) => a + b, 0), `round ${round}: no report without a cool-down`);
        for (const e of ends) {
          assert.ok(e.over, `round ${round}: ${e.key}: reported while the cool-down still ran`);
          // Ended by the clock: it lasted at least the shortest cool-down set (10 ms); a success may end one at once.
          assert.ok(e.bySuccess ? e.forMs >= 0 : e.forMs >= 9, `round ${round}: ${e.key} lasted ${e.forMs} ms`);
        }
      }
    });
  });

  it('returns nothing when every exit is cooling down', () => {
    const p = pool('random', 2, { t: 0 }, { threshold: 1 });
    p.failed(p.exits[0]!, 'h', 'exit');
    p.failed(p.exits[1]!, 'h', 'exit');
    assert.equal(p.pick({ host: 'h', user: null }), undefined);
    assert.ok(p.retryAfterMs('h') > 0);
  });

  it('session table caps its size', () => {
    const t = new SessionTable(() => 0, 3);
    for (let i = 0; i < 5; i++) t.pin(`k${i}`, 'e', 1000, 1000);
    assert.equal(t.size, 3);
  });
});

describe('username parameters', () => {
  it('parses the default grammar in any order, each part optional', () => {
    assert.deepEqual(parseUsername('alice'), { base: 'alice' });
    assert.deepEqual(parseUsername('alice-session-abc123'), { base: 'alice', session: 'abc123' });
    assert.deepEqual(parseUsername('alice-session-abc-ttl-10m-pool-dc'), { base: 'alice', session: 'abc', ttlMs: 600_000, pool: 'dc' });
    assert.deepEqual(parseUsername('alice-pool-dc-session-9'), { base: 'alice', session: '9', pool: 'dc' });
    assert.deepEqual(parseUsername('my-user-session-1'), { base: 'my-user', session: '1' });
  });

  it('leaves malformed names whole', () => {
    assert.deepEqual(parseUsername('alice-ttl-soon'), { base: 'alice-ttl-soon' });
    assert.deepEqual(parseUsername('alice-session'), { base: 'alice-session' });
    // a repeated key cannot be a parameter list: the longer base is tried (and will not authenticate)
    assert.deepEqual(parseUsername('alice-session-a-session-b'), { base: 'alice-session-a', session: 'b' });
  });

  it('follows a configured grammar', () => {
    const g = { separator: '_', keys: { session: 'sid', ttl: 'life', pool: 'zone' }, maxTtlMs: 3_600_000 };
    assert.deepEqual(parseUsername('bob_zone_resi_sid_42_life_30s', g), { base: 'bob', session: '42', ttlMs: 30_000, pool: 'resi' });
  });
});

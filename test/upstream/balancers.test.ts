import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lookup } from 'node:dns';
import { Endpoint } from '../../src/upstream/endpoint.js';
import { BALANCER_KINDS, createBalancer, type Balancer } from '../../src/upstream/balancers/balancer.js';
import { RoundRobinBalancer } from '../../src/upstream/balancers/round-robin.js';
import { RandomBalancer } from '../../src/upstream/balancers/random.js';
import { LeastRequestBalancer } from '../../src/upstream/balancers/least-request.js';
import { PeakEwmaBalancer, observeLatency } from '../../src/upstream/balancers/peak-ewma.js';
import { RingHashBalancer } from '../../src/upstream/balancers/ring-hash.js';
import { MaglevBalancer } from '../../src/upstream/balancers/maglev.js';
import { effectiveWeight } from '../../src/upstream/slow-start.js';

const NOW = 1_700_000_000_000;

function endpoint(url: string, weight = 1): Endpoint {
  return new Endpoint({
    url,
    weight,
    connectTimeoutMs: 1000,
    headersTimeoutMs: 1000,
    bodyTimeoutMs: 1000,
    keepAliveMs: 1000,
    maxResponseHeaderSize: 16384,
    tls: { verify: true },
    lookup,
  });
}

function endpoints(n: number, weight = 1, base = 0): Endpoint[] {
  return Array.from({ length: n }, (_, i) => endpoint(`http://10.0.${(base + i) >> 8}.${(base + i) & 255}:8080`, weight));
}

function counts(b: Balancer, eps: readonly Endpoint[], picks: number, ctx = { now: NOW } as { now: number; hashKey?: string }, exclude?: ReadonlySet<Endpoint>): Map<Endpoint, number> {
  const m = new Map<Endpoint, number>();
  for (let i = 0; i < picks; i++) {
    const e = b.pick(eps, ctx, exclude);
    assert.ok(e, 'a pick');
    m.set(e, (m.get(e) ?? 0) + 1);
  }
  return m;
}

function near(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} not within ${expected} ± ${tolerance}`);
}

describe('slow start', () => {
  test('ramps from 10% to 100% of the weight over the window; readyAt 0 is full weight', () => {
    const [e] = endpoints(1, 10);
    assert.equal(effectiveWeight(e!, NOW, 30_000), 10);
    e!.readyAt = NOW;
    near(effectiveWeight(e!, NOW, 30_000), 1, 1e-9, 'at start');
    near(effectiveWeight(e!, NOW + 15_000, 30_000), 5.5, 1e-9, 'half way');
    assert.equal(effectiveWeight(e!, NOW + 30_000, 30_000), 10);
    assert.equal(effectiveWeight(e!, NOW, 0), 10, 'no window: full weight');
  });
});

describe('every kind: availability and exclude', () => {
  for (const kind of BALANCER_KINDS) {
    test(`${kind} returns only available, not excluded endpoints, and undefined when none`, () => {
      const eps = endpoints(6);
      const b = createBalancer(kind, eps, { slowStartMs: 10_000 });
      eps[0]!.health = 'unhealthy';
      eps[1]!.ejectedUntil = NOW + 1000;
      eps[2]!.draining = true;
      const exclude = new Set([eps[3]!]);
      for (let i = 0; i < 2000; i++) {
        const e = b.pick(eps, { now: NOW, hashKey: `k${i}` }, exclude);
        assert.ok(e === eps[4] || e === eps[5], `${kind} picked ${e?.nextHop}`);
      }
      // An ejection that has run out counts as available again.
      const back = b.pick(eps, { now: NOW + 1000, hashKey: 'x' }, new Set([eps[3]!, eps[4]!, eps[5]!]));
      assert.equal(back, eps[1]);
      assert.equal(b.pick(eps, { now: NOW, hashKey: 'x' }, new Set([eps[3]!, eps[4]!, eps[5]!])), undefined);
      assert.equal(b.pick([], { now: NOW, hashKey: 'x' }), undefined, 'empty cluster');
      for (const e of eps) e.health = 'unhealthy';
      assert.equal(b.pick(eps, { now: NOW, hashKey: 'x' }), undefined);
    });
  }
});

describe('round robin (smooth weighted)', () => {
  test('equal weights rotate evenly', () => {
    const eps = endpoints(3);
    const b = new RoundRobinBalancer(eps);
    const seq = Array.from({ length: 6 }, () => eps.indexOf(b.pick(eps, { now: NOW })!));
    assert.deepEqual(seq, [0, 1, 2, 0, 1, 2]);
  });

  test('weights 5,1,1 give the nginx sequence: spread, no burst to the heaviest', () => {
    const eps = [endpoint('http://a:1', 5), endpoint('http://b:1', 1), endpoint('http://c:1', 1)];
    const b = new RoundRobinBalancer(eps);
    const seq = Array.from({ length: 7 }, () => b.pick(eps, { now: NOW })!.url.hostname).join('');
    assert.equal(seq, 'aabacaa');
    const m = counts(b, eps, 7000);
    assert.deepEqual([m.get(eps[0]!), m.get(eps[1]!), m.get(eps[2]!)], [5000, 1000, 1000]);
  });

  test('an excluded endpoint is skipped without losing the others\u2019 turn', () => {
    const eps = endpoints(3);
    const b = new RoundRobinBalancer(eps);
    const m = counts(b, eps, 3000, { now: NOW }, new Set([eps[0]!]));
    assert.deepEqual([m.get(eps[0]!) ?? 0, m.get(eps[1]!), m.get(eps[2]!)], [0, 1500, 1500]);
  });

  test('slow start: a just-returned endpoint gets a ramped share', () => {
    const eps = endpoints(2);
    const b = new RoundRobinBalancer(eps, { slowStartMs: 10_000 });
    eps[1]!.readyAt = NOW; // 10% of its weight now
    const m = counts(b, eps, 11_000);
    near(m.get(eps[1]!)!, 1000, 2, 'at 10%');
    const later = counts(b, eps, 20_000, { now: NOW + 10_000 });
    near(later.get(eps[1]!)!, 10_000, 2, 'ramp done');
  });

  test('a new endpoint array rebuilds the state', () => {
    const eps = endpoints(3);
    const b = new RoundRobinBalancer(eps);
    b.pick(eps, { now: NOW });
    const fewer = eps.slice(0, 2);
    const m = counts(b, fewer, 100);
    assert.deepEqual([m.get(fewer[0]!), m.get(fewer[1]!)], [50, 50]);
  });
});

describe('random (weighted)', () => {
  test('shares follow the weights', () => {
    const eps = [endpoint('http://a:1', 1), endpoint('http://b:1', 2), endpoint('http://c:1', 3)];
    const b = new RandomBalancer(eps);
    const m = counts(b, eps, 60_000);
    near(m.get(eps[0]!)!, 10_000, 700, 'weight 1');
    near(m.get(eps[1]!)!, 20_000, 900, 'weight 2');
    near(m.get(eps[2]!)!, 30_000, 900, 'weight 3');
  });

  test('shares follow the slow-start weights and skip unavailable endpoints', () => {
    const eps = endpoints(3);
    const b = new RandomBalancer(eps, { slowStartMs: 10_000 });
    eps[0]!.health = 'unhealthy';
    eps[2]!.readyAt = NOW - 5000; // 55%
    const m = counts(b, eps, 31_000);
    assert.equal(m.get(eps[0]!), undefined);
    near(m.get(eps[2]!)! / m.get(eps[1]!)!, 0.55, 0.05, 'ramped ratio');
  });

  test('the exact scan gives the same shares when nearly all endpoints are out', () => {
    const eps = endpoints(40);
    for (const e of eps.slice(2)) e.draining = true;
    eps[1] = endpoint('http://heavy:1', 3);
    const b = new RandomBalancer(eps);
    const m = counts(b, eps, 8000);
    near(m.get(eps[1]!)! / 8000, 0.75, 0.03, 'weight 3 of 4');
  });
});

describe('least request (power of two choices)', () => {
  test('prefers the less loaded: the most loaded of three is never picked', () => {
    const eps = endpoints(3);
    eps[0]!.inflight = 0;
    eps[1]!.inflight = 5;
    eps[2]!.inflight = 10;
    const b = new LeastRequestBalancer(eps);
    const m = counts(b, eps, 9000);
    assert.equal(m.get(eps[2]!), undefined);
    near(m.get(eps[0]!)!, 6000, 300, 'least loaded is in 2 of 3 pairs');
  });

  test('inflight is divided by weight', () => {
    const eps = [endpoint('http://a:1', 1), endpoint('http://b:1', 4)];
    eps[0]!.inflight = 1;
    eps[1]!.inflight = 3;
    const b = new LeastRequestBalancer(eps);
    assert.equal(b.pick(eps, { now: NOW }), eps[1], '(3+1)/4 < (1+1)/1');
  });

  test('keeps a simulated cluster balanced when requests stick', () => {
    const eps = endpoints(8);
    const b = new LeastRequestBalancer(eps);
    for (let i = 0; i < 800; i++) b.pick(eps, { now: NOW })!.inflight++;
    const loads = eps.map((e) => e.inflight);
    // Random assignment would leave a spread of ~30 here; two choices keep the busiest within a few of the mean.
    assert.ok(Math.max(...loads) - 100 <= 3 && 100 - Math.min(...loads) <= 10, `loads ${loads}`);
  });

  test('a slow-starting endpoint counts as loaded', () => {
    const eps = endpoints(2);
    const b = new LeastRequestBalancer(eps, { slowStartMs: 10_000 });
    eps[0]!.readyAt = NOW;
    eps[1]!.inflight = 3;
    assert.equal(b.pick(eps, { now: NOW }), eps[1], '(3+1)/1 < (0+1)/0.1');
  });
});

describe('peak EWMA', () => {
  test('prefers the faster endpoint', () => {
    const eps = endpoints(3);
    observeLatency(eps[0]!, 10, NOW);
    observeLatency(eps[1]!, 50, NOW);
    observeLatency(eps[2]!, 200, NOW);
    const b = new PeakEwmaBalancer(eps);
    const m = counts(b, eps, 9000, { now: NOW + 1 });
    assert.equal(m.get(eps[2]!), undefined);
    near(m.get(eps[0]!)!, 6000, 300, 'fastest is in 2 of 3 pairs');
  });

  test('cost multiplies latency by inflight + 1', () => {
    const eps = endpoints(2);
    observeLatency(eps[0]!, 10, NOW);
    observeLatency(eps[1]!, 30, NOW);
    eps[0]!.inflight = 3; // 10 × 4 = 40 > 30 × 1
    const b = new PeakEwmaBalancer(eps);
    assert.equal(b.pick(eps, { now: NOW }), eps[1]);
  });

  test('peaks count at once, recoveries gradually; idle estimates decay so a slow endpoint is retried', () => {
    const [e] = endpoints(1);
    observeLatency(e!, 10, NOW);
    observeLatency(e!, 500, NOW + 10);
    assert.equal(e!.ewmaMs, 500, 'a peak replaces the estimate');
    observeLatency(e!, 10, NOW + 20);
    assert.ok(e!.ewmaMs > 490, `one fast sample 10 ms later barely lowers it: ${e!.ewmaMs}`);
    observeLatency(e!, 10, NOW + 20 + 10_000);
    near(e!.ewmaMs, 10 + 490 / Math.E, 1, 'after one decay window');

    const eps = endpoints(2);
    observeLatency(eps[0]!, 20, NOW);
    observeLatency(eps[1]!, 400, NOW - 60_000); // slow, but a minute ago
    const b = new PeakEwmaBalancer(eps);
    assert.equal(b.pick(eps, { now: NOW }), eps[1]);
  });

  test('an endpoint without samples takes one request at a time', () => {
    const eps = endpoints(2);
    observeLatency(eps[0]!, 100, NOW);
    eps[0]!.inflight = 5;
    const b = new PeakEwmaBalancer(eps);
    assert.equal(b.pick(eps, { now: NOW }), eps[1], 'unmeasured and idle: cost 0');
    eps[1]!.inflight = 1;
    assert.equal(b.pick(eps, { now: NOW }), eps[0], 'unmeasured and busy: penalised');
  });
});

function keys(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `user-${i}-${(i * 2654435761) % 1000}`);
}

for (const [name, make] of [
  ['ring hash', (eps: readonly Endpoint[]) => new RingHashBalancer(eps)],
  ['maglev', (eps: readonly Endpoint[]) => new MaglevBalancer(eps)],
] as const) {
  describe(name, () => {
    const K = keys(20_000);

    function map(b: Balancer, eps: readonly Endpoint[], exclude?: ReadonlySet<Endpoint>): Map<string, Endpoint> {
      const m = new Map<string, Endpoint>();
      for (const k of K) m.set(k, b.pick(eps, { now: NOW, hashKey: k }, exclude)!);
      return m;
    }

    test('same key, same endpoint, on every node whatever the config order', () => {
      const eps = endpoints(10);
      const a = map(make(eps), eps);
      const shuffled = [...eps].reverse();
      const b = map(make(shuffled), shuffled);
      for (const k of K) assert.equal(a.get(k), b.get(k));
      const again = make(eps);
      for (const k of K.slice(0, 100)) assert.equal(again.pick(eps, { now: NOW, hashKey: k }), a.get(k));
    });

    test('keys spread over the endpoints by weight', () => {
      const eps = [...endpoints(9), endpoint('http://heavy:9', 2)];
      const m = map(make(eps), eps);
      const per = new Map<Endpoint, number>();
      for (const e of m.values()) per.set(e, (per.get(e) ?? 0) + 1);
      const unit = K.length / 11;
      const tol = name === 'maglev' ? 0.15 : 0.3;
      for (const e of eps.slice(0, 9)) near(per.get(e)!, unit, unit * tol, e.nextHop);
      near(per.get(eps[9]!)!, 2 * unit, 2 * unit * tol, 'weight 2');
    });

    test('minimal reshuffle: when an endpoint leaves, about 1/n of the keys move', () => {
      const eps = endpoints(10);
      const before = map(make(eps), eps);
      const gone = eps[3]!;
      const rest = eps.filter((e) => e !== gone);
      const after = map(make(rest), rest);
      let moved = 0;
      let movedOthers = 0;
      for (const k of K) {
        if (before.get(k) === after.get(k)) continue;
        moved++;
        if (before.get(k) !== gone) movedOthers++;
      }
      assert.ok(moved / K.length < 1 / 10 + 0.03, `${name}: ${moved} of ${K.length} keys moved`);
      if (name === 'ring hash') assert.equal(movedOthers, 0, 'on a ring only the leaving endpoint\u2019s keys move');
      else assert.ok(movedOthers / K.length < 0.03, `maglev: ${movedOthers} keys of staying endpoints moved`);
    });

    test('an unavailable or excluded endpoint\u2019s keys, and only those, go elsewhere, spread and stable', () => {
      const eps = endpoints(10);
      const b = make(eps);
      const before = map(b, eps);
      eps[5]!.health = 'unhealthy';
      const down = map(b, eps);
      const excluded = map(b, eps.map((e) => (e.health = 'unknown', e)), new Set([eps[5]!]));
      const landed = new Set<Endpoint>();
      for (const k of K) {
        if (before.get(k) !== eps[5]) assert.equal(down.get(k), before.get(k));
        else {
          assert.notEqual(down.get(k), eps[5]);
          landed.add(down.get(k)!);
        }
        assert.equal(excluded.get(k), down.get(k), 'exclude falls back like unavailability');
      }
      assert.ok(landed.size >= 5, `moved keys spread over ${landed.size} endpoints`);
    });

    test('without a key, picks spread at random', () => {
      const eps = endpoints(4);
      const m = counts(make(eps), eps, 8000);
      for (const e of eps) near(m.get(e)!, 2000, 300, e.nextHop);
    });
  });
}

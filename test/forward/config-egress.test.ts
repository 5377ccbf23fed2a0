import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { forwardSchema, parseByteSize } from '../../src/config/forward.js';
import { egressSpecOf } from '../../src/forward/forward-proxy.js';
import { DirectDialer, DirectUdpDialer, buildEgress } from '../../src/egress/index.js';
import { Failure } from '../../src/failure/index.js';

const HASH = 'scrypt$16384$8$1$Z2F0ZXdpc2UtZHVtbXk=$3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

describe('forward config: egress, plans, grammar', () => {
  it('fills defaults for a pool and a plan', () => {
    const c = forwardSchema.parse({
      auth: { users: [{ name: 'a', password: HASH, plan: 'basic' }] },
      egress: { pools: { dc: { addresses: ['127.0.0.2', '::1'] }, rot: { proxies: ['http://u:p@127.0.0.1:3128', { url: 'socks5://127.0.0.1:1080', weight: 2 }, { chain: ['http://127.0.0.1:1', 'socks5://127.0.0.1:2'] }] } } },
      plans: { basic: { bytesPerDay: { down: '1GB' }, bytesPerMonth: { up: '10GiB' } } },
    });
    const dc = c.egress.pools.dc!;
    assert.equal(dc.strategy, 'request');
    assert.equal(dc.sessionTtl, '10m');
    assert.equal(dc.sessionIdle, '5m');
    assert.equal(dc.maxAttempts, 3);
    assert.deepEqual(dc.failure, { threshold: 3, cooldown: '30s', maxCooldown: '10m' });
    assert.equal(c.plans.basic!.bytesPerDay!.down, 1e9);
    assert.equal(c.plans.basic!.bytesPerMonth!.up, 10 * 1024 ** 3);
    assert.deepEqual(c.usernameGrammar, { separator: '-', session: 'session', ttl: 'ttl', pool: 'pool', debug: 'debug', maxTtl: '24h' });
    const spec = egressSpecOf(c);
    assert.equal(spec.pools.dc!.sessionTtlMs, 600_000);
    assert.equal(spec.pools.rot!.failure.cooldownMs, 30_000);
  });

  it('refuses dangling names and bad values', () => {
    const bad = (input: unknown, re: RegExp): void => {
      const r = forwardSchema.safeParse(input);
      assert.equal(r.success, false);
      assert.match(JSON.stringify(r.error!.issues), re);
    };
    const users = [{ name: 'a', password: HASH }];
    bad({ auth: { users }, egress: { pools: { dc: { addresses: ['127.0.0.2'] } }, routing: [{ pool: 'nope' }] } }, /no pool named nope/);
    bad({ auth: { users }, egress: { pools: { dc: { addresses: ['127.0.0.2'] } }, defaultPool: 'x' } }, /no pool named x/);
    bad({ auth: { users: [{ name: 'a', password: HASH, plan: 'gold' }] } }, /no plan named gold/);
    bad({ auth: { users }, egress: { pools: { empty: {} } } }, /needs addresses or proxies/);
    bad({ auth: { users }, egress: { pools: { p: { proxies: ['ftp://x:1'] } } } }, /proxy URL/);
    bad({ auth: { users }, plans: { p: { bytesPerDay: { up: 'lots' } } } }, /byte count/);
    bad({ auth: { users }, plans: { p: { pools: ['ghost'] } } }, /no pool named ghost/);
  });

  it('documents every new option', () => {
    const shape = (forwardSchema as unknown as { shape: Record<string, { description?: string }> }).shape;
    for (const k of ['egress', 'plans', 'usernameGrammar', 'state']) assert.ok((shape as Record<string, { description?: string }>)[k]?.description, k);
    assert.equal(parseByteSize('2KB'), 2000);
    assert.equal(parseByteSize('1.5MiB'), 1572864);
  });

  it('routing: username pool, then rules by user and host, then the default', () => {
    const c = forwardSchema.parse({
      auth: { users: [{ name: 'a', password: HASH }] },
      egress: {
        pools: { dc: { addresses: ['127.0.0.2'] }, resi: { addresses: ['127.0.0.3'] }, shop: { addresses: ['127.0.0.4'] } },
        routing: [
          { users: ['vip'], pool: 'resi' },
          { hosts: ['*.shop.example'], pool: 'shop' },
        ],
        defaultPool: 'dc',
      },
    });
    const r = buildEgress(egressSpecOf(c), { direct: new DirectDialer(), directUdp: new DirectUdpDialer() });
    assert.equal(r.poolName({ user: 'vip' }, 'x.example'), 'resi');
    assert.equal(r.poolName({ user: 'joe' }, 'a.shop.example'), 'shop');
    assert.equal(r.poolName({ user: 'joe' }, 'other.example'), 'dc');
    assert.equal(r.poolName({ user: 'joe', pool: 'shop' }, 'other.example'), 'shop');
    assert.ok(r.poolName({ user: 'joe', pool: 'zzz' }, 'x') instanceof Failure);
  });
});

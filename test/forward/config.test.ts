import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { forwardSchema } from '../../src/config/forward.js';
import { CredentialCache, UserDirectory, hashPassword, parsePasswordHash, verifyPassword } from '../../src/tenants/index.js';
import { userHashes, PASSWORD } from './helpers.js';

describe('forward config schema', () => {
  it('fills defaults: auth on, private denied, CONNECT to 443, durations as strings', async () => {
    const [h] = await userHashes();
    const c = forwardSchema.parse({ auth: { users: [{ name: 'alice', password: h }] } });
    assert.equal(c.auth.required, true);
    assert.equal(c.rules.allowPrivate, false);
    assert.deepEqual(c.rules.connectPorts, [443]);
    assert.equal(c.timeouts.connect, '10s');
    assert.equal(c.timeouts.tunnelIdle, '5m');
    assert.equal(c.timeouts.udpIdle, '2m');
    assert.equal(c.listeners[0]!.port, 3128);
    assert.deepEqual(c.listeners[0]!.protocols, ['http', 'socks5', 'socks4']);
    assert.equal(forwardSchema.parse(c).auth.users.length, 1, 'parsing a parsed config is stable');
  });

  it('rejects bad values with a path', async () => {
    const [h] = await userHashes();
    const bad = (input: unknown): string[] => {
      const r = forwardSchema.safeParse(input);
      assert.equal(r.success, false);
      return r.error!.issues.map((i) => i.path.join('.'));
    };
    assert.deepEqual(bad({}), ['auth.users'], 'auth required but no users');
    assert.ok(bad({ auth: { required: false }, timeouts: { connect: 'soon' } }).includes('timeouts.connect'));
    assert.ok(bad({ auth: { users: [{ name: 'alice', password: 'plain-text' }] } }).includes('auth.users.0.password'));
    assert.ok(bad({ auth: { users: [{ name: 'a:b', password: h }] } }).includes('auth.users.0.name'));
    assert.ok(bad({ auth: { required: false }, rules: { deny: [{ cidrs: ['10.0.0.0/33'] }] } }).some((p) => p.startsWith('rules.deny.0.cidrs')));
    assert.ok(bad({ auth: { required: false }, rules: { allow: [{}] } }).includes('rules.allow.0'));
    assert.ok(bad({ auth: { required: false }, rules: { connectPorts: ['9-1'] } }).some((p) => p.startsWith('rules.connectPorts')));
    assert.ok(bad({ auth: { required: false }, listeners: [{ address: 'localhost', port: 1 }] }).includes('listeners.0.address'));
  });

  it('describes every field and converts to JSON Schema for editors', () => {
    const js = z.toJSONSchema(forwardSchema, { io: 'input' }) as { properties: Record<string, { description?: string; properties?: Record<string, { description?: string }> }> };
    for (const [k, v] of Object.entries(js.properties)) {
      assert.ok(v.description, `${k} has a description`);
      for (const [k2, v2] of Object.entries(v.properties ?? {})) assert.ok(v2.description, `${k}.${k2} has a description`);
    }
    assert.match(JSON.stringify(js.properties.timeouts), /"default":"10s"/);
  });
});

describe('password hashes and credential cache', () => {
  it('hashes in the self-describing scrypt format and verifies in constant time', async () => {
    const h = await hashPassword('correct horse');
    assert.match(h, /^scrypt\$16384\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    assert.notEqual(h, await hashPassword('correct horse'), 'salted');
    assert.equal(await verifyPassword('correct horse', h), true);
    assert.equal(await verifyPassword('wrong', h), false);
    assert.equal(await verifyPassword('x', 'scrypt$3$8$1$AAAA$AAAA'), false, 'malformed hash never verifies');
    assert.equal(parsePasswordHash('scrypt$1048576000$8$1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA=='), undefined, 'absurd cost refused');
  });

  it('caches successful checks only, keyed by user and password', async () => {
    const [h] = await userHashes();
    const dir = new UserDirectory([{ name: 'alice', password: h }], { cacheTtlMs: 60_000 });
    const t0 = performance.now();
    assert.equal(await dir.authenticate('alice', PASSWORD), 'alice');
    const first = performance.now() - t0;
    const t1 = performance.now();
    for (let i = 0; i < 20; i++) assert.equal(await dir.authenticate('alice', PASSWORD), 'alice');
    assert.ok(performance.now() - t1 < first * 5, 'cached checks are fast');
    assert.equal(await dir.authenticate('alice', 'nope'), undefined);
    assert.equal(await dir.authenticate('mallory', PASSWORD), undefined);
    await dir.close();
    const cache = new CredentialCache(1000, 2);
    cache.remember('a', '1', 0);
    cache.remember('b', '2', 0);
    cache.remember('c', '3', 0);
    assert.equal(cache.size, 2, 'bounded');
    assert.equal(cache.get('a', '1', 10), undefined, 'oldest evicted');
    assert.equal(cache.get('c', '3', 10), 'c');
    assert.equal(cache.get('c', '3', 2000), undefined, 'expired');
    assert.equal(cache.get('b', 'x', 10), undefined);
  });
});

describe('startForwardProxy refuses a bad config like the reverse gateway does', () => {
  it('throws ConfigError with every problem by path, not a raw schema error', async () => {
    const { startForwardProxy } = await import('../../src/forward/index.js');
    const { ConfigError } = await import('../../src/config/load.js');
    await assert.rejects(
      startForwardProxy({ auth: { required: false }, timeouts: { connect: 'soon' }, listeners: [{ address: 'localhost', port: 1 }] } as never),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, `a ConfigError, got ${(err as Error).constructor.name}`);
        assert.equal(err.code, 'GATEWISE_CONFIG_INVALID');
        const paths = err.problems.map((p) => p.path);
        assert.ok(paths.includes('timeouts.connect') && paths.includes('listeners[0].address'), paths.join(', '));
        assert.match(err.message, /2 problems/);
        return true;
      },
    );
  });
});

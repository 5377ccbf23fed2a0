import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import test from 'node:test';
import { request } from 'undici';
import { parse } from 'yaml';
import { validateConfig } from '../../src/config/load.js';
import { startRuntime } from '../../src/cli/runtime.js';
import { createLogger } from '../../src/observe/access-log.js';
import { hashPassword } from '../../src/tenants/password-hash.js';
import { startOrigin } from '../forward/helpers.js';

const TOKEN = 'accounts-test-token-0123456789';

interface Problem {
  type: string;
  status: number;
  errors: Array<{ field: string; message: string }>;
}

async function poll<T>(what: string, fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('service operations API: create, validate (400 problem+json naming the field), update, disable, enable, traffic limit and expiry auto-disable, usage by period, delete; persisted atomically in the users file', { timeout: 60_000 }, async () => {
  const origin = await startOrigin();
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-accounts-'));
  const usersFile = join(dir, 'users.yaml');
  const adminHash = await hashPassword('config-user-pass', { N: 1024, r: 8, p: 1 });
  writeFileSync(usersFile, 'users: []\n');
  const lines: string[] = [];
  const logger = createLogger({ destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
  const rt = await startRuntime(
    validateConfig({
      listeners: [],
      admin: { port: 0, token: TOKEN },
      forward: {
        listeners: [{ address: '127.0.0.1', port: 0 }],
        accessLog: false,
        auth: { users: [{ name: 'alice', password: adminHash }], usersFile, usersFileCheck: '200ms', cacheTtl: '0s', failureCacheTtl: '0s' },
        plans: { basic: { requestsPerSecond: 1000 }, pro: { requestsPerSecond: 5000 } },
        rules: { allowPrivate: true, connectPorts: ['1-65535'] },
      },
    }),
    { logger, probeUpstreams: false },
  );
  const port = rt.forward!.addresses()[0]!.port;
  const api = async <T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; type: string; body: T }> => {
    const r = await request(`${rt.adminUrl}${path}`, {
      method: method as 'GET',
      headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await r.body.text();
    return { status: r.statusCode, type: String(r.headers['content-type']), body: JSON.parse(text) as T };
  };
  const viaProxy = (user: string, password: string, path = '/x'): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: `http://127.0.0.1:${origin.port}${path}`, agent: false, headers: { host: `127.0.0.1:${origin.port}`, 'proxy-authorization': `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
        res.on('error', () => resolve(res.statusCode!));
      });
      req.on('error', reject);
      req.end();
    });
  const fileUsers = (): Array<Record<string, unknown>> => (parse(readFileSync(usersFile, 'utf8')) as { users: Array<Record<string, unknown>> }).users;
  const invalid = async (body: unknown, field: string, re?: RegExp): Promise<void> => {
    const r = await api<Problem>('POST', '/accounts', body);
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.match(r.type, /^application\/problem\+json/);
    const e = r.body.errors.find((x) => x.field === field);
    assert.ok(e, `${field} not named: ${JSON.stringify(r.body)}`);
    if (re) assert.match(e.message, re);
  };
  try {
    // Create.
    const created = await api<Record<string, unknown>>('POST', '/accounts', { name: 'zoe', password: 'zoe-password-1', plan: 'basic' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.password, undefined, 'never the hash');
    assert.equal(created.body.active, true);
    assert.match(String(fileUsers().find((u) => u.name === 'zoe')?.password), /^scrypt\$/, 'stored hashed in the users file');
    assert.equal(await viaProxy('zoe', 'zoe-password-1'), 200);
    assert.equal(await viaProxy('zoe', 'wrong-password'), 407);

    // Validation: each refusal names its field.
    await invalid({ name: 'bad name', password: 'long-enough-1' }, 'name');
    await invalid({ name: 'y', password: 'short' }, 'password', /8/);
    await invalid({ name: 'y', password: 'long-enough-1', plan: 'nope' }, 'plan', /no plan named nope/);
    await invalid({ name: 'y', password: 'long-enough-1', expires: 'tomorrow' }, 'expires', /ISO 8601/);
    await invalid({ name: 'y', password: 'long-enough-1', trafficLimit: '10 parsecs' }, 'trafficLimit');
    await invalid({ name: 'y', password: 'long-enough-1', maxConnections: -1 }, 'maxConnections');
    await invalid({ name: 'y', password: 'long-enough-1', color: 'blue' }, 'color', /unknown field/);
    await invalid({ name: 'y' }, 'password', /password, an allowFrom list, or both/);
    await invalid('{not json', '(body)', /not JSON/);
    await invalid({ name: 'y', password: 'long-enough-1', allowFrom: ['300.1.1.1'] }, 'allowFrom[0]');
    assert.equal((await api('POST', '/accounts', { name: 'w1', allowFrom: ['127.0.0.0/30'] })).status, 201);
    await invalid({ name: 'w2', allowFrom: ['192.0.2.1', '127.0.0.2'] }, 'allowFrom[1]', /overlaps allowFrom 127\.0\.0\.0\/30 of user w1/);
    assert.equal((await api('POST', '/accounts', { name: 'zoe', password: 'another-pass-1' })).status, 409, 'name taken');
    assert.equal((await api('POST', '/accounts', { name: 'alice', password: 'another-pass-1' })).status, 409, 'a config user name is taken too');
    assert.equal((await api('PATCH', '/accounts/alice', { plan: 'pro' })).status, 409, 'config users are changed in the config');
    assert.equal((await api('DELETE', '/accounts/alice')).status, 409);

    // Update: plan and limits.
    const patched = await api<Record<string, unknown>>('PATCH', '/accounts/zoe', { plan: 'pro', maxConnections: 5 });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    assert.deepEqual([patched.body.plan, patched.body.maxConnections], ['pro', 5]);
    assert.equal(rt.forward!.plans.planName('zoe'), 'pro', 'applied at once');
    const p400 = await api<Problem>('PATCH', '/accounts/zoe', { plan: 'gold' });
    assert.equal(p400.status, 400);
    assert.equal(p400.body.errors[0]!.field, 'plan');
    assert.equal((await api('PATCH', '/accounts/zoe', { maxConnections: null })).status, 200);
    assert.equal(fileUsers().find((u) => u.name === 'zoe')!.maxConnections, undefined, 'null removes a field');

    // Disable and enable.
    const d = await api<Record<string, unknown>>('POST', '/accounts/zoe/disable?reason=unpaid');
    assert.deepEqual([d.status, d.body.disabled, d.body.disabledReason, d.body.active], [200, true, 'unpaid', false]);
    assert.equal(await viaProxy('zoe', 'zoe-password-1'), 407);
    const e = await api<Record<string, unknown>>('POST', '/accounts/zoe/enable');
    assert.deepEqual([e.status, e.body.disabled, e.body.disabledReason, e.body.active], [200, false, undefined, true]);
    assert.equal(await viaProxy('zoe', 'zoe-password-1'), 200);

    // Traffic limit: reaching it disables the user (persisted), within a second or so.
    assert.equal((await api('PATCH', '/accounts/zoe', { trafficLimit: '20kB', trafficPeriod: 'day' })).status, 200);
    assert.equal(await viaProxy('zoe', 'zoe-password-1', '/big/50000'), 200);
    const off = await poll('zoe disabled by trafficLimit', async () => {
      const r = await api<Record<string, unknown>>('GET', '/accounts/zoe');
      return r.body.disabled === true ? r.body : undefined;
    });
    assert.equal(off.disabledReason, 'trafficLimit');
    assert.equal(fileUsers().find((u) => u.name === 'zoe')!.disabled, true, 'persisted');
    assert.equal(await viaProxy('zoe', 'zoe-password-1'), 407);
    assert.ok(lines.some((l) => /"event":"user-disabled"/.test(l) && /zoe/.test(l)), 'logged');

    // Usage by user and period.
    const day = await api<{ period: string; id: string; users: Array<{ user: string; down: number; total: number; trafficLimit: number | null }> }>('GET', '/usage?period=day');
    assert.equal(day.status, 200);
    const z = day.body.users.find((u) => u.user === 'zoe')!;
    assert.ok(z.down >= 50000 && z.total >= 50000, JSON.stringify(z));
    assert.equal(z.trafficLimit, 20000);
    assert.ok(day.body.users.some((u) => u.user === 'alice'), 'config users listed too');
    const month = await api<{ id: string; users: Array<{ user: string; total: number }> }>('GET', '/usage?period=month&user=zoe');
    assert.equal(month.status, 200);
    assert.equal(month.body.users.length, 1);
    assert.ok(month.body.users[0]!.total >= 50000);
    const badPeriod = await api<Problem>('GET', '/usage?period=week');
    assert.deepEqual([badPeriod.status, badPeriod.body.errors[0]!.field], [400, 'period']);
    const badAt = await api<Problem>('GET', '/usage?period=month&at=2026-13-01');
    assert.deepEqual([badAt.status, badAt.body.errors[0]!.field], [400, 'at']);
    assert.equal((await api('GET', '/usage?user=nobody')).status, 404);

    // Expiry: the user works until then, and is disabled after.
    // (A cheap hash, so the check before the expiry is not late on a busy machine.)
    const tmpHash = await hashPassword('temporary-pass', { N: 1024, r: 8, p: 1 });
    const expires = new Date(Date.now() + 3000).toISOString();
    assert.equal((await api('POST', '/accounts', { name: 'tmp', passwordHash: tmpHash, expires })).status, 201);
    assert.equal(await viaProxy('tmp', 'temporary-pass'), 200);
    const gone = await poll('tmp disabled at expiry', async () => {
      const r = await api<Record<string, unknown>>('GET', '/accounts/tmp');
      return r.body.disabled === true ? r.body : undefined;
    });
    assert.equal(gone.disabledReason, 'expired');
    assert.equal(await viaProxy('tmp', 'temporary-pass'), 407);

    // Delete.
    assert.deepEqual((await api('DELETE', '/accounts/zoe')).body, { deleted: 'zoe' });
    assert.equal((await api('DELETE', '/accounts/zoe')).status, 404);
    assert.equal(fileUsers().some((u) => u.name === 'zoe'), false);

    // The users-file watcher does not undo API changes, and still takes an edit made by hand.
    await new Promise((r) => setTimeout(r, 600)); // three watcher periods (usersFileCheck 200ms)
    assert.deepEqual(
      (await api<{ accounts: Array<{ name: string }> }>('GET', '/accounts')).body.accounts.map((a) => a.name).sort(),
      ['alice', 'tmp', 'w1'],
    );
    const edited = { users: [...fileUsers(), { name: 'ext', password: adminHash }] };
    writeFileSync(usersFile, JSON.stringify(edited));
    await poll('hand edit applied', async () => ((await api<{ accounts: Array<{ name: string }> }>('GET', '/accounts')).body.accounts.some((a) => a.name === 'ext') ? true : undefined));
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temporary files left');
  } finally {
    await rt.close();
    await origin.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('accounts without a users file are read-only: changes answer 409 saying why', async () => {
  const hash = await hashPassword('config-user-pass', { N: 1024, r: 8, p: 1 });
  const rt = await startRuntime(
    validateConfig({ listeners: [], admin: { port: 0, token: TOKEN }, forward: { listeners: [{ address: '127.0.0.1', port: 0 }], accessLog: false, auth: { users: [{ name: 'alice', password: hash }] } } }),
    { logger: createLogger({ level: 'error' }), probeUpstreams: false },
  );
  try {
    const r = await request(`${rt.adminUrl}/accounts`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'zoe', password: 'zoe-password-1' }) });
    const body = (await r.body.json()) as { detail: string };
    assert.equal(r.statusCode, 409);
    assert.match(body.detail, /usersFile/);
    const list = await request(`${rt.adminUrl}/accounts`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.deepEqual(((await list.body.json()) as { accounts: Array<{ name: string; source: string }> }).accounts.map((a) => [a.name, a.source]), [['alice', 'config']]);
    const noToken = await request(`${rt.adminUrl}/accounts`);
    await noToken.body.text();
    assert.equal(noToken.statusCode, 401, 'token required');
  } finally {
    await rt.close();
  }
});

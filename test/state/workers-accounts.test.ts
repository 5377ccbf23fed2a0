import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { GatewiseProcess } from '../helpers/gatewise-process.js';
import { freePort } from '../helpers/redis.js';
import { seededRun } from '../helpers/seeded.js';
import { userHashes } from '../forward/helpers.js';

/**
 * `gatewise run --workers 2`: account changes sent at the same time to the admin API, each on
 * a fresh connection (the kernel hands them to either worker), all land in the users file,
 * and every worker ends with the same view of it. A seeded family of interleavings: per user
 * a chain of operations (its steps in order), the chains of all users at once.
 */
const TOKEN = 'workers-accounts-token-0123456789';

type Op = 'create' | 'plan' | 'disable' | 'enable' | 'delete';
interface Want {
  plan?: string;
  disabled?: boolean;
}

const NEW_CHAINS: Op[][] = [['create'], ['create', 'plan'], ['create', 'disable'], ['create', 'delete'], ['create', 'plan', 'disable'], ['create', 'disable', 'enable']];
const OLD_CHAINS: Op[][] = [['plan'], ['disable'], ['delete'], ['disable', 'enable'], []];

describe('--workers 2: concurrent account changes through either worker all land', { timeout: 180_000 }, () => {
  let dir: string;
  let gw: GatewiseProcess;
  let admin: string;
  let usersFile: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gatewise-workers-accounts-'));
    usersFile = join(dir, 'users.json');
    writeFileSync(usersFile, '[]\n');
    const adminPort = await freePort();
    admin = `http://127.0.0.1:${adminPort}`;
    const [h1] = await userHashes();
    gw = await GatewiseProcess.start(
      join(dir, 'gatewise.json'),
      {
        admin: { port: adminPort, token: TOKEN },
        forward: {
          listeners: [{ address: '127.0.0.1', port: await freePort(), protocols: ['http'] }],
          auth: { users: [{ name: 'root', password: h1 }], usersFile, usersFileCheck: '60s' },
          plans: { basic: { requestsPerSecond: 100 }, gold: { requestsPerSecond: 1000 } },
          rules: { allowPrivate: true },
        },
      },
      { workers: 2 },
    );
  });
  after(async () => {
    await gw?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    const r = await request(`${admin}${path}`, {
      method,
      reset: true, // a fresh connection each time: either worker may take it
      headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    const text = await r.body.text();
    return { status: r.statusCode, body: text ? (JSON.parse(text) as unknown) : undefined };
  }

  async function step(user: string, op: Op): Promise<void> {
    const r =
      op === 'create'
        ? await call('POST', '/accounts', { name: user, password: 'password-of-' + user, plan: 'basic' })
        : op === 'plan'
          ? await call('PATCH', `/accounts/${user}`, { plan: 'gold' })
          : op === 'disable'
            ? await call('POST', `/accounts/${user}/disable?reason=test`)
            : op === 'enable'
              ? await call('POST', `/accounts/${user}/enable`)
              : await call('DELETE', `/accounts/${user}`);
    assert.ok(r.status >= 200 && r.status < 300, `${op} ${user}: ${r.status} ${JSON.stringify(r.body)}`);
  }

  function apply(want: Map<string, Want>, user: string, op: Op): void {
    if (op === 'create') want.set(user, { plan: 'basic' });
    else if (op === 'plan') want.get(user)!.plan = 'gold';
    else if (op === 'disable') want.get(user)!.disabled = true;
    else if (op === 'enable') delete want.get(user)!.disabled;
    else want.delete(user);
  }

  const fileView = (): Map<string, Want> => {
    const list = JSON.parse(readFileSync(usersFile, 'utf8')) as Array<{ name: string; plan?: string; disabled?: boolean }>;
    return new Map(list.map((u) => [u.name, { ...(u.plan ? { plan: u.plan } : {}), ...(u.disabled ? { disabled: true } : {}) }]));
  };

  it('every change sent to either worker is in the users file and in both workers\' views (seeded, 3 rounds of 8-14 users)', async () => {
    await seededRun('workers accounts', async (rand) => {
      for (let round = 0; round < 3; round++) {
        // The file as it stands, and some users already in it (made one at a time).
        const want = fileView();
        const olds: string[] = [];
        for (let i = 0; i < 2 + Math.floor(rand() * 3); i++) {
          const u = `r${round}old${i}`;
          await step(u, 'create');
          apply(want, u, 'create');
          olds.push(u);
        }
        const chains = new Map<string, Op[]>();
        for (const u of olds) chains.set(u, OLD_CHAINS[Math.floor(rand() * OLD_CHAINS.length)]!);
        const fresh = 6 + Math.floor(rand() * 7);
        for (let i = 0; i < fresh; i++) chains.set(`r${round}new${i}`, NEW_CHAINS[Math.floor(rand() * NEW_CHAINS.length)]!);
        // Every chain at once; each chain's steps in order, with a seeded jitter before each.
        await Promise.all(
          [...chains].map(async ([user, ops]) => {
            for (const op of ops) {
              await new Promise((r) => setTimeout(r, Math.floor(rand() * 15)));
              await step(user, op);
            }
          }),
        );
        for (const [user, ops] of chains) for (const op of ops) apply(want, user, op);
        assert.deepEqual(Object.fromEntries([...fileView()].sort()), Object.fromEntries([...want].sort()), `round ${round}: the users file holds every change (chains: ${JSON.stringify([...chains])})`);
        // Both workers see that file (each re-reads it when the other writes).
        const end = Date.now() + 30_000; // generous: a stalling machine
        let last: { consistent?: boolean; workers?: unknown[]; accounts?: Array<{ name: string; source: string; plan?: string; disabled?: boolean }> } = {};
        while (Date.now() < end) {
          const r = await call('GET', '/accounts');
          last = r.body as typeof last;
          if (last.consistent === true && last.workers?.length === 2) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.equal(last.workers?.length, 2, `both workers answered: ${JSON.stringify(last.workers)}`);
        assert.equal(last.consistent, true, `both workers see the same accounts: ${JSON.stringify(last.workers)}`);
        const seen = new Map((last.accounts ?? []).filter((a) => a.source === 'usersFile').map((a) => [a.name, { ...(a.plan ? { plan: a.plan } : {}), ...(a.disabled ? { disabled: true } : {}) }]));
        assert.deepEqual(Object.fromEntries([...seen].sort()), Object.fromEntries([...want].sort()), `round ${round}: the workers' view`);
      }
    });
  });
});

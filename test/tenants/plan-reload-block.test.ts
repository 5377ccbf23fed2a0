import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { memoryLogger, startOrigin, userHashes } from '../forward/helpers.js';
import { request } from 'node:http';
import { PASSWORD, PASSWORD2, USER, USER2, basicOf } from '../egress/helpers.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { startForwardProxy } from '../../src/forward/index.js';
import type { ForwardConfigInput } from '../../src/config/forward.js';
import { formatBytes } from '../../src/text/index.js';
import { periodOf, usageKey } from '../../src/tenants/index.js';

const T0 = Date.parse('2026-03-10T10:00:00.100Z');

/** A GET through the proxy: the response's status and head, once its body ended or was cut (a byte quota may cut it). */
function headOf(proxyPort: number, url: string, user: string, password: string): Promise<{ status: number; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: proxyPort, path: url, agent: false, headers: { 'proxy-authorization': basicOf(user, password), host: new URL(url).host } }, (res) => {
      const done = (): void => resolve({ status: res.statusCode ?? 0, headers: res.headers });
      res.on('error', done);
      res.on('close', done);
      res.resume();
    });
    req.setTimeout(8000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * F2: a quota block follows the user's current plan. A block stands only while usage is at or
 * over the current limit: a plan upgrade or a raised limit (users file reload, config reload)
 * lifts it at once, and the refusal never names a limit the usage has not reached.
 */
describe('plans: a quota block is judged against the current plan', () => {
  it('users file reload (plan change, delete and create again) and config reload (limit raised, lowered) (seeded)', async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      const [h1, h2] = await userHashes();
      const dir = mkdtempSync(join(tmpdir(), 'gw-plan-reload-'));
      const usersFile = join(dir, 'users.json');
      const origin = await startOrigin();
      const small = 2_000 + rand.int(20_000);
      const fetchN = small + 1 + rand.int(small);
      const big = 10 * fetchN + rand.int(1_000_000);
      const writeUsers = (alice: object | undefined): void => writeFileSync(usersFile, JSON.stringify({ users: alice === undefined ? [] : [{ name: USER, password: h1, ...alice }] }));
      const cfg = (bobLimit: number): ForwardConfigInput => ({
        listeners: [{ address: '127.0.0.1', port: 0 }],
        revealDetails: true,
        timeouts: { connect: '2s', dns: '2s', handshake: '3s' },
        auth: { required: true, usersFile, usersFileCheck: '1h', users: [{ name: USER2, password: h2, plan: 'b' }] },
        rules: { allowPrivate: true, connectPorts: ['1-65535'] },
        plans: { small: { bytesPerDay: { down: small } }, big: { bytesPerDay: { down: big } }, b: { bytesPerDay: { down: bobLimit } } },
      });
      writeUsers({ plan: 'small' });
      const { logger, lines } = memoryLogger();
      const accessLinesOf = () => lines.filter((l) => l.type === "access").map((l) => [l.user, l.status, l.endedBy, l.bytesDown, l.error]);
      const proxy = await startForwardProxy(cfg(small), { logger, now: () => T0 });
      const port = proxy.addresses()[0]!.port;
      const url = `http://127.0.0.1:${origin.port}/big/${fetchN}`;
      const get = async (user: string, pw: string) => { try { return await headOf(port, url, user, pw); } catch (e) { throw new Error(`${user}: ${(e as Error).message} ${JSON.stringify(accessLinesOf())}`); } };
      const used = async (user: string): Promise<number> => {
        await proxy.plans.flush();
        return (await proxy.store.hgetall(usageKey(user, 'day', periodOf('day', T0).id))).down ?? 0;
      };
      const limitIn = (r: { headers: Record<string, unknown> }): string => /limit of ([^;]+) reached/.exec(String(r.headers['proxy-status']))?.[1] ?? '';
      const info = { small, fetchN, big };
      try {
        // Users file: alice on `small` goes over it and is blocked.
        assert.equal((await get(USER, PASSWORD)).status, 200);
        let r = await get(USER, PASSWORD);
        assert.equal(r.status, 429, JSON.stringify(info));
        assert.equal(limitIn(r), formatBytes(small));
        // Moved to `big`: the block is lifted at once.
        writeUsers({ plan: 'big' });
        assert.equal(await proxy.reloadUsers(), true);
        r = await get(USER, PASSWORD);
        assert.equal(r.status, 200, `after the upgrade: ${String(r.headers['proxy-status'])} ${JSON.stringify(info)}`);
        // Deleted, then created again on `small`: the usage is billed by name and stays, so
        // she is blocked again, by the limit she is over now; created again on `big`: admitted.
        writeUsers(undefined);
        assert.equal(await proxy.reloadUsers(), true);
        assert.equal((await get(USER, PASSWORD)).status, 407);
        writeUsers({ plan: 'small' });
        assert.equal(await proxy.reloadUsers(), true);
        r = await get(USER, PASSWORD);
        assert.equal(r.status, 429);
        assert.equal(limitIn(r), formatBytes(small));
        writeUsers({ plan: 'big' });
        assert.equal(await proxy.reloadUsers(), true);
        assert.equal((await get(USER, PASSWORD)).status, 200);
        assert.ok((await used(USER)) < big);

        // Config reload: bob's plan `b` limit raised past his usage lifts his block.
        assert.equal((await get(USER2, PASSWORD2)).status, 200);
        r = await get(USER2, PASSWORD2);
        assert.equal(r.status, 429);
        await proxy.reload(cfg(big));
        r = await get(USER2, PASSWORD2);
        assert.equal(r.status, 200, `after the raise: ${String(r.headers['proxy-status'])}`);
        // Lowered under his usage: blocked, naming the limit he is over.
        const usedBob = await used(USER2);
        const lower = 1 + rand.int(usedBob);
        await proxy.reload(cfg(lower));
        r = await get(USER2, PASSWORD2);
        assert.equal(r.status, 429);
        assert.equal(limitIn(r), formatBytes(lower));
        // Raised to just over his usage: admitted again (the block stands only while usage ≥ limit).
        await proxy.reload(cfg((await used(USER2)) + 1));
        assert.equal((await get(USER2, PASSWORD2)).status, 200);
      } finally {
        await proxy.close();
        await origin.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});

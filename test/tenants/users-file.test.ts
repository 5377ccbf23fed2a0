import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { usageCommand } from '../../src/cli/usage-command.js';
import { startForwardProxy, type ForwardProxy } from '../../src/forward/index.js';
import { hashPassword } from '../../src/tenants/index.js';
import { memoryLogger } from '../forward/helpers.js';
import { proxyGet, whoAmI, type WhoAmI } from '../egress/helpers.js';

describe('users file', () => {
  let dir: string;
  let origin: WhoAmI;
  let proxy: ForwardProxy;
  let lines: Array<Record<string, unknown>>;
  let port: number;
  let file: string;
  let stateFile: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gatewise-users-'));
    origin = await whoAmI();
    file = join(dir, 'users.yaml');
    stateFile = join(dir, 'state.json');
    await writeFile(file, stringify({ users: [{ name: 'carol', password: await hashPassword('c-pass'), plan: 'basic' }] }));
    const log = memoryLogger();
    lines = log.lines;
    proxy = await startForwardProxy(
      {
        listeners: [{ address: '127.0.0.1', port: 0 }],
        auth: { usersFile: file, usersFileCheck: '100ms' },
        rules: { allowPrivate: true },
        plans: { basic: { requestsPerSecond: 100 } },
        state: { file: stateFile, flushInterval: '1h' },
      },
      { logger: log.logger },
    );
    port = proxy.addresses()[0]!.port;
  });
  after(async () => {
    await proxy.close();
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('loads users from the file, reloads on change, keeps the old users when the file is bad', async () => {
    const url = `http://127.0.0.1:${origin.port}/`;
    assert.equal((await proxyGet(port, url, 'carol', 'c-pass')).status, 200);
    assert.equal((await proxyGet(port, url, 'dave', 'd-pass')).status, 407);
    await writeFile(file, stringify([{ name: 'dave', password: await hashPassword('d-pass') }]));
    let ok = false;
    for (let i = 0; i < 40 && !ok; i++) {
      ok = (await proxyGet(port, url, 'dave', 'd-pass')).status === 200;
      if (!ok) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(ok, 'dave works after the file changed');
    // The reload is one line with its reason (issue 18: every state change logged with why).
    const reloaded = lines.find((l) => l.type === 'users' && l.event === 'reloaded');
    assert.ok(reloaded, 'a users-reloaded line');
    assert.match(String(reloaded.reason), /^the file changed \((watch|poll)\)$/);
    assert.equal((await proxyGet(port, url, 'carol', 'c-pass')).status, 407);
    await writeFile(file, 'users: [ { name: eve, password: not-a-hash } ]\n');
    assert.equal(await proxy.reloadUsers(), false);
    const rejected = lines.find((l) => l.level === 'error' && /keeping the current users/.test(String(l.msg)));
    assert.ok(rejected);
    assert.equal(rejected.reason, 'reload requested');
    assert.equal(rejected.event, 'rejected');
    assert.equal((await proxyGet(port, url, 'dave', 'd-pass')).status, 200);
  });

  it('gatewise usage reads the state file', async () => {
    await proxy.close();
    const out: string[] = [];
    const code = await usageCommand(['--state', stateFile, '--json'], { write: (s: string) => out.push(s) });
    assert.equal(code, 0);
    const data = JSON.parse(out.join('')) as { users: Array<{ user: string; day: { down: number; requests: number } }> };
    const carol = data.users.find((u) => u.user === 'carol');
    assert.ok(carol && carol.day.requests >= 1 && carol.day.down > 0, JSON.stringify(data));
    const text: string[] = [];
    assert.equal(await usageCommand(['--state', stateFile], { write: (s: string) => text.push(s) }), 0);
    assert.match(text.join(''), /carol/);
    assert.equal(await usageCommand([], { write: () => {} }, { write: () => {} }), 2);
  });
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import { loadConfigFile } from '../../src/config/load.js';
import { startRuntime } from '../../src/cli/runtime.js';
import { createLogger } from '../../src/observe/access-log.js';

// Finding F5 (admin review): a changed admin.token applied by /reload (or SIGHUP) did not take
// effect: the old (leaked) token kept working and the new one got 401 until a restart.

const OLD = 'old-leaked-admin-token-0001';
const NEW = 'new-rotated-admin-token-0002';

function write(file: string, cfg: unknown): void {
  writeFileSync(`${file}.tmp`, stringify(cfg));
  renameSync(`${file}.tmp`, file);
}

async function call(admin: string, path: string, token: string | undefined, method = 'GET'): Promise<{ status: number; body: any }> {
  const r = await request(`${admin}${path}`, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
  const text = await r.body.text();
  return { status: r.statusCode, body: text.startsWith('{') ? JSON.parse(text) : text };
}

test('a changed admin.token applies at reload: the old token gets 401, the new one 200; removing the admin section keeps the last token', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-admin-token-'));
  const file = join(dir, 'gatewise.yaml');
  const base = { listeners: [{ address: '127.0.0.1', port: 0 }], clusters: { c: { endpoints: ['http://127.0.0.1:9'] } }, routes: [{ cluster: 'c' }], log: { access: false, level: 'error' } };
  write(file, { ...base, admin: { port: 0, token: OLD } });
  const rt = await startRuntime(await loadConfigFile(file), { configFile: file, probeUpstreams: false, logger: createLogger({ level: 'error' }) });
  try {
    const admin = rt.adminUrl!;
    assert.equal((await call(admin, '/status', OLD)).status, 200);
    assert.equal((await call(admin, '/status', NEW)).status, 401);
    write(file, { ...base, admin: { port: 0, token: NEW } });
    const r = await call(admin, '/reload', OLD, 'POST');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok(!r.body.restart.includes('admin'), `the token needs no restart: ${JSON.stringify(r.body.restart)}`);
    assert.equal((await call(admin, '/status', OLD)).status, 401, 'the old token is revoked');
    assert.equal((await call(admin, '/status', NEW)).status, 200, 'the new token works');
    assert.equal((await call(admin, '/status', undefined)).status, 401);
    // An admin section removed by a reload: the listener runs until a restart, still behind the last token.
    write(file, base);
    const r2 = await call(admin, '/reload', NEW, 'POST');
    assert.equal(r2.status, 200, JSON.stringify(r2.body));
    assert.equal((await call(admin, '/status', undefined)).status, 401, 'not opened by removing the section');
    assert.equal((await call(admin, '/status', NEW)).status, 200);
  } finally {
    await rt.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

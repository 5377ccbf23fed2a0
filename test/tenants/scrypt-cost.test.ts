import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'node:test';
import { request } from 'undici';
import { validateConfig } from '../../src/config/load.js';
import { startRuntime } from '../../src/cli/runtime.js';
import { checkConfigText } from '../../src/config/check.js';
import { MAX_SCRYPT_MEMORY, MAX_SCRYPT_WORK, parsePasswordHash } from '../../src/tenants/password-hash.js';
import { seededRandom } from '../helpers/seeded.js';

/**
 * A stored password hash carries its scrypt parameters, and every password check as that user
 * runs them: a hash with N=2^20, r=32, p=16 asked ~4 GiB and 16 passes of each wrong password
 * any client sends (adversarial review of the admin surface, session 31: POST /accounts took it).
 * Hashes are refused where they enter (the config, the users file, the admin API) when one check
 * would take more than MAX_SCRYPT_MEMORY (128·N·r bytes) or MAX_SCRYPT_WORK (N·r·p), with the
 * parameters and the caps named.
 */

const SALT = Buffer.alloc(16, 7).toString('base64');
const HASH = Buffer.alloc(32, 9).toString('base64');
const hashOf = (N: number, r: number, p: number): string => `scrypt$${N}$${r}$${p}$${SALT}$${HASH}`;
const allowed = (N: number, r: number, p: number): boolean => N >= 2 && (N & (N - 1)) === 0 && 128 * N * r <= MAX_SCRYPT_MEMORY && N * r * p <= MAX_SCRYPT_WORK;

function configWith(hash: string): string {
  return `listeners: []\nforward:\n  listeners: [{ address: 127.0.0.1, port: 0 }]\n  auth:\n    users:\n      - name: alice\n        password: "${hash}"\n`;
}

test('seeded family: scrypt parameters around the caps, in the config and in parsing', () => {
  const rand = seededRandom();
  for (let i = 0; i < 300; i++) {
    const N = 2 ** (1 + rand.int(24)) + (rand.next() < 0.1 ? 1 : 0);
    const r = 1 + rand.int(rand.next() < 0.5 ? 8 : 64);
    const p = 1 + rand.int(rand.next() < 0.5 ? 2 : 20);
    const want = allowed(N, r, p);
    const where = `seed ${rand.seed}: N=${N} r=${r} p=${p}`;
    assert.equal(parsePasswordHash(hashOf(N, r, p)) !== undefined, want, where);
    const c = checkConfigText(configWith(hashOf(N, r, p)), 'c.yaml', { host: false });
    const problem = c.problems.find((pr) => pr.path === 'forward.auth.users[0].password');
    assert.equal(problem === undefined, want, `${where}: ${c.problems.map((pr) => `${pr.path}: ${pr.message}`).join('; ')}`);
    if (problem !== undefined && (N & (N - 1)) === 0) assert.match(problem.message, /per check|power of two/, where);
  }
});

test('the admin API refuses a costly passwordHash with 400 naming the field; a users file with one is a problem of check', { timeout: 30_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-scrypt-cost-'));
  const usersFile = join(dir, 'users.yaml');
  writeFileSync(usersFile, 'users: []\n');
  const token = 'scrypt-cost-test-token-0123456789';
  const rt = await startRuntime(
    validateConfig({ listeners: [], admin: { port: 0, token }, forward: { listeners: [{ address: '127.0.0.1', port: 0 }], accessLog: false, auth: { usersFile, users: [{ name: 'alice', password: hashOf(2 ** 10, 8, 1) }] } } }),
    { probeUpstreams: false },
  );
  try {
    const post = async (body: unknown): Promise<{ status: number; text: string }> => {
      const r = await request(`${rt.adminUrl}/accounts`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: r.statusCode, text: await r.body.text() };
    };
    const heavy = await post({ name: 'heavy', passwordHash: hashOf(2 ** 20, 32, 16) });
    assert.equal(heavy.status, 400, heavy.text);
    assert.match(heavy.text, /passwordHash/);
    assert.match(heavy.text, /per check/);
    const fine = await post({ name: 'fine', passwordHash: hashOf(2 ** 14, 8, 1) });
    assert.equal(fine.status, 201, fine.text);
    writeFileSync(usersFile, `users:\n  - name: heavy\n    password: "${hashOf(2 ** 20, 32, 16)}"\n`);
    const c = checkConfigText(`listeners: []\nforward:\n  auth: { usersFile: ${usersFile} }\n`, 'c.yaml');
    assert.ok(c.problems.some((p) => /per check/.test(p.message)), c.problems.map((p) => p.message).join('; '));
  } finally {
    await rt.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

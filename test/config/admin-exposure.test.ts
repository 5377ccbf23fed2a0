import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkConfigText } from '../../src/config/check.js';
import { ConfigError, validateConfig } from '../../src/config/load.js';
import { between, seededRun } from '../helpers/seeded.js';

// Finding F3 (admin review): an admin listener on a network address without a token gave every
// peer account creation, reload and drain, and `gatewise check` said ok.

const BIN = fileURLToPath(new URL('../../../bin/gatewise.js', import.meta.url));
const LOOPBACK = ['127.0.0.1', '127.0.0.53', '127.255.255.254', '::1', 'localhost', 'LOCALHOST', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1'];
const NETWORK = ['0.0.0.0', '::', '10.0.0.5', '192.168.1.10', '2001:db8::1', 'admin.internal', '128.0.0.1', '::ffff:10.0.0.1'];

function yamlFor(address: string, extra = ''): string {
  return ['admin:', `  address: "${address}"`, '  port: 9901', extra].filter(Boolean).join('\n') + '\n';
}

test('admin on a non-loopback address without a token is a problem naming admin.address, unless admin.allowUnauthenticated; loopback and a token are fine (seeded)', async () => {
  await seededRun('admin exposure', (rand) => {
    for (let i = 0; i < 40; i++) {
      const loop = rand() < 0.5;
      const address = loop ? LOOPBACK[between(rand, 0, LOOPBACK.length - 1)]! : NETWORK[between(rand, 0, NETWORK.length - 1)]!;
      const kind = between(rand, 0, 2); // 0 nothing, 1 token, 2 opt-in
      const extra = kind === 1 ? '  token: a-long-enough-admin-token' : kind === 2 ? '  allowUnauthenticated: true' : '';
      const r = checkConfigText(yamlFor(address, extra), 'c.yaml', { host: false });
      const p = r.problems.find((x) => x.path.startsWith('admin'));
      if (loop || kind !== 0) assert.equal(p, undefined, `${address} kind ${kind}: ${JSON.stringify(r.problems)}`);
      else {
        assert.ok(p, `${address}: a problem`);
        assert.equal(p.path, 'admin.address');
        assert.match(p.message, /admin\.token/);
        assert.match(p.message, /admin\.allowUnauthenticated/);
        assert.equal(p.line, 2);
        assert.throws(() => validateConfig({ admin: { address, port: 0 } }), (e: unknown) => e instanceof ConfigError && e.problems.some((q) => q.path === 'admin.address'));
      }
    }
  });
});

test('gatewise check exits non-zero on an unauthenticated network admin listener and names the path', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-admin-exposure-'));
  try {
    const file = join(dir, 'c.yaml');
    writeFileSync(file, yamlFor('0.0.0.0'));
    const r = await new Promise<{ code: number; out: string }>((resolve) => {
      execFile(process.execPath, [BIN, 'check', '-c', file], { timeout: 15000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }));
    });
    assert.notEqual(r.code, 0, r.out);
    assert.match(r.out, /admin\.address/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

/**
 * Finding (newcomer walk-through): docs/deployment.md said of `gatewise check` "Exit 0 when
 * `run` would start", and a config whose listener port another process holds checked ok
 * (exit 0) while `run` then failed (exit 1, EADDRINUSE). `check` binds nothing on purpose (it
 * validates the running process's own config before a SIGHUP, whose ports are in use by that
 * process), so the doc now says what is left to `run` and how `run` says it.
 *
 * A port held by this test: check exits 0, run exits 1 naming the address, the config entry
 * and EADDRINUSE, and the doc's paragraph on check says both.
 */

const ROOT = new URL('../../../', import.meta.url);
const BIN = fileURLToPath(new URL('bin/gatewise.js', ROOT));

function gatewise(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 30_000, cwd }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

test('a listener port another process holds: check exits 0 (it binds nothing), run exits 1 naming it, and docs/deployment.md says so', { timeout: 120_000 }, async () => {
  const holder = createServer();
  holder.listen(0, '127.0.0.1');
  await once(holder, 'listening');
  const port = (holder.address() as AddressInfo).port;
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-port-held-'));
  try {
    writeFileSync(join(dir, 'gw.yaml'), `listeners:\n  - address: 127.0.0.1\n    port: ${port}\nclusters:\n  app:\n    endpoints: ["http://127.0.0.1:1"]\nroutes:\n  - cluster: app\n`);
    const check = await gatewise(['check', '-c', 'gw.yaml'], dir);
    assert.equal(check.code, 0, check.stderr);
    const run = await gatewise(['run', '-c', 'gw.yaml'], dir);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(listeners\\[0\\] of gw\\.yaml\\): address already in use \\(EADDRINUSE\\)`));
  } finally {
    holder.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const doc = readFileSync(new URL('docs/deployment.md', ROOT), 'utf8');
  const para = doc.slice(doc.indexOf('`check` makes every check `run` makes'), doc.indexOf('## systemd'));
  assert.doesNotMatch(para, /Exit 0 when `run` would start\./, 'the paragraph promises what check cannot know');
  assert.match(para, /already in use/, 'the paragraph says a port in use is found by run');
  assert.match(para, /EADDRINUSE/);
});

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { verifyPassword } from '../../src/tenants/index.js';
import { cleanEnv, run, startOrigin } from './helpers.js';

const forwardJs = fileURLToPath(new URL('../../src/cli/forward.js', import.meta.url));
const passwdJs = fileURLToPath(new URL('../../src/cli/passwd.js', import.meta.url));

function script(file: string, fn: string): string {
  return `import { ${fn} } from ${JSON.stringify(file)}; process.exitCode = await ${fn}(process.argv.slice(1));`;
}

describe('gatewise passwd', () => {
  it('prints a scrypt hash for a password from stdin or an argument', async () => {
    const r = await run(process.execPath, ['--input-type=module', '-e', script(passwdJs, 'passwdCommand')], { input: 's3cret\n' });
    assert.equal(r.code, 0, r.stderr);
    const hash = r.stdout.trim();
    assert.match(hash, /^scrypt\$/);
    assert.equal(await verifyPassword('s3cret', hash), true);
    const a = await run(process.execPath, ['--input-type=module', '-e', script(passwdJs, 'passwdCommand'), '--', 'other']);
    assert.equal(await verifyPassword('other', a.stdout.trim()), true);
    const empty = await run(process.execPath, ['--input-type=module', '-e', script(passwdJs, 'passwdCommand')], { input: '' });
    assert.equal(empty.code, 2);
  });
});

describe('gatewise forward', () => {
  it('starts from flags, proxies, and stops cleanly on SIGTERM', async () => {
    const origin = await startOrigin();
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', script(forwardJs, 'forwardCommand'), '--', '--listen', '127.0.0.1:0', '--socks', '127.0.0.1:0', '--user', 'carol:pw:with:colons', '--allow-private', '--connect-ports', '443,8000-9000', '--no-access-log'],
      { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    try {
      const ports = await new Promise<{ http: number; socks: number }>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no listen line: ${stderr}`)), 10_000);
        child.stderr.on('data', () => {
          const h = /http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
          const s = /socks5:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
          if (h && s) {
            clearTimeout(t);
            resolve({ http: Number(h[1]), socks: Number(s[1]) });
          }
        });
      });
      const viaHttp = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-x', `http://carol:pw:with:colons@127.0.0.1:${ports.http}`, `http://127.0.0.1:${origin.port}/`]);
      assert.equal(viaHttp.stdout, '200');
      const viaSocks = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--socks5', `127.0.0.1:${ports.socks}`, '--proxy-user', 'carol:pw:with:colons', `http://127.0.0.1:${origin.port}/`]);
      assert.equal(viaSocks.stdout, '200');
      const noAuth = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-x', `http://127.0.0.1:${ports.http}`, `http://127.0.0.1:${origin.port}/`]);
      assert.equal(noAuth.stdout, '407');
      child.kill('SIGTERM');
      const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
      assert.equal(code, 0, stderr);
    } finally {
      clearTimeout(killer);
      child.kill('SIGKILL');
      await origin.close();
    }
  });

  it('refuses to start without users unless --no-auth', async () => {
    const r = await run(process.execPath, ['--input-type=module', '-e', script(forwardJs, 'forwardCommand'), '--', '--listen', '127.0.0.1:0']);
    assert.equal(r.code, 2);
    // The flags are named, not the config keys they set (this pinned "auth.users" before).
    assert.match(r.stderr, /--user NAME:PASSWORD .*--no-auth/);
    assert.doesNotMatch(r.stderr, /auth\.(users|required)/);
  });
});

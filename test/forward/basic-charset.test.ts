import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseBasicCredentials } from '../../src/forward/proxy-auth.js';
import { hashPassword } from '../../src/tenants/index.js';
import { run, startOrigin, startTestProxy, type Origin, type TestProxy } from './helpers.js';

// Issue 14, finding 11: Basic credentials were decoded only as UTF-8, so clients that send
// Latin-1 (Python requests, curl given Latin-1 bytes) got 407 for a password with "ö".
const NAME = 'carol';
const PASSWORD = 'pässwörd';

function header(bytes: Buffer): string {
  return 'Basic ' + bytes.toString('base64');
}

describe('Basic proxy credentials in UTF-8 and Latin-1 (RFC 7617 charset)', () => {
  it('decodes valid UTF-8 as UTF-8 and anything else as Latin-1', () => {
    assert.deepEqual(parseBasicCredentials(header(Buffer.from(`${NAME}:${PASSWORD}`, 'utf8'))), { user: NAME, password: PASSWORD });
    assert.deepEqual(parseBasicCredentials(header(Buffer.from(`${NAME}:${PASSWORD}`, 'latin1'))), { user: NAME, password: PASSWORD });
    assert.deepEqual(parseBasicCredentials(header(Buffer.from('zoë:ñ', 'latin1'))), { user: 'zoë', password: 'ñ' });
    assert.deepEqual(parseBasicCredentials(header(Buffer.from('a:b', 'ascii'))), { user: 'a', password: 'b' });
  });

  describe('through a running proxy', () => {
    let proxy: TestProxy;
    let origin: Origin;
    let dir: string;
    before(async () => {
      origin = await startOrigin();
      proxy = await startTestProxy({ auth: { users: [{ name: NAME, password: await hashPassword(PASSWORD) }] } });
      dir = await mkdtemp(join(tmpdir(), 'gatewise-charset-'));
    });
    after(async () => {
      await proxy.close();
      await origin.close();
      await rm(dir, { recursive: true, force: true });
    });

    it('Python sends Latin-1 and is let in', async () => {
      // requests encodes proxy credentials as Latin-1 (requests.auth._basic_auth_str); without
      // requests, the same header is built by hand.
      const py = [
        'import sys, base64',
        'target, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]',
        'try:',
        '    import requests',
        '    from urllib.parse import quote',
        '    proxy = "http://%s:%s@127.0.0.1:%d" % (quote(user), quote(password), port)',
        '    r = requests.get(target, proxies={"http": proxy}, timeout=10)',
        '    print(r.status_code)',
        'except ImportError:',
        '    import http.client',
        '    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)',
        '    auth = base64.b64encode((user + ":" + password).encode("latin-1")).decode()',
        '    c.request("GET", target, headers={"Proxy-Authorization": "Basic " + auth})',
        '    print(c.getresponse().status)',
      ].join('\n');
      const r = await run('python3', ['-c', py, `http://127.0.0.1:${origin.port}/py`, String(proxy.port), NAME, PASSWORD]);
      assert.equal(r.stdout.trim(), '200', r.stderr);
    });

    it('curl with UTF-8 credentials is let in', async () => {
      const r = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--noproxy', '', '-x', `http://127.0.0.1:${proxy.port}`, '-U', `${NAME}:${PASSWORD}`, `http://127.0.0.1:${origin.port}/curl-utf8`]);
      assert.equal(r.stdout.trim(), '200', r.stderr);
    });

    it('curl with Latin-1 credentials is let in', async () => {
      // Arguments reach curl as UTF-8; a config file carries the Latin-1 bytes as they are.
      const file = join(dir, 'latin1.curlrc');
      await writeFile(file, Buffer.concat([Buffer.from('proxy-user = "'), Buffer.from(`${NAME}:${PASSWORD}`, 'latin1'), Buffer.from('"\n')]));
      const r = await run('curl', ['-q', '-K', file, '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--noproxy', '', '-x', `http://127.0.0.1:${proxy.port}`, `http://127.0.0.1:${origin.port}/curl-latin1`]);
      assert.equal(r.stdout.trim(), '200', r.stderr);
    });
  });
});

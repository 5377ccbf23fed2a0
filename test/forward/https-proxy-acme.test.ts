import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProxyAgent, request } from 'undici';
import { ConfigError } from '../../src/index.js';
import { NO_PEBBLE, TestPebble, pebbleBinaries } from '../helpers/pebble.js';
import { freePort } from '../helpers/redis.js';
import { acmeEvents, expectObtained, pebbleAcme, writePebbleRoot, type AcmeEvents } from '../helpers/acme.js';
import { PASSWORD, USER, run, startOrigin, startTestProxy, type Origin, type TestProxy } from './helpers.js';

/**
 * The HTTPS proxy listener with a certificate obtained by ACME: Pebble validates by TLS-ALPN-01
 * at the proxy's own port (names resolved to 127.0.0.1 by Pebble's test DNS server), then curl
 * `--proxy https://` and undici's ProxyAgent reach an origin through it, trusting Pebble's root.
 */

const skip = pebbleBinaries() === undefined ? NO_PEBBLE : false;
const PROXY_HOST = 'proxy.gatewise.test';

describe('HTTPS proxy listener with an ACME certificate (TLS-ALPN-01)', { skip }, () => {
  let pebble: TestPebble;
  let p: TestProxy;
  let origin: Origin;
  let work: string;
  let events: AcmeEvents;
  let port: number;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'gatewise-proxy-acme-'));
    port = await freePort();
    pebble = (await TestPebble.start({ httpPort: await freePort(), tlsPort: port }))!;
    origin = await startOrigin();
    events = acmeEvents();
    p = await startTestProxy({
      listeners: [{ address: '127.0.0.1', port, tls: { acme: pebbleAcme(pebble, { storage: join(work, 'acme'), hosts: [PROXY_HOST], challenges: ['tls-alpn-01'], backoff: { initial: '500ms', max: '5s' } }) } }],
    } as never);
  });

  after(async () => {
    events?.stop();
    await p?.close();
    await origin?.close();
    await pebble?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('the certificate is obtained at the proxy port; curl --proxy https:// and undici ProxyAgent go through it', async () => {
    const e = await expectObtained(events, pebble);
    assert.deepEqual(e.names, [PROXY_HOST]);
    const rootFile = join(work, 'root.pem');
    const root = await writePebbleRoot(pebble, rootFile);
    // curl checks the proxy's certificate against Pebble's root and the name proxy.gatewise.test.
    const r = await run('curl', ['-sS', '--resolve', `${PROXY_HOST}:${port}:127.0.0.1`, '--proxy', `https://${USER}:${PASSWORD}@${PROXY_HOST}:${port}`, '--proxy-cacert', rootFile, `http://127.0.0.1:${origin.port}/via-acme-proxy`], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { url: string }).url, '/via-acme-proxy');
    const agent = new ProxyAgent({ uri: `https://127.0.0.1:${port}`, token: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`, proxyTls: { ca: root, servername: PROXY_HOST } });
    try {
      const res = await request(`http://127.0.0.1:${origin.port}/via-undici`, { dispatcher: agent });
      assert.equal(res.statusCode, 200);
      assert.equal((JSON.parse(await res.body.text()) as { url: string }).url, '/via-undici');
    } finally {
      await agent.close();
    }
  });
});

describe('forward listener tls.acme: configuration errors', () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['no hosts', { challenges: ['tls-alpn-01'] }, /tls\.acme\.hosts: acme on a forward proxy listener needs hosts/],
    ['http-01', { hosts: [PROXY_HOST] }, /tls\.acme\.challenges: a forward proxy listener is validated by tls-alpn-01 only/],
  ];
  for (const [name, acme, want] of cases) {
    it(name, async () => {
      const err = await startTestProxy({ listeners: [{ address: '127.0.0.1', port: 0, tls: { acme: { directory: 'https://127.0.0.1:1/dir', acceptTerms: true, storage: '/tmp/gatewise-never', ...acme } } }] } as never).then(
        async (px) => {
          await px.close();
          return undefined;
        },
        (e: unknown) => e,
      );
      assert.ok(err instanceof ConfigError, String(err));
      assert.ok(err.problems.some((x) => want.test(`${x.path}: ${x.message}`)), JSON.stringify(err.problems));
    });
  }
});

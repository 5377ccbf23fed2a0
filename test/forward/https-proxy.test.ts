import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { connect } from 'node:net';
import { ProxyAgent, request } from 'undici';
import { ConfigError } from '../../src/index.js';
import { certDir, type CertDir, type IssuedCert, type TestCa } from '../helpers/tls-certs.js';
import { PASSWORD, USER, accessLines, run, startOrigin, startTestProxy, waitFor as waitUntil, type Origin, type TestProxy } from './helpers.js';

/** The first value `find` returns, waited for (bounded); fails when none comes. */
async function waitFor<T>(find: () => T | undefined): Promise<T> {
  let v: T | undefined;
  await waitUntil(() => (v = find()) !== undefined);
  assert.ok(v !== undefined, 'the access-log line did not come');
  return v;
}
import { startTlsOrigin, type TlsOrigin } from './tls-origin.js';

/** The forward proxy as an HTTPS proxy: TLS to the proxy, then HTTP proxy requests and CONNECT inside it. */

let dir: CertDir;
let ca: TestCa;
let proxyCert: IssuedCert;
let alice: IssuedCert;
let expired: IssuedCert;

before(() => {
  dir = certDir();
  ca = dir.ca('Proxy CA');
  proxyCert = ca.issue('proxy.test', { dns: ['proxy.test', 'localhost'], ip: ['127.0.0.1'] });
  alice = ca.issue('alice', { client: true });
  expired = ca.issue('old', { client: true, expired: true });
});
after(() => dir.remove());

describe('HTTPS proxy listener', () => {
  let p: TestProxy;
  let origin: Origin;
  let tlsOrigin: TlsOrigin;
  let proxyUrl: string;

  before(async () => {
    origin = await startOrigin();
    tlsOrigin = await startTlsOrigin();
    p = await startTestProxy({ listeners: [{ address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: proxyCert.certFile, key: proxyCert.keyFile }] } }] });
    proxyUrl = `https://${USER}:${PASSWORD}@127.0.0.1:${p.port}`;
  });
  after(async () => {
    await p.close();
    await origin.close();
    await tlsOrigin.close();
  });

  it('curl --proxy https:// carries a plain HTTP request (absolute form inside TLS)', async () => {
    const r = await run('curl', ['-sS', '--proxy', proxyUrl, '--proxy-cacert', ca.certFile, `http://127.0.0.1:${origin.port}/via-https-proxy`]);
    assert.equal(r.code, 0, r.stderr);
    const body = JSON.parse(r.stdout) as { url: string; headers: Record<string, string> };
    assert.equal(body.url, '/via-https-proxy');
    assert.equal(body.headers['proxy-authorization'], undefined, 'credentials are not forwarded');
    const line = await waitFor(() => accessLines(p.lines).find((l) => l.protocol === 'http' && l.status === 200));
    assert.equal(line.user, USER);
  });

  it('curl --proxy https:// opens a CONNECT tunnel inside TLS (TLS in TLS)', async () => {
    const r = await run('curl', ['-sS', '-k', '--proxy', proxyUrl, '--proxy-cacert', ca.certFile, `https://127.0.0.1:${tlsOrigin.port}/secure`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'tls ok /secure');
    await waitFor(() => accessLines(p.lines).find((l) => l.protocol === 'connect' && l.user === USER));
  });

  it('undici ProxyAgent with proxyTls: HTTP request and CONNECT', async () => {
    const agent = new ProxyAgent({ uri: `https://127.0.0.1:${p.port}`, token: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`, proxyTls: { ca: ca.cert, servername: 'proxy.test' }, requestTls: { rejectUnauthorized: false } });
    try {
      const tunneled = await request(`https://127.0.0.1:${tlsOrigin.port}/undici`, { dispatcher: agent });
      assert.equal(tunneled.statusCode, 200);
      assert.equal(await tunneled.body.text(), 'tls ok /undici');
      const plain = await request(`http://127.0.0.1:${origin.port}/undici-plain`, { dispatcher: agent });
      assert.equal(plain.statusCode, 200);
      assert.equal((JSON.parse(await plain.body.text()) as { url: string }).url, '/undici-plain');
    } finally {
      await agent.close();
    }
  });

  it('wrong credentials inside TLS get 407 with Proxy-Status, over TLS', async () => {
    const r = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--proxy', `https://${USER}:wrong@127.0.0.1:${p.port}`, '--proxy-cacert', ca.certFile, `http://127.0.0.1:${origin.port}/x`]);
    assert.equal(r.stdout, '407');
  });

  it('plain HTTP to the HTTPS proxy port is told so in HTTP (400), never served in clear', async () => {
    const r = await run('curl', ['-sS', '-i', '--proxy', `http://${USER}:${PASSWORD}@127.0.0.1:${p.port}`, `http://127.0.0.1:${origin.port}/clear`]);
    assert.match(r.stdout, /^HTTP\/1\.1 400 /);
    const line = await waitFor(() => accessLines(p.lines).find((l) => l.status === 400));
    assert.match(String(line.detail), /speaks TLS/);
    assert.equal(origin.requests.some((x) => x.url === '/clear'), false);
  });

  it('a client that does not trust the proxy certificate is named: tls_alert_received', async () => {
    const r = await run('curl', ['-sS', '--proxy', proxyUrl, `http://127.0.0.1:${origin.port}/untrusted`]);
    assert.notEqual(r.code, 0);
    const line = await waitFor(() => accessLines(p.lines).find((l) => l.error === 'tls_alert_received'));
    assert.equal(line.reason, 'alert_unknown_ca');
    assert.equal(line.phase, 'tls');
  });
});

describe('HTTPS proxy listener with client certificates', () => {
  let p: TestProxy;
  let origin: Origin;

  before(async () => {
    origin = await startOrigin();
    p = await startTestProxy({ listeners: [{ address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: proxyCert.certFile, key: proxyCert.keyFile }], clientAuth: { ca: ca.certFile } } }] });
  });
  after(async () => {
    await p.close();
    await origin.close();
  });

  it('a valid client certificate is served; an expired one is closed and logged tls_certificate_error client_certificate_expired', async () => {
    const ok = await run('curl', ['-sS', '--proxy', `https://${USER}:${PASSWORD}@127.0.0.1:${p.port}`, '--proxy-cacert', ca.certFile, '--proxy-cert', alice.certFile, '--proxy-key', alice.keyFile, `http://127.0.0.1:${origin.port}/mtls`]);
    assert.equal(ok.code, 0, ok.stderr);
    const bad = await run('curl', ['-sS', '--proxy', `https://${USER}:${PASSWORD}@127.0.0.1:${p.port}`, '--proxy-cacert', ca.certFile, '--proxy-cert', expired.certFile, '--proxy-key', expired.keyFile, `http://127.0.0.1:${origin.port}/mtls-old`]);
    assert.notEqual(bad.code, 0);
    assert.equal(origin.requests.some((x) => x.url === '/mtls-old'), false);
    const line = await waitFor(() => accessLines(p.lines).find((l) => l.reason === 'client_certificate_expired'));
    assert.equal(line.error, 'tls_certificate_error');
  });
});

describe('HTTPS proxy listener configuration', () => {
  it('a missing key file is a ConfigError naming the path', async () => {
    await assert.rejects(
      startTestProxy({ listeners: [{ address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: proxyCert.certFile, key: '/nonexistent/proxy.key' }] } }] }),
      (err: unknown) => err instanceof ConfigError && err.message.includes('/nonexistent/proxy.key') && err.message.includes('forward.listeners[0].tls.certificates[0]'),
    );
  });

  it('the raw handshake: a ClientHello after the sniff is completed by the proxy (first byte 0x16)', async () => {
    const p = await startTestProxy({ listeners: [{ address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: proxyCert.certFile, key: proxyCert.keyFile }] } }] });
    try {
      const proto = await new Promise<string | null>((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port: p.port, ca: ca.cert, servername: 'proxy.test' }, () => {
          resolve(s.getProtocol());
          s.destroy();
        });
        s.on('error', reject);
      });
      assert.equal(proto, 'TLSv1.3');
      // A connection that sends nothing is still closed at the handshake time.
      await new Promise<void>((resolve) => {
        const c = connect(p.port, '127.0.0.1');
        c.on('error', () => {});
        c.on('close', () => resolve());
        c.resume();
      });
    } finally {
      await p.close();
    }
  });
});

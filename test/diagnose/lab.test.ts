import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LAB_FAULTS, faultUrl, startLab, startLabDnsServer, type Lab, type LabDnsServer, type LabFault } from '../../src/lab/index.js';
import { labGatewayConfig } from '../../src/cli/demo.js';
import { diagnose, type Diagnosis } from '../../src/diagnose/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startTestProxy, tableResolver } from '../forward/helpers.js';

/**
 * Every lab fault, diagnosed twice: straight at the lab (the phase and type this machine
 * sees), and through a gateway in front of it (the hop that answered is the gateway, and its
 * Proxy-Status names the type). Loopback only.
 */

let lab: Lab;
let gw: TestGateway;
let dns: LabDnsServer;
let dir: string;

const PREFIX: Record<string, string> = { http: '', refused: '/_refused', 'tls-self-signed': '/_tls-self', 'tls-ca': '/_tls-ca' };
const FAST = { tries: 2, spacingMs: 20, timeoutMs: 700 };

before(async () => {
  lab = await startLab({ tls: true });
  dir = mkdtempSync(join(tmpdir(), 'gatewise-diagnose-'));
  const caFile = join(dir, 'lab-ca.pem');
  writeFileSync(caFile, lab.caPem!);
  const routed = labGatewayConfig(lab, caFile, { connect: '1s', response: '700ms', idle: '700ms' });
  // Answer a refused endpoint at once instead of holding the request for it to come back.
  for (const c of Object.values(routed.clusters!)) (c as { waitForEndpoint?: unknown }).waitForEndpoint = { timeout: '0s' };
  gw = await startTestGateway({ name: 'edge-gw', ...routed });
  dns = await startLabDnsServer({ records: { 'lab.test': ['127.0.0.1'], 'proxy.test': ['127.0.0.1'] }, servfail: ['broken.test'], timeout: ['silent.test'] });
});

after(async () => {
  await gw?.close();
  await lab?.close();
  await dns?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The phase this machine sees a direct fault in. */
function directPhase(f: LabFault): string {
  if (f.listener === 'refused') return 'connect';
  if (f.listener === 'tls-self-signed') return 'tls';
  if (f.midBody) return 'body';
  if (f.expectType === 'connection_terminated') return 'send';
  return 'headers';
}

function summary(d: Diagnosis): string {
  const v = d.verdict;
  return JSON.stringify({ side: v.side, hop: v.hop, phase: v.phase, type: v.errorType, status: v.status, exit: v.exitCode, words: v.words });
}

const testable = LAB_FAULTS.filter((f) => f.path !== '/ws' && f.path !== '/upload');

describe('diagnose straight at the lab: every fault in the right phase, with the right type and side', () => {
  for (const f of testable) {
    test(`${f.listener ?? 'http'} ${f.path}`, async () => {
      const url = faultUrl(lab, f)!;
      const d = await diagnose({ url, ...FAST, ...(f.listener === 'tls-ca' ? { ca: lab.caPem! } : {}) });
      const v = d.verdict;
      if (f.expectType !== undefined) {
        const types = [f.expectType, ...(f.alsoAccept ?? [])];
        assert.ok(types.includes(v.errorType!), `type: ${summary(d)}`);
        assert.equal(v.phase, directPhase(f), summary(d));
        assert.equal(v.side, 'upstream', summary(d));
        assert.equal(v.exitCode, 1, summary(d));
        assert.equal(d.experiments.refresh.pattern, 'persistent');
      } else if (f.expectStatus >= 500) {
        assert.equal(v.side, 'upstream', summary(d));
        assert.equal(v.status, f.expectStatus, summary(d));
        assert.match(v.hop, /origin server/, summary(d));
        assert.equal(v.exitCode, 1);
      } else {
        assert.equal(v.healthy, true, summary(d));
        assert.equal(v.exitCode, 0, summary(d));
        assert.equal(d.main.http?.complete, true);
      }
      if (f.listener === 'tls-self-signed' || f.listener === 'tls-ca') {
        assert.ok(d.main.tls, 'TLS phase reported');
        assert.match(d.main.tls!.protocol ?? '', /^TLSv1\.[23]$/);
        assert.ok(d.main.tls!.names.includes('DNS:localhost'));
        assert.equal(d.main.tls!.trusted, f.listener === 'tls-ca');
        if (f.listener === 'tls-self-signed') assert.equal(d.main.tls!.trustError, 'DEPTH_ZERO_SELF_SIGNED_CERT');
      }
    });
  }
});

describe('diagnose through a gateway in front of the lab: the gateway is the hop, its Proxy-Status the type', () => {
  for (const f of testable) {
    test(`${f.listener ?? 'http'} ${f.path}`, async () => {
      const d = await diagnose({ url: gw.url + PREFIX[f.listener ?? 'http'] + f.path, ...FAST, timeoutMs: 1500 });
      const v = d.verdict;
      if (f.expectType !== undefined && !f.midBody) {
        assert.equal(v.errorType, f.expectType, summary(d));
        assert.match(v.hop, /^edge-gw \(Gatewise, gateway\)$/, summary(d));
        assert.equal(v.side, 'upstream', summary(d));
        assert.equal(v.confidence, 'high');
        assert.equal(v.status, f.expectStatus);
        assert.equal(v.exitCode, 1);
        assert.equal(d.hop?.madeBy?.id, 'gatewise');
        assert.deepEqual(d.hop?.proxyStatus?.map((m) => m.name), ['edge-gw']);
        // The next hop the gateway named is quoted, with its request id.
        assert.ok(v.contact.quote.some((q) => q.startsWith('x-request-id: ')), summary(d));
      } else if (f.midBody) {
        // The gateway passed the head on, then had to cut the body: the cut is all the client sees.
        assert.equal(v.phase, 'body', summary(d));
        assert.ok([f.expectType, ...(f.alsoAccept ?? []), 'http_response_incomplete'].includes(v.errorType!), summary(d));
        assert.equal(v.side, 'upstream');
        assert.equal(v.exitCode, 1);
      } else if (f.expectStatus >= 500) {
        // Passed on: the origin wrote it, the gateway says so with received-status.
        assert.match(v.hop, /origin server/, summary(d));
        assert.equal(v.side, 'upstream');
        assert.match(v.words, /edge-gw says it passed it on/);
      } else {
        assert.equal(v.healthy, true, summary(d));
        assert.equal(v.exitCode, 0);
      }
    });
  }
});

test('DNS: a name that does not exist is NXDOMAIN on the site\'s side; SERVFAIL could not be told; each family reported; the resolver named', async () => {
  const servers = [`127.0.0.1:${dns.port}`];
  const nx = await diagnose({ url: `http://nowhere.test:${new URL(lab.url).port}/ok`, dnsServers: servers, ...FAST });
  assert.equal(nx.verdict.phase, 'dns');
  assert.equal(nx.verdict.errorType, 'dns_error');
  assert.equal(nx.dns.v4?.failure?.params?.rcode, 'NXDOMAIN');
  assert.equal(nx.verdict.side, 'upstream');
  assert.equal(nx.verdict.exitCode, 1);
  assert.match(nx.dns.resolver, new RegExp(`DNS at 127\\.0\\.0\\.1:${dns.port}`));
  const sf = await diagnose({ url: `http://broken.test:${new URL(lab.url).port}/ok`, dnsServers: servers, ...FAST });
  assert.equal(sf.verdict.errorType, 'dns_error');
  assert.equal(sf.verdict.exitCode, 3);
  const ok = await diagnose({ url: `http://lab.test:${new URL(lab.url).port}/ok`, dnsServers: servers, ...FAST });
  assert.deepEqual(ok.dns.addresses, [{ address: '127.0.0.1', family: 4 }]);
  assert.equal(ok.verdict.exitCode, 0, JSON.stringify(ok.verdict));
  const t = await diagnose({ url: `http://silent.test:${new URL(lab.url).port}/ok`, dnsServers: servers, tries: 1, spacingMs: 0, timeoutMs: 300 });
  assert.equal(t.verdict.errorType, 'dns_timeout');
  assert.equal(t.verdict.side, 'client-network');
  assert.equal(t.verdict.exitCode, 2);
});

// Generous waits here: the first password check of a proxy starts its scrypt worker thread.
test('--resolve skips the lookup; --proxy: direct refused but the proxy gets through → your network (exit 2)', async () => {
  const port = new URL(lab.url).port;
  const r = await diagnose({ url: `http://example.test:${port}/ok`, resolve: [`example.test:${port}:127.0.0.1`], ...FAST, timeoutMs: 5000 });
  assert.equal(r.dns.source, 'resolve-flag');
  assert.equal(r.verdict.exitCode, 0);
  // This machine's idea of site.test is wrong (127.0.0.2: nothing listens there); the proxy's is right.
  const proxy = await startTestProxy({ auth: { required: false } }, { resolver: tableResolver({ 'site.test': ['127.0.0.1'] }) });
  try {
    const d = await diagnose({ url: `http://site.test:${port}/ok`, resolve: [`site.test:${port}:127.0.0.2`], proxy: proxy.url, ...FAST, timeoutMs: 5000 });
    assert.equal(d.main.failure?.type, 'connection_refused');
    assert.equal(d.experiments.path.proxy?.outcome.healthy, true, JSON.stringify(d.experiments.path));
    assert.equal(d.verdict.side, 'client-network', JSON.stringify(d.verdict));
    assert.equal(d.verdict.exitCode, 2);
    // https:// through the proxy is a CONNECT tunnel, then TLS to the site inside it.
    const tunnelled = await startTestProxy({ auth: { required: false } }, { resolver: tableResolver({ localhost: ['127.0.0.1'] }) });
    try {
      const t = await diagnose({ url: `${lab.tlsCaUrl}/ok`, ca: lab.caPem!, proxy: tunnelled.url, ...FAST, timeoutMs: 5000 });
      assert.equal(t.experiments.path.proxy?.outcome.status, 200, JSON.stringify(t.experiments.path));
      assert.equal(t.verdict.exitCode, 0, JSON.stringify(t.verdict));
    } finally {
      await tunnelled.close();
    }
    // With credentials in the proxy URL, they are sent (the proxy requires them here).
    const authed = await startTestProxy({}, { resolver: tableResolver({ 'site.test': ['127.0.0.1'] }) });
    try {
      const a = await diagnose({ url: `http://site.test:${port}/ok`, resolve: [`site.test:${port}:127.0.0.2`], proxy: authed.authUrl, ...FAST, timeoutMs: 5000 });
      assert.equal(a.experiments.path.proxy?.outcome.status, 200);
      const no = await diagnose({ url: `http://site.test:${port}/ok`, resolve: [`site.test:${port}:127.0.0.2`], proxy: authed.url, ...FAST, timeoutMs: 5000 });
      assert.equal(no.experiments.path.proxy?.outcome.status, 407);
    } finally {
      await authed.close();
    }
  } finally {
    await proxy.close();
  }
});

test('bad input is refused before anything is sent, naming the flag', async () => {
  await assert.rejects(diagnose({ url: 'example.com/x' }), (e: Error & { flag?: string }) => e.name === 'DiagnoseInputError' && e.flag === 'URL' && /needs a scheme, e\.g\. http:\/\/example\.com\/x/.test(e.message));
  await assert.rejects(diagnose({ url: 'ftp://127.0.0.1/x' }), /the scheme ftp:\/\/ is not supported; use http:\/\/ or https:\/\//);
  await assert.rejects(diagnose({ url: 'http://127.0.0.1:99999/' }), /is not a valid URL/);
  await assert.rejects(diagnose({ url: lab.url, proxy: 'socks5://127.0.0.1:1080' }), (e: Error & { flag?: string }) => e.flag === '--proxy');
  await assert.rejects(
    diagnose({ url: lab.url, proxy: 'http://no-such-proxy.test:3128', dnsServers: [`127.0.0.1:${dns.port}`] }),
    (e: Error & { flag?: string }) => e.flag === '--proxy' && /does not resolve/.test(e.message),
  );
  await assert.rejects(diagnose({ url: lab.url, resolve: ['example.com:443'] }), (e: Error & { flag?: string }) => e.flag === '--resolve');
  await assert.rejects(diagnose({ url: lab.url, headers: ['no colon'] }), (e: Error & { flag?: string }) => e.flag === '-H');
  await assert.rejects(diagnose({ url: lab.url, method: 'GE T' }), (e: Error & { flag?: string }) => e.flag === '--method');
  await assert.rejects(diagnose({ url: lab.url, tries: 0 }), (e: Error & { flag?: string }) => e.flag === '--tries');
});

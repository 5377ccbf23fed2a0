import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startLab, startLabDnsServer, type Lab, type LabDnsServer } from '../../src/lab/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

/** DNS failures, against a DNS server this test runs on loopback (never the machine's resolver). */

let lab: Lab;
let dns: LabDnsServer;
let gw: TestGateway;

before(async () => {
  lab = await startLab();
  dns = await startLabDnsServer({ records: { 'good.gatewise.test': ['127.0.0.1'] }, servfail: ['broken.gatewise.test'], timeout: ['silent.gatewise.test'] });
  const port = lab.port;
  const cluster = (host: string) => ({ endpoints: [`http://${host}:${port}`], timeouts: { connect: '3s', response: '2s', idle: '2s' } });
  gw = await startTestGateway({
    dns: { servers: [`127.0.0.1:${dns.port}`], timeout: '300ms', tries: 1 },
    clusters: {
      good: cluster('good.gatewise.test'),
      missing: cluster('missing.gatewise.test'),
      broken: cluster('broken.gatewise.test'),
      silent: cluster('silent.gatewise.test'),
    },
    routes: ['good', 'missing', 'broken', 'silent'].map((c) => ({ match: { pathPrefix: `/${c}` }, cluster: c, stripPrefix: true })),
  });
});

after(async () => {
  await gw?.close();
  await dns?.close();
  await lab?.close();
});

async function probe(path: string) {
  const res = await request(gw.url + path, { headers: { accept: 'application/json' } });
  const body = (await res.body.json()) as Record<string, unknown>;
  return { status: res.statusCode, ps: String(res.headers['proxy-status'] ?? ''), body, rid: String(res.headers['x-request-id']) };
}

test('a name the DNS server resolves is proxied', async () => {
  const r = await probe('/good/echo');
  assert.equal(r.status, 200);
});

test('NXDOMAIN → 502 dns_error with rcode', async () => {
  const r = await probe('/missing/ok');
  assert.equal(r.status, 502);
  assert.match(r.ps, /error=dns_error/);
  assert.match(r.ps, /rcode="NXDOMAIN"/);
  assert.equal(r.body.phase, 'dns');
  const line = await gw.logFor(r.rid);
  assert.equal(line.error, 'dns_error');
  assert.equal(line.phase, 'dns');
});

test('SERVFAIL → 502 dns_error with rcode SERVFAIL', async () => {
  const r = await probe('/broken/ok');
  assert.equal(r.status, 502);
  assert.match(r.ps, /error=dns_error/);
  assert.match(r.ps, /rcode="SERVFAIL"/);
});

test('no DNS answer → 504 dns_timeout', async () => {
  const r = await probe('/silent/ok');
  assert.equal(r.status, 504);
  assert.match(r.ps, /error=dns_timeout/);
  assert.equal((await gw.logFor(r.rid)).error, 'dns_timeout');
  assert.equal(await gw.requestsCounted({ error: 'dns_timeout' }), 1);
});

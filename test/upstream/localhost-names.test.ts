import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { loadLabCerts, startLab, startLabDnsServer, type Lab, type LabDnsServer } from '../../src/lab/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { localhostSpellings } from '../helpers/localhost-spellings.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * RFC 6761 §6.3: a cluster endpoint named `localhost` or a name under `.localhost` is loopback,
 * answered without asking DNS (as browsers and curl do). The gateway sent such names to its
 * configured `dns.servers`, which may answer NXDOMAIN (the lab's DNS here answers NXDOMAIN to
 * every name: the request was a 502 dns_error) or a foreign address. Seeded over spellings
 * (case, trailing dot, subdomains), cleartext and TLS (the lab's CA-signed leaf names localhost).
 */

const rand = seededRandom();
const NAMES = localhostSpellings(rand, 4);

let lab: Lab;
let dns: LabDnsServer;
let caDir: string;
let g: TestGateway;

before(async () => {
  lab = await startLab({ tls: true });
  dns = await startLabDnsServer({ records: {} });
  caDir = mkdtempSync(join(tmpdir(), 'gatewise-localhost-'));
  writeFileSync(join(caDir, 'lab-ca.pem'), loadLabCerts().ca);
  const noWait = { waitForEndpoint: { timeout: '0s' }, outlierDetection: { enabled: false } };
  const clusters: Record<string, unknown> = { tls: { endpoints: [`https://localhost:${new URL(lab.tlsCaUrl!).port}`], ...noWait, tls: { ca: join(caDir, 'lab-ca.pem') } } };
  NAMES.forEach((n, i) => (clusters[`c${i}`] = { endpoints: [`http://${n}:${lab.port}`], ...noWait }));
  g = await startTestGateway({
    dns: { servers: [`127.0.0.1:${dns.port}`], timeout: '2s', tries: 1 },
    clusters,
    routes: Object.keys(clusters).map((c) => ({ match: { pathPrefix: `/${c}` }, cluster: c, rewritePrefix: '/ok', retry: { tries: 1 } })),
  } as never);
});

after(async () => {
  await g?.close();
  await dns?.close();
  await lab?.close();
  if (caDir) rmSync(caDir, { recursive: true, force: true });
});

async function get(path: string): Promise<{ status: number; proxyStatus: string; body: string }> {
  const r = await request(`${g.url.replace(/\/$/, '')}${path}`, { headers: { accept: 'application/problem+json' } });
  return { status: r.statusCode, proxyStatus: String(r.headers['proxy-status'] ?? ''), body: await r.body.text() };
}

describe(`localhost endpoints on the reverse face, resolved without DNS (seed ${rand.seed}: ${NAMES.join(' ')})`, () => {
  NAMES.forEach((name, i) => {
    test(`an endpoint named ${JSON.stringify(name)} reaches the lab on loopback, not the DNS server's NXDOMAIN`, async () => {
      await withSeed(rand, async () => {
        const a = await get(`/c${i}`);
        assert.equal(a.status, 200, `${name}: ${a.status} ${a.proxyStatus} ${a.body.slice(0, 300)}`);
      });
    });
  });

  test('a TLS endpoint named localhost (the certificate checked against the name) reaches the lab', async () => {
    const a = await get('/tls');
    assert.equal(a.status, 200, `${a.status} ${a.proxyStatus} ${a.body.slice(0, 300)}`);
  });
});

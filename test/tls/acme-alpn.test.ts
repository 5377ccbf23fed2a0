import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { startLab, type Lab } from '../../src/lab/index.js';
import { parseClientHello } from '../../src/tls/acme/alpn.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { NO_PEBBLE, TestPebble, pebbleBinaries } from '../helpers/pebble.js';
import { freePort } from '../helpers/redis.js';
import { acmeEvents, curl, curlH2, expectObtained, pebbleAcme, writePebbleRoot, type AcmeEvents } from '../helpers/acme.js';
import { certDir, type CertDir } from '../helpers/tls-certs.js';
import { seededRun } from '../helpers/seeded.js';

/**
 * TLS-ALPN-01 (RFC 8737): the validation's handshake (ALPN acme-tls/1 only) is answered on the
 * TLS listener itself with the challenge certificate; every other handshake on the same
 * listener is untouched. Against Pebble (validating at the gateway's TLS port, names resolved
 * to 127.0.0.1 by its test DNS server), and with challenges set by hand on a real listener.
 */

const skipPebble = pebbleBinaries() === undefined ? NO_PEBBLE : false;
const HOSTS = ['alpn.gatewise.test', 'www.alpn.gatewise.test'];

let lab: Lab;
let work: string;

before(async () => {
  lab = await startLab();
  work = mkdtempSync(join(tmpdir(), 'gatewise-acme-alpn-'));
});

after(async () => {
  await lab?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A handshake to the listener: the certificate's subjectAltName and the ALPN protocol chosen. */
function handshake(port: number, servername: string, alpn: string[], opts: { maxVersion?: 'TLSv1.2' | 'TLSv1.3'; ca?: string } = {}): Promise<{ san: string; alpn: string | false | null; raw: Buffer }> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername, ALPNProtocols: alpn, rejectUnauthorized: opts.ca !== undefined, ...(opts.ca !== undefined ? { ca: opts.ca } : {}), ...(opts.maxVersion !== undefined ? { maxVersion: opts.maxVersion } : {}) }, () => {
      const c = s.getPeerCertificate();
      resolve({ san: String(c.subjectaltname), alpn: s.alpnProtocol, raw: c.raw });
      s.destroy();
    });
    s.once('error', reject);
  });
}

describe('TLS-ALPN-01 against Pebble: a TLS listener alone (no plain listener) obtains its certificate', { skip: skipPebble }, () => {
  let pebble: TestPebble;
  let gw: TestGateway;
  let events: AcmeEvents;
  let httpsPort: number;

  before(async () => {
    httpsPort = await freePort();
    // HTTP-01 validations would go to a closed port: only tls-alpn-01 can succeed.
    pebble = (await TestPebble.start({ httpPort: await freePort(), tlsPort: httpsPort }))!;
    events = acmeEvents();
    gw = await startTestGateway({
      listeners: [
        {
          address: '127.0.0.1',
          port: httpsPort,
          tls: { acme: pebbleAcme(pebble, { storage: join(work, 'pebble'), challenges: ['tls-alpn-01'], backoff: { initial: '500ms', max: '5s' } }) },
          http2: {},
        },
      ] as never,
      clusters: { lab: { endpoints: [lab.url] } },
      routes: [{ match: { host: HOSTS }, cluster: 'lab' }],
    });
  });

  after(async () => {
    events?.stop();
    await gw?.close();
    await pebble?.close();
  });

  test('obtained through tls-alpn-01 on the listener itself; curl --http2 then gets 200 through it', async () => {
    const e = await expectObtained(events, pebble);
    assert.deepEqual(e.names, HOSTS);
    // Validated by tls-alpn-01 (HTTP-01 would go to a closed port): every name's validation handshakes were answered here.
    assert.ok(gw.gw.ctx.acme!.alpnAnswered >= HOSTS.length, `validation handshakes answered: ${gw.gw.ctx.acme!.alpnAnswered}`);
    assert.equal(gw.gw.ctx.acme!.alpnPending, 0, 'no challenge left pending');
    const rootFile = join(work, 'pebble-root.pem');
    await writePebbleRoot(pebble, rootFile);
    for (const host of HOSTS) {
      const r = await curlH2(host, httpsPort, rootFile, '/bytes?n=10');
      assert.equal(r.stdout, '2 200', `${host}: ${r.stderr}`);
    }
  });
});

describe('TLS-ALPN-01 on a listener: only the validation handshake gets the challenge certificate', () => {
  let gw: TestGateway;
  let certs: CertDir;
  let port: number;
  let challengeCert: { cert: string; key: string };

  before(async () => {
    certs = certDir('gatewise-alpn-');
    const ca = certs.ca('Site CA');
    const site = ca.issue('site', { dns: ['site.gatewise.test'] });
    const chal = ca.issue('challenge', { dns: ['site.gatewise.test'] });
    challengeCert = { cert: chal.cert, key: chal.key };
    port = await freePort();
    gw = await startTestGateway({
      listeners: [
        {
          address: '127.0.0.1',
          port,
          // A directory where nothing listens, tried once an hour: the challenges are set by the test.
          tls: { certificates: [{ cert: site.certFile, key: site.keyFile }], acme: { directory: `https://127.0.0.1:${await freePort()}/dir`, acceptTerms: true, storage: join(work, 'by-hand'), hosts: ['site.gatewise.test'], challenges: ['tls-alpn-01'], backoff: { initial: '1h', max: '1h' } } },
          http2: {},
        },
      ] as never,
      clusters: { lab: { endpoints: [lab.url] } },
      routes: [{ cluster: 'lab' }],
    });
  });

  after(async () => {
    await gw?.close();
    certs?.remove();
  });

  for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
    test(`${maxVersion}: acme-tls/1 alone gets the challenge certificate and acme-tls/1; h2, http/1.1 and a mixed offer get the site's`, async () => {
      const acme = gw.gw.ctx.acme!;
      const site = await handshake(port, 'site.gatewise.test', ['h2', 'http/1.1'], { maxVersion });
      acme.setAlpn('site.gatewise.test', challengeCert.cert, challengeCert.key);
      try {
        const v = await handshake(port, 'site.gatewise.test', ['acme-tls/1'], { maxVersion });
        assert.equal(v.alpn, 'acme-tls/1');
        assert.notDeepEqual(v.raw, site.raw, 'the challenge certificate, not the site certificate');
        assert.deepEqual(v.raw, new (await import('node:crypto')).X509Certificate(challengeCert.cert).raw);
        // Ordinary clients during the validation: untouched.
        for (const alpn of [['h2', 'http/1.1'], ['http/1.1'], [], ['acme-tls/1', 'h2']]) {
          const o = await handshake(port, 'site.gatewise.test', alpn, { maxVersion });
          assert.deepEqual(o.raw, site.raw, `ALPN ${JSON.stringify(alpn)} gets the site certificate`);
        }
        // acme-tls/1 for a name with no pending challenge: the listener's normal handshake (no challenge certificate, no acme-tls/1).
        const other = await handshake(port, 'other.gatewise.test', ['acme-tls/1'], { maxVersion }).catch((err: Error) => err);
        if (!(other instanceof Error)) {
          assert.deepEqual(other.raw, site.raw);
          assert.notEqual(other.alpn, 'acme-tls/1');
        }
        // A request over HTTP/1.1 on the same listener still reaches the lab.
        const r = await curl(['--silent', '--insecure', '--http1.1', '--resolve', `site.gatewise.test:${port}:127.0.0.1`, '--output', '/dev/null', '--write-out', '%{http_code}', `https://site.gatewise.test:${port}/bytes?n=5`]);
        assert.equal(r.stdout, '200', r.stderr);
      } finally {
        acme.deleteAlpn('site.gatewise.test');
      }
      const afterwards = await handshake(port, 'site.gatewise.test', ['h2'], { maxVersion });
      assert.deepEqual(afterwards.raw, site.raw);
      assert.equal(acme.alpnPending, 0);
    });
  }
});

describe('parseClientHello', () => {
  /** Real ClientHellos, captured from Node's client through a raw server. */
  async function capture(opts: { servername?: string; alpn?: string[] }): Promise<Buffer> {
    const { createServer } = await import('node:net');
    return new Promise((resolve, reject) => {
      const srv = createServer((c) => {
        let buf = Buffer.alloc(0);
        c.on('data', (b: Buffer) => {
          buf = Buffer.concat([buf, b]);
          if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
            resolve(buf.subarray(0, 5 + buf.readUInt16BE(3)));
            c.destroy();
            srv.close();
          }
        });
      });
      srv.listen(0, '127.0.0.1', () => {
        const port = (srv.address() as { port: number }).port;
        const s = tlsConnect({ host: '127.0.0.1', port, ...(opts.servername !== undefined ? { servername: opts.servername } : {}), ALPNProtocols: opts.alpn ?? [], rejectUnauthorized: false });
        s.on('error', () => {});
      });
      srv.on('error', reject);
    });
  }

  test('server name and ALPN list of real ClientHellos; every prefix is "more"; seeded corruptions never throw', async () => {
    const hellos = [
      { opts: { servername: 'Shop.Gatewise.test', alpn: ['acme-tls/1'] }, want: { servername: 'shop.gatewise.test', alpn: ['acme-tls/1'] } },
      { opts: { servername: 'a.test', alpn: ['h2', 'http/1.1'] }, want: { servername: 'a.test', alpn: ['h2', 'http/1.1'] } },
      { opts: { alpn: [] }, want: { servername: undefined, alpn: [] } },
    ];
    const bufs: Buffer[] = [];
    for (const h of hellos) {
      const buf = await capture(h.opts);
      bufs.push(buf);
      assert.deepEqual(parseClientHello(buf), h.want);
      for (let n = 0; n < buf.length; n += 7) assert.equal(parseClientHello(buf.subarray(0, n)), 'more', `prefix of ${n} bytes`);
    }
    assert.equal(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n')), undefined, 'not TLS');
    await seededRun('parseClientHello corruptions', (rand) => {
      for (let i = 0; i < 2000; i++) {
        const b = Buffer.from(bufs[Math.floor(rand() * bufs.length)]!);
        const flips = 1 + Math.floor(rand() * 8);
        for (let f = 0; f < flips; f++) b[5 + Math.floor(rand() * (b.length - 5))] = Math.floor(rand() * 256);
        const r = parseClientHello(b.subarray(0, Math.floor(rand() * (b.length + 1))));
        assert.ok(r === undefined || r === 'more' || (Array.isArray(r.alpn) && (r.servername === undefined || typeof r.servername === 'string')));
      }
    });
  });
});

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { certDir, hasOpenssl, type CertDir } from '../helpers/tls-certs.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { runSeed, seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * An https endpoint is named after itself, never after the client's Host. undici takes a
 * request's TLS server name from its Host header and reconnects when it changes; through a
 * gateway that is the client's Host, so the endpoint's certificate was checked against the
 * name the client asked for (a 502 tls_certificate_error when the Host is preserved), and
 * every change of Host closed the keep-alive connection. Found by the metrics movement test.
 */

interface Upstream {
  url(host: string): string;
  /** The SNI of each TLS connection the upstream accepted (false: none sent). */
  readonly names: Array<string | false>;
  close(): Promise<void>;
}

async function httpsUpstream(cert: { cert: string; key: string }): Promise<Upstream> {
  const names: Array<string | false> = [];
  const server: Server = createServer({ cert: cert.cert, key: cert.key }, (req, res) => res.end(`${req.headers.host ?? ''}\n`));
  server.on('secureConnection', (s: TLSSocket) => names.push((s as TLSSocket & { servername: string | false }).servername));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    url: (host) => `https://${host}:${port}`,
    names,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const skip = hasOpenssl() ? false : 'openssl is not installed';

describe('the TLS name of an https endpoint', { skip }, () => {
  let dir: CertDir;
  let caFile: string;
  const ups: Upstream[] = [];
  const gws: TestGateway[] = [];
  let byName: Upstream;
  let byConfig: Upstream;
  let byIp: Upstream;
  before(async () => {
    dir = certDir('gatewise-sni-');
    const ca = dir.ca('sni-ca');
    caFile = ca.certFile;
    byName = await httpsUpstream(ca.issue('localhost', { dns: ['localhost'] }));
    byConfig = await httpsUpstream(ca.issue('upstream.test', { dns: ['upstream.test'] }));
    byIp = await httpsUpstream(ca.issue('ip', { ip: ['127.0.0.1'] }));
    ups.push(byName, byConfig, byIp);
  });
  after(async () => {
    for (const g of gws) await g.close();
    for (const u of ups) await u.close();
    dir.remove();
  });

  test('is the endpoint\'s host name, its configured servername, or none for an IP, whatever Host the clients send; one connection serves every Host (seeded Host headers)', async () => {
    const rand = seededRandom(runSeed());
    await withSeed(rand, async () => {
      const gw = await startTestGateway({
        clusters: {
          named: { endpoints: [byName.url('localhost')], tls: { ca: caFile } },
          configured: { endpoints: [byConfig.url('127.0.0.1')], tls: { ca: caFile, servername: 'upstream.test' } },
          ip: { endpoints: [byIp.url('127.0.0.1')], tls: { ca: caFile } },
        },
        routes: [
          { match: { pathPrefix: '/named' }, cluster: 'named' },
          { match: { pathPrefix: '/configured' }, cluster: 'configured' },
          { match: { pathPrefix: '/ip' }, cluster: 'ip' },
        ],
      });
      gws.push(gw);
      const client = new Agent({ connections: 1 });
      try {
        const letters = 'abcdefghijklmnopqrstuvwxyz0123456789';
        const hosts = Array.from({ length: 4 + rand.int(8) }, () => `${Array.from({ length: 1 + rand.int(12) }, () => rand.pick([...letters])).join('')}.${rand.pick(['test', 'example', 'internal'])}${rand.next() < 0.3 ? `:${1 + rand.int(65535)}` : ''}`);
        for (const host of hosts) {
          for (const route of ['/named', '/configured', '/ip']) {
            const res = await request(`${gw.url}${route}`, { dispatcher: client, headers: { host } });
            const body = await res.body.text();
            assert.equal(res.statusCode, 200, `${route} with Host ${host}: ${res.statusCode} ${String(res.headers['proxy-status'] ?? '')}`);
            assert.equal(body, `${host}\n`, 'the Host goes upstream as the client sent it');
          }
        }
        assert.deepEqual(byName.names, ['localhost'], 'one connection, named after the endpoint');
        assert.deepEqual(byConfig.names, ['upstream.test'], 'one connection, with the configured name');
        assert.deepEqual(byIp.names, [false], 'one connection, no SNI for an IP literal');
      } finally {
        await client.close();
      }
    });
  });
});

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import * as pkijs from 'pkijs';
import { OCSP_CHANNEL, type OcspEvent } from '../../src/tls/ocsp.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/redis.js';
import { certDir, hasOpenssl, type CertDir, type IssuedCert, type TestCa } from '../helpers/tls-certs.js';

/**
 * Issue 22: OCSP stapling where Node allows. A real OCSP responder (`openssl ocsp` on a
 * loopback port, answering from the test CA's database) and real TLS clients that ask for
 * the status: the listener staples a good status it fetched and checked; after the CA
 * revokes the certificate, a refresh stops stapling it and says so; a certificate naming
 * no responder is served without a staple.
 */

/** The OCSP status a TLS handshake stapled (undefined: none): 'good', 'revoked', … */
async function stapled(port: number, ca: string): Promise<{ status: string | undefined; raw: Buffer | undefined }> {
  return new Promise((resolve, reject) => {
    let raw: Buffer | undefined;
    // requestOCSP is a tls.connect option Node's type definitions leave out.
    const s = tlsConnect({ host: '127.0.0.1', port, servername: 'a.test', ca, requestOCSP: true } as ConnectionOptions);
    // Node reports an empty or absent response when the server stapled nothing.
    s.on('OCSPResponse', (r: Buffer | null | undefined) => (raw = r && r.length > 0 ? r : undefined));
    s.once('secureConnect', () => {
      s.end();
      if (raw === undefined) return resolve({ status: undefined, raw });
      const ocsp = pkijs.OCSPResponse.fromBER(new Uint8Array(raw));
      const basic = pkijs.BasicOCSPResponse.fromBER(new Uint8Array(ocsp.responseBytes!.response.valueBlock.valueHexView));
      const st = basic.tbsResponseData.responses[0]!.certStatus as { idBlock: { tagNumber: number } };
      resolve({ status: ['good', 'revoked', 'unknown'][st.idBlock.tagNumber], raw });
    });
    s.once('error', reject);
  });
}

describe('OCSP stapling', { skip: hasOpenssl() ? false : 'openssl is not installed' }, () => {
  let dir: CertDir;
  let ca: TestCa;
  let responder: Server;
  let served = 0;
  let leaf: IssuedCert;
  let chainFile: string;
  let plainFile: string;
  let tg: TestGateway;
  let url: string;
  const events: OcspEvent[] = [];
  const onEvent = (m: unknown): void => void events.push(m as OcspEvent);

  /**
   * The responder: an HTTP server on loopback that answers each OCSP request with
   * `openssl ocsp` in one-shot mode from the CA's database (read afresh each time, so a
   * revocation shows at once). openssl's own server mode binds every interface.
   */
  async function startResponder(port: number): Promise<void> {
    responder = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const n = ++served;
        const reqFile = join(dir.dir, `req-${n}.der`);
        const respFile = join(dir.dir, `resp-${n}.der`);
        writeFileSync(reqFile, Buffer.concat(chunks));
        execFile('openssl', ['ocsp', '-index', ca.index, '-rsigner', ca.certFile, '-rkey', ca.keyFile, '-CA', ca.certFile, '-ndays', '1', '-reqin', reqFile, '-respout', respFile], (err) => {
          if (err) return res.writeHead(500).end(String(err));
          res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(readFileSync(respFile));
        });
      });
    });
    responder.listen(port, '127.0.0.1');
    await once(responder, 'listening');
  }

  before(async () => {
    subscribe(OCSP_CHANNEL, onEvent);
    dir = certDir('gatewise-ocsp-');
    ca = dir.ca('ocsp-ca');
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    leaf = ca.issue('a.test', { dns: ['a.test'], ocsp: url });
    // The file holds the issuer after the leaf, as a CA's "fullchain" does.
    chainFile = join(dir.dir, 'fullchain.pem');
    writeFileSync(chainFile, leaf.cert + ca.cert);
    const plain = ca.issue('b.test', { dns: ['b.test'] });
    plainFile = plain.certFile;
    await startResponder(port);
    tg = await startTestGateway({
      listeners: [{ address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: chainFile, key: leaf.keyFile }, { cert: plain.certFile, key: plain.keyFile }] } }],
      clusters: { up: { endpoints: ['http://127.0.0.1:1'] } },
      routes: [{ cluster: 'up' }],
    });
  });
  after(async () => {
    unsubscribe(OCSP_CHANNEL, onEvent);
    await tg?.close();
    await new Promise<void>((r) => (responder ? responder.close(() => r()) : r()));
    dir?.remove();
  });

  async function waitEvent(pred: (e: OcspEvent) => boolean, what: string): Promise<OcspEvent> {
    for (const end = Date.now() + 10_000; ; ) {
      const e = events.find(pred);
      if (e !== undefined) return e;
      if (Date.now() > end) throw new Error(`no OCSP event ${what}; have ${JSON.stringify(events)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  test('a good status is fetched, checked and stapled to handshakes that ask; a certificate naming no responder is served without', async () => {
    const e = await waitEvent((x) => x.event === 'stapled' && x.cert === chainFile, 'stapled');
    assert.equal(e.url, url);
    assert.ok(Date.parse(e.nextUpdate!) > Date.now(), 'valid for a while');
    const got = await stapled(tg.port, ca.cert);
    assert.equal(got.status, 'good');
    const none = await waitEvent((x) => x.cert === plainFile, 'unavailable for the plain certificate');
    assert.deepEqual([none.event, none.detail], ['unavailable', 'the certificate names no OCSP responder']);
  });

  test('revoked by its CA: the next refresh stops stapling it and says why', async () => {
    ca.revoke(leaf);
    await Promise.all(tg.gw.certificateStores().map((s) => s.refreshOcsp()));
    const e = await waitEvent((x) => x.event === 'revoked', 'revoked');
    assert.equal(e.detail, 'the certificate is revoked');
    assert.equal((await stapled(tg.port, ca.cert)).status, undefined, 'a revoked status is not stapled');
  });
});

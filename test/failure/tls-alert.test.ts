import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:tls';
import { request } from 'undici';
import { parseProxyStatus } from '../../src/failure/index.js';
import { loadLabCerts } from '../../src/lab/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

/**
 * RFC 9209 §2.3.11: tls_alert_received carries `alert-id` (the alert's number) and
 * `alert-message` (its name). The gateway sent only alert-message. A real alert on loopback: a
 * TLS 1.2 upstream that requires a client certificate answers the gateway's empty one with
 * handshake_failure (40).
 */

let server: Server;
/** Reads the ClientHello's first bytes, then resets: a TLS upstream that dies mid-handshake. */
let resetter: TcpServer;
let dir: string;
let g: TestGateway;

before(async () => {
  const certs = loadLabCerts();
  server = createServer({ key: certs.caSignedKey, cert: certs.caSignedCert, requestCert: true, rejectUnauthorized: true, ca: certs.ca, maxVersion: 'TLSv1.2' });
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  resetter = createTcpServer((c) => {
    c.on('error', () => {});
    c.once('data', () => c.resetAndDestroy());
  });
  resetter.listen(0, '127.0.0.1');
  await once(resetter, 'listening');
  dir = mkdtempSync(join(tmpdir(), 'gatewise-tls-alert-'));
  writeFileSync(join(dir, 'ca.pem'), certs.ca);
  g = await startTestGateway({
    clusters: {
      reset: { endpoints: [`https://127.0.0.1:${(resetter.address() as AddressInfo).port}`], waitForEndpoint: { timeout: '0s' }, outlierDetection: { enabled: false }, tls: { ca: join(dir, 'ca.pem'), servername: 'localhost' } },
      alert: { endpoints: [`https://127.0.0.1:${(server.address() as AddressInfo).port}`], waitForEndpoint: { timeout: '0s' }, outlierDetection: { enabled: false }, tls: { ca: join(dir, 'ca.pem'), servername: 'localhost' } } },
    routes: [
      { match: { pathPrefix: '/reset' }, cluster: 'reset', retry: { tries: 1 } },
      { match: { pathPrefix: '/' }, cluster: 'alert', retry: { tries: 1 } },
    ],
  } as never);
});

after(async () => {
  await g?.close();
  server?.close();
  resetter?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('an upstream TLS alert names both its number and its name in Proxy-Status, the problem and the log', async () => {
  const r = await request(`${g.url.replace(/\/$/, '')}/x`, { headers: { accept: 'application/problem+json' } });
  const body = await r.body.text();
  const ps = String(r.headers['proxy-status']);
  const ours = parseProxyStatus(ps).at(-1)!;
  assert.equal(ours.params.error, 'tls_alert_received', `${r.statusCode} ${ps} ${body}`);
  assert.equal(ours.params['alert-message'], 'handshake_failure', ps);
  assert.equal(ours.params['alert-id'], 40, ps);
  const line = await g.logFor(String(r.headers['x-request-id']));
  assert.equal(line.error, 'tls_alert_received', JSON.stringify(line));
});

// RFC 9209: tls_protocol_error is a TLS error (a record or message the peer got wrong);
// connection_terminated is the connection closed before any of the response came. A reset in
// the middle of the handshake is the transport closing, with no TLS fault seen: the latter,
// which also says the request was never sent (safe to retry elsewhere). Probed: it held.
test('an upstream that resets mid-handshake is connection_terminated (not tls_protocol_error), in Proxy-Status, the problem and the log', async () => {
  const r = await request(`${g.url.replace(/\/$/, '')}/reset`, { headers: { accept: 'application/problem+json' } });
  const body = await r.body.text();
  const ps = String(r.headers['proxy-status']);
  assert.equal(parseProxyStatus(ps).at(-1)!.params.error, 'connection_terminated', `${r.statusCode} ${ps} ${body}`);
  assert.equal(r.statusCode, 502);
  const p = JSON.parse(body) as Record<string, unknown>;
  assert.equal(p.errorType, 'connection_terminated', body);
  const line = await g.logFor(String(r.headers['x-request-id']));
  assert.equal(line.error, 'connection_terminated', JSON.stringify(line));
  assert.equal(line.phase, p.phase, JSON.stringify(line));
});

import assert from 'node:assert/strict';
import { connect, type ClientHttp2Session } from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { startTestGateway } from '../helpers/gateway.js';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRun } from '../helpers/seeded.js';
import { certDir, type CertDir, type IssuedCert, type TestCa } from '../helpers/tls-certs.js';

/**
 * Adversarial review, session 30 (critical): a connection admitted while its listener held more
 * than half of maxConnections gets a shorter time for its first request (server.ts #admit).
 * When that connection had gone to HTTP/2 and opened no stream in that time, the gateway wrote
 * an HTTP/1.1 408 into the socket under the live HTTP/2 session: on a TLS listener Node's
 * HTTP/2 binding failed an assertion and the process aborted (SIGABRT); on h2c the client got
 * HTTP/1.1 bytes inside its frame stream. Now such a session is closed with GOAWAY NO_ERROR.
 * A seeded family of caps (4–8 connections) and idle HTTP/2 connections past half of the cap,
 * on a TLS listener and on h2c: every idle connection ends with GOAWAY (code 0) and no
 * protocol error, the gateway lives, and a request on a new connection is answered.
 */

let upstream: ScriptedUpstream;
let dir: CertDir;
let ca: TestCa;
let cert: IssuedCert;

before(async () => {
  upstream = await startScriptedUpstream((_req, res) => res.end('ok'));
  dir = certDir('gatewise-h2-pressure-');
  ca = dir.ca('H2 Pressure CA');
  cert = ca.issue('gw.test', { dns: ['gw.test'], ip: ['127.0.0.1'] });
});

after(async () => {
  await upstream.close();
  dir.remove();
});

/** How an idle HTTP/2 client connection ended: the GOAWAY code it got, and any session error. */
function watch(session: ClientHttp2Session): Promise<{ goaway: number | undefined; error: string | undefined }> {
  let goaway: number | undefined;
  let error: string | undefined;
  session.on('goaway', (code: number) => (goaway = code));
  session.on('error', (e: Error) => (error = `${(e as NodeJS.ErrnoException).code ?? ''} ${e.message}`));
  return new Promise((resolve) => session.once('close', () => resolve({ goaway, error })));
}

describe('an HTTP/2 connection past its first-request time under connection pressure', () => {
  for (const kind of ['tls', 'h2c'] as const) {
    test(`${kind}: closed with GOAWAY, never answered in HTTP/1.1; the gateway lives`, { timeout: 60_000 }, async () => {
      await seededRun(`h2 pressure deadline, ${kind}`, async (rand) => {
        for (let round = 0; round < 2; round++) {
          const cap = 4 + Math.floor(rand() * 5);
          const idle = Math.floor(cap / 2) + 1 + Math.floor(rand() * (cap - Math.floor(cap / 2) - 1));
          const listener =
            kind === 'tls'
              ? { address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: cert.certFile, key: cert.keyFile }] }, http2: {} }
              : { address: '127.0.0.1', port: 0, http2: { h2c: true } };
          const g = await startTestGateway({
            listeners: [{ ...listener, maxConnections: cap, maxConnectionsPerSource: 0, requestHeaderTimeout: '1s', handshakeFloor: '200ms' }],
            clusters: { up: { endpoints: [`http://127.0.0.1:${upstream.port}`], outlierDetection: { enabled: false } } },
            routes: [{ cluster: 'up' }],
          });
          const origin = `${kind === 'tls' ? 'https' : 'http'}://127.0.0.1:${g.port}`;
          const opts = kind === 'tls' ? { ca: ca.cert, servername: 'gw.test' } : {};
          const where = `cap ${cap}, ${idle} idle HTTP/2 connections, round ${round}`;
          try {
            const sessions: ClientHttp2Session[] = [];
            const ends: Array<Promise<{ goaway: number | undefined; error: string | undefined }>> = [];
            for (let i = 0; i < idle; i++) {
              const s = connect(origin, opts);
              ends.push(watch(s));
              sessions.push(s);
              await new Promise<void>((resolve, reject) => {
                s.once('connect', () => resolve());
                s.once('error', reject);
              });
            }
            // The connections past half of the cap got a shorter first-request time (at most 1 s here).
            const results = await Promise.all(ends.slice(Math.floor(cap / 2)));
            for (const r of results) {
              assert.equal(r.error, undefined, `an idle connection ended with a protocol error: ${where}`);
              assert.equal(r.goaway, 0, `an idle connection ended without GOAWAY NO_ERROR: ${where}`);
            }
            for (const s of sessions) s.destroy();
            // The gateway lives and serves.
            const fresh = connect(origin, opts);
            const answer = await new Promise<number>((resolve, reject) => {
              const req = fresh.request({ ':path': '/' });
              req.on('response', (h) => resolve(Number(h[':status'])));
              req.on('error', reject);
              req.end();
            });
            fresh.close();
            assert.equal(answer, 200, where);
          } finally {
            await g.close();
          }
        }
      });
    });
  }
});

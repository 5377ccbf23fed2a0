import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect as h2connect, createSecureServer, createServer as createH2cServer, type Http2SecureServer, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { h2request } from '../helpers/h2-request.js';
import { certDir, type CertDir, type TestCa } from '../helpers/tls-certs.js';

/**
 * Via over HTTP/2 (RFC 9110 §7.6.3: each hop names the protocol it *received* the message in).
 * Toward the upstream the request's Via names the client's protocol (`2` from an h2 client);
 * toward the client the response's Via names the protocol spoken with the upstream, taken
 * from each connection's ALPN result: `2` from an h2 (or h2c) cluster, `1.1` when an h2
 * cluster's upstream only agreed to HTTP/1.1, and from an HTTP/1.1 cluster.
 */

let dir: CertDir;
let ca: TestCa;
let h2Up: Http2SecureServer;
let h2cUp: Http2Server;
let h1Up: HttpsServer;
let gw: TestGateway;
let identity: string;

/** Answers with the request's Via (and the protocol it came in) in a JSON body. */
function answerH2(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
  stream.respond({ ':status': 200, 'content-type': 'application/json' });
  stream.end(JSON.stringify({ via: headers.via ?? null, protocol: '2' }));
}

function port(s: { address(): unknown }): number {
  return (s.address() as AddressInfo).port;
}

before(async () => {
  dir = certDir();
  ca = dir.ca('Via CA');
  const leaf = ca.issue('localhost', { dns: ['localhost'], ip: ['127.0.0.1'] });
  h2Up = createSecureServer({ cert: leaf.cert, key: leaf.key, allowHTTP1: false });
  h2Up.on('stream', answerH2);
  h2cUp = createH2cServer();
  h2cUp.on('stream', answerH2);
  // TLS that offers no h2 by ALPN: an h2 cluster's connection falls back to HTTP/1.1.
  h1Up = createHttpsServer({ cert: leaf.cert, key: leaf.key }, (req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ via: req.headers.via ?? null, protocol: req.httpVersion }));
  });
  for (const s of [h2Up, h2cUp, h1Up]) {
    s.listen(0, '127.0.0.1');
    await once(s, 'listening');
  }
  const caFile = ca.certFile;
  gw = await startTestGateway({
    listeners: [{ address: '127.0.0.1', port: 0, http2: { h2c: true } }],
    clusters: {
      h2: { endpoints: [`https://127.0.0.1:${port(h2Up)}`], protocol: 'h2', tls: { ca: caFile, servername: 'localhost' } },
      h2c: { endpoints: [`http://127.0.0.1:${port(h2cUp)}`], protocol: 'h2c' },
      fallback: { endpoints: [`https://127.0.0.1:${port(h1Up)}`], protocol: 'h2', tls: { ca: caFile, servername: 'localhost' } },
      http1: { endpoints: [`https://127.0.0.1:${port(h1Up)}`], tls: { ca: caFile, servername: 'localhost' } },
    },
    routes: ['h2', 'h2c', 'fallback', 'http1'].map((c) => ({ match: { pathPrefix: `/${c}/` }, cluster: c, stripPrefix: true })),
  });
  identity = gw.gw.ctx.identity;
});

after(async () => {
  await gw?.close();
  for (const s of [h2Up, h2cUp, h1Up]) s?.close();
  dir?.remove();
});

interface Seen {
  /** The response's Via, as the client got it. */
  via: string | undefined;
  /** The request's Via, as the upstream got it, and the protocol it came in. */
  upstream: { via: string | null; protocol: string };
}

async function viaHttp1(path: string): Promise<Seen> {
  const r = await request(gw.url + path);
  const upstream = (await r.body.json()) as Seen['upstream'];
  assert.equal(r.statusCode, 200);
  return { via: r.headers.via as string | undefined, upstream };
}

async function viaH2(path: string): Promise<Seen> {
  const s = h2connect(gw.url);
  s.on('error', () => {});
  try {
    const r = await h2request(s, path);
    assert.equal(r.status, 200, r.body);
    return { via: r.headers.via as string | undefined, upstream: JSON.parse(r.body) as Seen['upstream'] };
  } finally {
    s.close();
  }
}

describe('Via names the protocol each hop received', () => {
  const cases: Array<[cluster: string, upstreamProtocol: string, responseVia: string]> = [
    ['h2', '2', '2'],
    ['h2c', '2', '2'],
    ['fallback', '1.1', '1.1'],
    ['http1', '1.1', '1.1'],
  ];
  for (const [cluster, upstreamProtocol, responseVersion] of cases) {
    for (const client of ['HTTP/1.1', 'h2'] as const) {
      test(`${client} client, ${cluster} cluster: the upstream sees Via ${client === 'h2' ? '2' : '1.1'}; the client sees Via ${responseVersion}`, async () => {
        const seen = client === 'h2' ? await viaH2(`/${cluster}/x`) : await viaHttp1(`/${cluster}/x`);
        assert.equal(seen.upstream.protocol, upstreamProtocol, 'the protocol spoken with the upstream');
        assert.equal(seen.upstream.via, `${client === 'h2' ? '2' : '1.1'} ${identity}`, 'the request Via names the protocol received from the client');
        assert.equal(seen.via, `${responseVersion} ${identity}`, 'the response Via names the protocol received from the upstream');
      });
    }
  }
});

describe('HTTP/2 upstream multiplexing', () => {
  test('concurrent requests to an h2 cluster share one upstream connection (counted by the upstream), each answered', { timeout: 60_000 }, async () => {
    let sessions = 0;
    let open = 0;
    let most = 0;
    const leaf = ca.issue('localhost', { dns: ['localhost'], ip: ['127.0.0.1'] });
    const server = createSecureServer({ cert: leaf.cert, key: leaf.key, allowHTTP1: false });
    server.on('session', () => sessions++);
    // Each answer waits until all 8 are in flight at once (bounded: 20 s), so they overlap for certain.
    const waiting: Array<() => void> = [];
    server.on('stream', (stream, headers) => {
      if (headers[':path'] === '/warm') {
        stream.respond({ ':status': 200 });
        stream.end('warm');
        return;
      }
      open++;
      most = Math.max(most, open);
      const answer = (): void => {
        open--;
        if (!stream.destroyed) {
          stream.respond({ ':status': 200 });
          stream.end(String(headers[':path']));
        }
      };
      waiting.push(answer);
      if (waiting.length === 8) for (const w of waiting.splice(0)) w();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const g = await startTestGateway({
      clusters: { up: { endpoints: [`https://127.0.0.1:${port(server)}`], protocol: 'h2', tls: { ca: ca.certFile, servername: 'localhost' } } },
      routes: [{ cluster: 'up' }],
    });
    try {
      const warm = await request(g.url + '/warm');
      assert.equal(await warm.body.text(), 'warm');
      assert.equal(sessions, 1);
      const answers = await Promise.all(Array.from({ length: 8 }, async (_, i) => {
        const r = await request(`${g.url}/m${i}`, { headersTimeout: 20_000 });
        return { status: r.statusCode, body: await r.body.text() };
      }));
      for (const [i, a] of answers.entries()) assert.deepEqual(a, { status: 200, body: `/m${i}` });
      assert.equal(most, 8, 'the 8 requests were in flight at the upstream at once');
      assert.equal(sessions, 1, `upstream connections: ${sessions}`);
    } finally {
      await g.close();
      server.close();
    }
  });
});

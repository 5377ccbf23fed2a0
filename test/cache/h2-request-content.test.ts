import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type ClientHttp2Session } from 'node:http2';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { startTestGateway } from '../helpers/gateway.js';
import { certDir } from '../helpers/tls-certs.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * A GET with content neither reads nor fills the store (`detail=request-content`): its body goes
 * upstream and the key does not name it (RFC 9110 §9.3.1). The rule read the request's
 * Content-Length and Transfer-Encoding only, and an HTTP/2 request has a body without either
 * (DATA frames after a HEADERS frame that did not end the stream): an origin that reads GET
 * bodies had one client's body-made answer stored for every client of the URL.
 *
 * Seeded over the transport (h2c, HTTP/2 over TLS), the body's size and DATA frames, and whether
 * it carries a Content-Length; a GET that ends the stream with its HEADERS (or says
 * `content-length: 0`) is stored and answered from the store as before.
 */

interface Answer {
  status: number;
  cs: string;
  body: string;
}

/** One request; `body` is written in `parts` DATA frames after a HEADERS frame that does not end the stream, undefined: END_STREAM on HEADERS. */
function h2get(s: ClientHttp2Session, path: string, body: Buffer | undefined, parts: number, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = s.request({ ':method': 'GET', ':path': path, ...headers }, { endStream: body === undefined });
    let status = 0;
    let cs = '';
    let text = '';
    req.setEncoding('utf8');
    req.on('response', (h) => {
      status = Number(h[':status']);
      cs = String(h['cache-status']);
    });
    req.on('data', (c: string) => (text += c));
    req.on('end', () => resolve({ status, cs, body: text }));
    req.on('error', reject);
    if (body !== undefined) {
      const size = Math.ceil(body.length / parts);
      for (let i = 0; i < parts; i++) req.write(body.subarray(i * size, (i + 1) * size));
      req.end();
    }
  });
}

test('an HTTP/2 GET with DATA frames and no Content-Length bypasses the cache (request-content); one without content is stored as before (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const dir = certDir('gatewise-h2-content-');
  const ca = dir.ca('H2 Content CA');
  const leaf = ca.issue('localhost', { dns: ['localhost'], ip: ['127.0.0.1'] });
  // An origin that reads GET bodies and answers with what it read, storable for a minute.
  const up = await startScriptedUpstream((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = `echo:${Buffer.concat(chunks).length}`;
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': String(body.length) });
      res.end(body);
    });
  });
  let g;
  try {
    g = await startTestGateway({
      listeners: [
        { address: '127.0.0.1', port: 0, http2: { h2c: true } },
        { address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: leaf.certFile, key: leaf.keyFile }] }, http2: {} },
      ],
      clusters: { up: { endpoints: [`http://127.0.0.1:${up.port}`], outlierDetection: { enabled: false } } },
      routes: [{ cluster: 'up', retry: { tries: 1 }, cache: {} }],
    } as never);
  } catch (err) {
    await up.close();
    dir.remove();
    throw err;
  }
  const tlsPort = (g.gw.addresses() as Array<{ port: number }>)[1]!.port;
  const sessions = {
    h2c: connect(`http://127.0.0.1:${g.port}`),
    tls: connect(`https://127.0.0.1:${tlsPort}`, { ca: ca.cert, servername: 'localhost' }),
  };
  for (const s of Object.values(sessions)) s.on('error', () => {});
  try {
    await withSeed(rand, async () => {
      for (let i = 0; i < 16; i++) {
        const transport = rand.pick(['h2c', 'tls'] as const);
        const s = sessions[transport];
        const path = `/b${i}-${rand.seed}?t=${transport}`;
        const body = Buffer.alloc(1 + rand.int(20_000), 'q');
        const parts = 1 + rand.int(3);
        const withLength = rand.next() < 0.25;
        const what = `case ${i}: ${transport}, ${body.length} bytes in ${parts} DATA frames${withLength ? ', with content-length' : ''}`;
        const sent = await h2get(s, path, body, parts, withLength ? { 'content-length': String(body.length) } : {});
        assert.equal(sent.status, 200, what);
        assert.equal(sent.body, `echo:${body.length}`, `${what}: the body went upstream`);
        assert.match(sent.cs, /fwd=bypass/, `${what}: ${sent.cs}`);
        assert.match(sent.cs, /detail=request-content/, `${what}: ${sent.cs}`);
        assert.doesNotMatch(sent.cs, /stored/, `${what}: ${sent.cs}`);
        // A GET without content is not answered with the body-made answer, and is stored itself:
        // END_STREAM on its HEADERS (with or without content-length: 0), or content-length: 0 and
        // an empty DATA frame that ends the stream.
        const none = rand.pick(['headers', 'headers+length', 'empty-data+length'] as const);
        const plain = await h2get(s, path, none === 'empty-data+length' ? Buffer.alloc(0) : undefined, 1, none === 'headers' ? {} : { 'content-length': '0' });
        assert.equal(plain.body, 'echo:0', `${what}, then one without (${none}): a GET without content got the answer made for another's body (${plain.cs})`);
        assert.match(plain.cs, /stored/, `${what}, then one without (${none}): ${plain.cs}`);
        const again = await h2get(s, path, undefined, 0);
        assert.match(again.cs, /; hit/, `${what}: ${again.cs}`);
        assert.equal(again.body, 'echo:0', what);
      }
    });
  } finally {
    for (const s of Object.values(sessions)) s.destroy();
    await g.close();
    await up.close();
    dir.remove();
  }
});

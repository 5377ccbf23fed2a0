import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { connect as h2connect } from 'node:http2';
import { promisify } from 'node:util';
import { H2CClient, request } from 'undici';
import { startLab, type Lab } from '../../src/lab/index.js';
import { validateConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/config/load.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { h2request } from '../helpers/h2-request.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * h2c with prior knowledge on a plain listener (`http2.h2c`): HTTP/2 clients that start with
 * the connection preface and HTTP/1.1 clients share the listener; curl, node:http2 and
 * undici each get their protocol; a preface split anywhere is still recognised; a silent
 * connection gets the listener's 408.
 */

const run = promisify(execFile);
let lab: Lab;
let gw: TestGateway;

before(async () => {
  lab = await startLab();
  gw = await startTestGateway({
    listeners: [{ address: '127.0.0.1', port: 0, requestHeaderTimeout: '700ms', http2: { h2c: true, maxConcurrentStreams: 20 } }],
    clusters: { lab: { endpoints: [lab.url] } },
    routes: [{ cluster: 'lab' }],
  });
});

after(async () => {
  await gw?.close();
  await lab?.close();
});

describe('h2c with prior knowledge beside HTTP/1.1', () => {
  test('curl --http2-prior-knowledge gets HTTP/2, plain curl HTTP/1.1, on the same port', async () => {
    const h2 = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code} %{http_version}', '--http2-prior-knowledge', `${gw.url}/ok`]);
    assert.equal(h2.stdout, '200 2');
    const h1 = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code} %{http_version}', `${gw.url}/ok`]);
    assert.equal(h1.stdout, '200 1.1');
  });

  test('node:http2 over cleartext: proxied, recorded as HTTP/2, scheme http, the stream limit announced', async () => {
    const s = h2connect(gw.url);
    s.on('error', () => {});
    try {
      const r = await h2request(s, '/echo');
      assert.equal(r.status, 200);
      const echo = JSON.parse(r.body) as { headers: Record<string, string> };
      assert.equal(echo.headers['x-forwarded-proto'], 'http');
      assert.equal(Object.keys(echo.headers).some((k) => k.startsWith(':')), false);
      assert.equal(s.remoteSettings.maxConcurrentStreams, 20);
      const line = await gw.logFor(String(r.headers['x-request-id']));
      assert.equal(line.httpVersion, '2.0');
      assert.equal(line.status, 200);
    } finally {
      s.close();
    }
  });

  test('a request body without content-length (HTTP/2 has DATA frames, no chunking) reaches the upstream whole (finding: it was dropped)', async () => {
    const s = h2connect(gw.url);
    s.on('error', () => {});
    try {
      for (const size of [1, 5000, 70_000]) {
        const r = await h2request(s, '/echo', { method: 'POST', body: Buffer.alloc(size, 97) });
        assert.equal(r.status, 200);
        assert.equal((JSON.parse(r.body) as { bodyBytes: number }).bodyBytes, size, `body of ${size} bytes`);
      }
    } finally {
      s.close();
    }
  });

  test('undici H2CClient and undici HTTP/1.1 both served', async () => {
    const c = new H2CClient(gw.url);
    try {
      const r = await c.request({ path: '/ok', method: 'GET' });
      await r.body.text();
      assert.equal(r.statusCode, 200);
      const line = await gw.logFor(String(r.headers['x-request-id']));
      assert.equal(line.httpVersion, '2.0');
    } finally {
      await c.close();
    }
    const r1 = await request(`${gw.url}/ok`);
    await r1.body.text();
    assert.equal(r1.statusCode, 200);
    const line1 = await gw.logFor(String(r1.headers['x-request-id']));
    assert.equal(line1.httpVersion, '1.1');
  });

  test('a preface or a request line split anywhere is still told apart (seeded)', async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
      // SETTINGS (empty) after the preface: the gateway answers with its own SETTINGS frame (type 4).
      const h2bytes = Buffer.concat([preface, Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);
      const h1bytes = Buffer.from('GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 'latin1');
      for (let i = 0; i < 12; i++) {
        const h2 = rand.next() < 0.5;
        const bytes = h2 ? h2bytes : h1bytes;
        const cut = 1 + rand.int(bytes.length - 1);
        const got = await new Promise<Buffer>((resolve, reject) => {
          const sock = netConnect(gw.port, '127.0.0.1');
          let data = Buffer.alloc(0);
          sock.on('error', reject);
          sock.on('data', (c: Buffer) => {
            data = Buffer.concat([data, c]);
            if (data.length >= 9) {
              sock.destroy();
              resolve(data);
            }
          });
          sock.on('close', () => resolve(data));
          sock.write(bytes.subarray(0, cut));
          setTimeout(() => sock.write(bytes.subarray(cut)), 20);
        });
        if (h2) assert.equal(got[3], 4, `cut at ${cut}: HTTP/2 SETTINGS expected, got ${got.subarray(0, 16).toString('hex')}`);
        else assert.equal(got.subarray(0, 12).toString('latin1'), 'HTTP/1.1 200', `cut at ${cut}`);
      }
    });
  });

  test('a connection that sends nothing gets the listener\'s 408 after requestHeaderTimeout', async () => {
    const t0 = Date.now();
    const got = await new Promise<string>((resolve, reject) => {
      const sock = netConnect(gw.port, '127.0.0.1');
      let data = '';
      sock.setEncoding('latin1');
      sock.on('error', reject);
      sock.on('data', (c: string) => (data += c));
      sock.on('close', () => resolve(data));
      setTimeout(() => sock.destroy(), 4000).unref();
    });
    assert.match(got, /^HTTP\/1\.1 408 /);
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
  });

  test('a connection that leaves before its first byte is let go quietly: no answer written after its end (found: write after end, uncaught)', async () => {
    const uncaught: Error[] = [];
    const onUncaught = (e: Error): void => void uncaught.push(e);
    process.on('uncaughtExceptionMonitor', onUncaught);
    try {
      // Seeded over when the client leaves within the 700 ms first-head time, and how (FIN or RST).
      const rand = seededRandom();
      await withSeed(rand, async () => {
        const closes: Array<Promise<unknown>> = [];
        for (let i = 0; i < 6; i++) {
          const sock = netConnect(gw.port, '127.0.0.1');
          sock.on('error', () => {});
          sock.resume(); // read the 408 a FIN still gets, so the close comes
          const fin = rand.int(2) === 0;
          const after = rand.int(600);
          sock.once('connect', () => setTimeout(() => (fin ? sock.end() : sock.resetAndDestroy()), after));
          // Bounded: a connection the gateway never closes is closed here after 5 s.
          const bound = setTimeout(() => sock.destroy(), 5000);
          closes.push(once(sock, 'close').then(() => clearTimeout(bound)));
        }
        await Promise.all(closes);
        // Past every first-head deadline of those connections: the sniffer's deadline has fired or been cancelled.
        const probe = await request(`${gw.url}/ok`);
        await probe.body.text();
        await new Promise((r) => setTimeout(r, 900));
        assert.deepEqual(uncaught.map((e) => e.message), []);
      });
    } finally {
      process.off('uncaughtExceptionMonitor', onUncaught);
    }
  });
});

describe('config', () => {
  test('http2 on a plain listener needs h2c: true; h2c on a TLS listener is refused', () => {
    const base = { clusters: { a: { endpoints: ['http://127.0.0.1:1'] } }, routes: [{ cluster: 'a' }] };
    assert.throws(() => validateConfig({ ...base, listeners: [{ port: 0, http2: {} }] }), (e: unknown) => e instanceof ConfigError && /h2c: true/.test(e.message));
    assert.throws(
      () => validateConfig({ ...base, listeners: [{ port: 0, tls: { certificates: [{ cert: '/x', key: '/y' }] }, http2: { h2c: true } }] }),
      (e: unknown) => e instanceof ConfigError && /h2c is HTTP\/2 without TLS/.test(e.message),
    );
    const ok = validateConfig({ ...base, listeners: [{ port: 0, http2: { h2c: true } }] });
    assert.equal(ok.listeners[0]!.http2!.h2c, true);
  });

  test('cluster protocol: h2c needs http:// endpoints, h2 https://', () => {
    const l = { listeners: [{ port: 0 }], routes: [{ cluster: 'a' }] };
    assert.throws(() => validateConfig({ ...l, clusters: { a: { endpoints: ['https://127.0.0.1:1'], protocol: 'h2c' } } }), /must be http:\/\//);
    assert.throws(() => validateConfig({ ...l, clusters: { a: { endpoints: ['http://127.0.0.1:1'], protocol: 'h2' } } }), /must be https:\/\//);
    assert.equal(validateConfig({ ...l, clusters: { a: { endpoints: ['http://127.0.0.1:1'] } } }).clusters.a!.protocol, 'http1');
  });
});

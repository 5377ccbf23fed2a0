import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { request } from 'undici';
import { ConfigError, validateConfig } from '../../src/config/load.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { testUpstreamClient } from '../helpers/upstream-client.js';
import { between, seededRun } from '../helpers/seeded.js';
import { splitAt, startPiecewiseUpstream, type PieceAnswer, type PiecewiseUpstream, type PieceRequest } from '../helpers/piecewise-upstream.js';

/**
 * The reverse gateway with `client: native` (pool/native-client.ts) end to end: answers split
 * at random points pass through whole; the keep-alive race (an upstream closing idle
 * connections) is retried for idempotent requests on a fresh connection and never costs a
 * POST, which never goes on a reused connection; a client that does not read holds the
 * upstream back; an upgrade tunnels; native with HTTP/2 is a config error.
 */

let up: PiecewiseUpstream;
let gw: TestGateway;
let answerNext: (req: PieceRequest) => PieceAnswer = () => ({ pieces: ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'] });

before(async () => {
  up = await startPiecewiseUpstream((req) => answerNext(req));
  gw = await startTestGateway({
    clusters: { up: { endpoints: [up.url], client: 'native', outlierDetection: { enabled: false }, keepAlive: '30s' } },
    routes: [{ cluster: 'up', retry: { tries: 1 } }],
  });
});
after(async () => {
  await gw?.close();
  await up?.close();
});

function bodyOf(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = 65 + ((i * 13 + seed) % 26);
  return b;
}

describe('config', () => {
  test('client native with protocol h2 or h2c is refused with a message naming the field', () => {
    for (const [protocol, url] of [
      ['h2', 'https://127.0.0.1:8443'],
      ['h2c', 'http://127.0.0.1:8080'],
    ] as const) {
      assert.throws(
        () => validateConfig({ listeners: [{ port: 8080 }], clusters: { api: { endpoints: [url], protocol, client: 'native' } }, routes: [{ cluster: 'api' }] }),
        (e: ConfigError) => e instanceof ConfigError && e.problems.some((p) => p.path === 'clusters.api.client' && /HTTP\/1\.1 only/.test(p.message) && p.message.includes(protocol)),
        protocol,
      );
    }
    const ok = validateConfig({ listeners: [{ port: 8080 }], clusters: { api: { endpoints: ['http://127.0.0.1:8080'], client: 'native' } }, routes: [{ cluster: 'api' }] });
    assert.equal(ok.clusters.api!.client, 'native');
    // No client named: left to the gateway, which gives HTTP/1.1 clusters the native client and
    // HTTP/2 ones undici's (gateway/context.ts), so h2 and h2c validate without naming one.
    const dflt = validateConfig({ listeners: [{ port: 8080 }], clusters: { api: { endpoints: ['http://127.0.0.1:8080'] } }, routes: [{ cluster: 'api' }] });
    assert.equal(dflt.clusters.api!.client, undefined);
    for (const [protocol, url] of [['h2', 'https://127.0.0.1:8443'], ['h2c', 'http://127.0.0.1:8080']] as const) {
      assert.equal(validateConfig({ listeners: [{ port: 8080 }], clusters: { api: { endpoints: [url], protocol } }, routes: [{ cluster: 'api' }] }).clusters.api!.protocol, protocol);
    }
  });
});

describe('through the gateway', () => {
  // The suite's undici pass (GATEWISE_TEST_UPSTREAM_CLIENT) names a client on every cluster: then there is no default to see.
  test('an HTTP/1.1 cluster that names no client gets the native one (an answer only native refuses tells: chunked applied twice)', { skip: testUpstreamClient() !== undefined ? 'the run names a client on every cluster' : false, timeout: 30_000 }, async () => {
    const twice = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n';
    const dflt = await startTestGateway({ clusters: { d: { endpoints: [up.url] } }, routes: [{ cluster: 'd', retry: { tries: 1 } }] });
    const undici = await startTestGateway({ clusters: { u: { endpoints: [up.url], client: 'undici' } }, routes: [{ cluster: 'u', retry: { tries: 1 } }] });
    try {
      answerNext = () => ({ pieces: [twice] });
      const a = await request(`${dflt.url}/default`);
      await a.body.text();
      const b = await request(`${undici.url}/undici`);
      assert.equal(await b.body.text(), 'abc');
      assert.deepEqual([a.statusCode, String(a.headers['proxy-status'] ?? '').match(/error=(\w+)/)?.[1], b.statusCode], [502, 'http_response_transfer_coding', 200]);
    } finally {
      answerNext = () => ({ pieces: ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'] });
      await dflt.close();
      await undici.close();
    }
  });

  test('seeded: answers split at random points (Content-Length, chunked, close-delimited; 0..1 MiB) reach the client whole', { timeout: 120_000 }, async () => {
    await seededRun('gateway native framing', async (rand, seed) => {
      for (let i = 0; i < 30; i++) {
        const kind = (['length', 'chunked', 'close'] as const)[between(rand, 0, 2)]!;
        const size = rand() < 0.15 ? between(rand, 100_000, 1024 * 1024) : rand() < 0.2 ? 0 : between(rand, 1, 4000);
        const body = bodyOf(size, seed + i);
        let bytes: Buffer;
        if (kind === 'length') bytes = Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${size}\r\n\r\n`), body]);
        else if (kind === 'close') bytes = Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n'), body]);
        else {
          const parts: Buffer[] = [Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')];
          for (let at = 0; at < size; ) {
            const n = Math.min(size - at, between(rand, 1, 40_000));
            parts.push(Buffer.from(`${n.toString(16)}${rand() < 0.3 ? ';e=1' : ''}\r\n`), body.subarray(at, at + n), Buffer.from('\r\n'));
            at += n;
          }
          parts.push(Buffer.from('0\r\n\r\n'));
          bytes = Buffer.concat(parts);
        }
        const pieces = splitAt(bytes, between(rand, 0, 10), rand);
        answerNext = () => ({ pieces, close: kind === 'close' });
        const res = await request(`${gw.url}/case/${i}`);
        const got = Buffer.from(await res.body.arrayBuffer());
        const what = `case ${i} (${kind}, ${size} bytes, ${pieces.length} pieces)`;
        assert.equal(res.statusCode, 200, what);
        assert.equal(got.length, size, `${what}: length`);
        assert.ok(got.equals(body), `${what}: bytes`);
      }
    });
  });

  test('seeded keep-alive race: the upstream closes connections right after answering; GETs are retried fresh, POSTs only ever go on new connections', { timeout: 120_000 }, async () => {
    await seededRun('gateway native keep-alive race', async (rand) => {
      const first = up.requests.length;
      answerNext = (req) => ({ pieces: [`HTTP/1.1 200 OK\r\nContent-Length: ${req.method.length}\r\n\r\n${req.method}`], closeAfterMs: between(rand, 0, 4) });
      for (let i = 0; i < 80; i++) {
        const post = rand() < 0.35;
        const res = await request(`${gw.url}/race/${i}`, post ? { method: 'POST', body: `body ${i}` } : {});
        assert.equal(res.statusCode, 200, `request ${i} (${post ? 'POST' : 'GET'})`);
        assert.equal(await res.body.text(), post ? 'POST' : 'GET');
        if (rand() < 0.5) await new Promise((r) => setTimeout(r, between(rand, 0, 6)));
      }
      const mine = up.requests.slice(first);
      const posts = mine.filter((r) => r.method === 'POST');
      assert.ok(posts.length > 0);
      for (const p of posts) assert.equal(p.index, 0, `a POST went on a reused connection (connection ${p.conn}, request ${p.index})`);
      // Every GET the upstream saw was answered: a lost race never reached it, or was sent again.
      const races = gw.logs.filter((l) => l.type === 'access' && (l.attempts?.length ?? 0) > 1);
      for (const l of races) assert.equal(l.attempts![0]!.error, 'connection_terminated', JSON.stringify(l.attempts));
    });
  });

  test('a broken chunk after a valid one, all in one read: the client gets the 200 head, then a cut body (lab fault /bad-chunk finding)', { timeout: 20_000 }, async () => {
    answerNext = () => ({ pieces: ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nbroken\r\n'], close: true });
    const res = await request(`${gw.url}/bad-chunk`);
    assert.equal(res.statusCode, 200);
    await assert.rejects(res.body.text(), 'a broken body must never look complete');
    answerNext = () => ({ pieces: ['HTTP/1.1 200 OK\r\nTransfer-Encoding: x-custom\r\n\r\nuntil close'], close: true });
    const te = await request(`${gw.url}/te-custom`);
    assert.equal(te.statusCode, 200, 'a last coding other than chunked: the body runs until the close (http-cache-tests headers-store-Transfer-Encoding finding)');
    assert.equal(await te.body.text(), 'until close');
  });

  test('a client that does not read holds the upstream back; once it reads, the whole body arrives', { timeout: 60_000 }, async () => {
    const size = 24 * 1024 * 1024;
    const big = bodyOf(size, 5);
    answerNext = () => ({ pieces: [Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\n\r\n`), big] });
    const sock = connect(gw.port, '127.0.0.1');
    await once(sock, 'connect');
    sock.pause();
    sock.write('GET /big HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n');
    const deadline = Date.now() + 30_000;
    for (;;) {
      const s = up.sockets.find((x) => x.writableLength > 2 * 1024 * 1024);
      if (s !== undefined) break;
      if (Date.now() > deadline) throw new Error('the upstream never backed up while the client did not read');
      await new Promise((r) => setTimeout(r, 25));
    }
    let bytes = 0;
    sock.on('data', (d: Buffer) => {
      bytes += d.length;
    });
    sock.resume();
    await once(sock, 'end');
    sock.destroy();
    assert.ok(bytes > size && bytes < size + 2000, `${bytes} bytes for a ${size}-byte body and its head`);
  });
});

describe('upgrade', () => {
  let echo: Server;
  let ugw: TestGateway;
  before(async () => {
    echo = createServer((s: Socket) => {
      s.on('error', () => {});
      s.once('data', () => {
        s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello');
        s.pipe(s);
      });
    });
    echo.listen(0, '127.0.0.1');
    await once(echo, 'listening');
    ugw = await startTestGateway({
      clusters: {
        ws: { endpoints: [`http://127.0.0.1:${(echo.address() as AddressInfo).port}`], client: 'native' },
        // An upstream that reads the upgrade request and never answers.
        mute: { endpoints: [up.url], client: 'native', timeouts: { response: '1s' }, outlierDetection: { enabled: false } },
      },
      routes: [{ match: { pathPrefix: '/mute' }, cluster: 'mute' }, { cluster: 'ws' }],
    });
  });
  after(async () => {
    await ugw?.close();
    echo?.close();
  });

  test('an upgrade the upstream never answers ends in 504 http_response_timeout (the wait undici timed itself)', { timeout: 30_000 }, async () => {
    answerNext = () => ({ pieces: [] });
    const sock = connect(ugw.port, '127.0.0.1');
    await once(sock, 'connect');
    let text = '';
    sock.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    sock.write('GET /mute/ws HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    const deadline = Date.now() + 20_000;
    while (!text.includes('\r\n\r\n')) {
      if (Date.now() > deadline) throw new Error(`no answer: ${JSON.stringify(text)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    sock.destroy();
    assert.match(text, /^HTTP\/1\.1 504 /);
    assert.match(text, /error=http_response_timeout/);
  });

  test('a 101 hands the socket over: bytes after the head and the tunnel both pass', { timeout: 20_000 }, async () => {
    const sock = connect(ugw.port, '127.0.0.1');
    await once(sock, 'connect');
    let text = '';
    sock.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    sock.write('GET /ws HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    const waitFor = async (what: string): Promise<void> => {
      const deadline = Date.now() + 10_000;
      while (!text.includes(what)) {
        if (Date.now() > deadline) throw new Error(`no ${JSON.stringify(what)} in ${JSON.stringify(text)}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await waitFor('hello');
    assert.match(text, /^HTTP\/1\.1 101 /);
    sock.write('ping-pong');
    await waitFor('ping-pong');
    sock.destroy();
  });
});

import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Agent, request, type Dispatcher } from 'undici';
import WebSocket from 'ws';
import { classify, isProxyErrorType, type AttemptProgress } from '../../src/failure/index.js';
import { faultUrl, LAB_FAULTS, labByteAt, startLab, type Lab } from '../../src/lab/index.js';
import { ROUTES } from '../../src/lab/router.js';
import { RawConn } from '../helpers/raw-conn.js';
import { get, rawExchange } from './raw-client.js';

interface ErrInfo {
  code: string;
  name: string;
  message: string;
}

/** The error a promise rejects with, or a failed assertion when it resolves. */
async function rejection(p: Promise<unknown>): Promise<ErrInfo> {
  try {
    await p;
  } catch (err) {
    const e = err as { code?: unknown; name?: unknown; message?: unknown };
    return { code: String(e.code ?? ''), name: String(e.name ?? ''), message: String(e.message ?? '') };
  }
  assert.fail('expected a rejection');
}

function headSection(data: Buffer): string {
  const end = data.indexOf('\r\n\r\n');
  return data.toString('latin1', 0, end < 0 ? data.length : end);
}

let lab: Lab;
let agent: Agent;

before(async () => {
  lab = await startLab({ tls: true });
  agent = new Agent({ connect: { ca: lab.caPem } });
});

after(async () => {
  await agent.close();
  await lab.close();
});

describe('valid responses', () => {
  test('/ok: 200 with a small text body', async () => {
    const res = await request(lab.url + '/ok', { dispatcher: agent });
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), 'ok\n');
  });

  test('/echo: the request as received, after its whole body', async () => {
    const res = await request(lab.url + '/echo?x=1', {
      dispatcher: agent,
      method: 'POST',
      headers: { 'X-Custom-Case': 'yes', 'content-type': 'text/plain' },
      body: 'hello world',
    });
    assert.equal(res.statusCode, 200);
    const echo = (await res.body.json()) as Record<string, unknown>;
    assert.equal(echo.method, 'POST');
    assert.equal(echo.url, '/echo?x=1');
    assert.equal(echo.bodyBytes, 11);
    assert.equal(echo.httpVersion, '1.1');
    assert.equal(echo.tls, false);
    assert.equal((echo.headers as Record<string, string>)['x-custom-case'], 'yes');
    assert.ok((echo.rawHeaders as string[]).includes('X-Custom-Case'), 'raw header case kept');
  });

  test('/bytes: N bytes with Content-Length, the pattern intact', async () => {
    const n = 1_000_003;
    const res = await request(lab.url + `/bytes?n=${n}`, { dispatcher: agent });
    assert.equal(res.headers['content-length'], String(n));
    const body = Buffer.from(await res.body.arrayBuffer());
    assert.equal(body.length, n);
    for (let i = 0; i < n; i += 9973) assert.equal(body[i], labByteAt(i), `byte ${i}`);
    assert.equal(body[n - 1], labByteAt(n - 1));
  });

  test('/bytes?chunked=1: chunked, no Content-Length', async () => {
    const raw = await rawExchange(get('/bytes?n=200000&chunked=1', 'Connection: close\r\n'), { port: lab.port });
    const head = headSection(raw.data).toLowerCase();
    assert.match(head, /transfer-encoding: chunked/);
    assert.doesNotMatch(head, /content-length/);
    assert.ok(raw.data.toString('latin1').endsWith('\r\n0\r\n\r\n'));
    const res = await request(lab.url + '/bytes?n=200000&chunked=1', { dispatcher: agent });
    assert.equal(Buffer.from(await res.body.arrayBuffer()).length, 200000);
  });

  test('/upload: counts a streamed body', async () => {
    const piece = Buffer.alloc(64 * 1024, 0x41);
    async function* body(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 64; i++) yield piece;
    }
    const res = await request(lab.url + '/upload', { dispatcher: agent, method: 'POST', body: Readable.from(body()) });
    assert.deepEqual(await res.body.json(), { bytes: 64 * 64 * 1024 });
  });

  test('/status/NNN answers that status; a bad NNN is 400', async () => {
    for (const code of [500, 502, 503, 204]) {
      const res = await request(lab.url + `/status/${code}`, { dispatcher: agent });
      assert.equal(res.statusCode, code);
      const text = await res.body.text();
      if (code !== 204) assert.match(text, new RegExp(`^${code} `));
    }
    const bad = await request(lab.url + '/status/99', { dispatcher: agent });
    assert.equal(bad.statusCode, 400);
    await bad.body.dump();
  });

  test('/slow?ms=N waits N ms', async () => {
    const t0 = Date.now();
    const res = await request(lab.url + '/slow?ms=150', { dispatcher: agent });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    assert.ok(Date.now() - t0 >= 140, `took ${Date.now() - t0} ms`);
  });

  test('/early-hints: 103 with a Link, then 200', async () => {
    const raw = await rawExchange(get('/early-hints', 'Connection: close\r\n'), { port: lab.port });
    const text = raw.data.toString('latin1');
    assert.ok(text.startsWith('HTTP/1.1 103 Early Hints\r\n'), text);
    assert.match(text, /\r\nLink: <\/style\.css>; rel=preload\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
    const res = await request(lab.url + '/early-hints', { dispatcher: agent });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
  });

  test('/trailers: Trailer header and a trailer after the last chunk', async () => {
    const raw = await rawExchange(get('/trailers', 'Connection: close\r\nTE: trailers\r\n'), { port: lab.port });
    const text = raw.data.toString('latin1');
    assert.match(headSection(raw.data).toLowerCase(), /\r\ntrailer: x-checksum/);
    assert.match(headSection(raw.data).toLowerCase(), /\r\ntransfer-encoding: chunked/);
    assert.ok(text.endsWith('\r\n0\r\nx-checksum: abc\r\n\r\n'), JSON.stringify(text));
    const res = await request(lab.url + '/trailers', { dispatcher: agent });
    assert.equal(await res.body.text(), 'body with a trailer\n');
    assert.equal(res.trailers['x-checksum'], 'abc');
  });

  test('/chunked: several chunks, written apart', async () => {
    const raw = await rawExchange(get('/chunked?pieces=3&delay=60', 'Connection: close\r\n'), { port: lab.port });
    const body = raw.data.toString('latin1', raw.data.indexOf('\r\n\r\n') + 4);
    assert.equal(body, '8\r\npiece 1\n\r\n8\r\npiece 2\n\r\n8\r\npiece 3\n\r\n0\r\n\r\n');
    assert.ok(raw.arrivals.length >= 3, `arrivals ${JSON.stringify(raw.arrivals)}`);
  });

  test('/5xx: a 503 page from the upstream software', async () => {
    const res = await request(lab.url + '/5xx', { dispatcher: agent });
    assert.equal(res.statusCode, 503);
    assert.equal(res.headers['server'], 'lab-upstream/1.0');
    assert.equal(res.headers['content-type'], 'text/html');
    assert.match(await res.body.text(), /<title>503 Service Temporarily Unavailable<\/title>/);
  });

  test('/ lists the paths; unknown paths are 404', async () => {
    const index = await request(lab.url + '/', { dispatcher: agent });
    assert.match(await index.body.text(), /\/stall-body/);
    const res = await request(lab.url + '/no-such-path', { dispatcher: agent });
    assert.equal(res.statusCode, 404);
    await res.body.dump();
  });
});

describe('faults on the wire', () => {
  test('/close: FIN before any byte → UND_ERR_SOCKET', async () => {
    const raw = await rawExchange(get('/close'), { port: lab.port });
    assert.equal(raw.end, 'closed');
    assert.equal(raw.data.length, 0);
    const err = await rejection(request(lab.url + '/close', { dispatcher: agent }));
    assert.equal(err.code, 'UND_ERR_SOCKET');
  });

  test('/reset: RST before any byte → ECONNRESET', async () => {
    const raw = await rawExchange(get('/reset'), { port: lab.port });
    assert.equal(raw.end, 'error');
    assert.equal(raw.errorCode, 'ECONNRESET');
    assert.equal(raw.data.length, 0);
    const err = await rejection(request(lab.url + '/reset', { dispatcher: agent }));
    assert.equal(err.code, 'ECONNRESET');
  });

  for (const [path, check] of [
    ['/garbage', (d: Buffer) => d[0] === 0 && d.indexOf('HTTP/') < 0],
    ['/http09', (d: Buffer) => d.toString('latin1').startsWith('<html>') && d.indexOf('HTTP/1') < 0],
    ['/invalid-header', (d: Buffer) => d.toString('latin1').startsWith('HTTP/1.1 200 OK\r\n') && headSection(d).includes('before\x00after')],
    ['/invalid-header?byte=cr', (d: Buffer) => headSection(d).includes('before\rafter\r\n')],
  ] as const) {
    test(`${path}: not HTTP → HTTPParserError`, async () => {
      const raw = await rawExchange(get(path), { port: lab.port });
      assert.equal(raw.end, 'closed');
      assert.ok(check(raw.data), JSON.stringify(raw.data.toString('latin1')));
      const err = await rejection(request(lab.url + path, { dispatcher: agent }));
      assert.equal(err.name, 'HTTPParserError', `${err.code} ${err.message}`);
    });
  }

  test('/oversized-headers: ~100 KiB of headers → UND_ERR_HEADERS_OVERFLOW', async () => {
    for (const path of ['/oversized-headers', '/oversized-headers?one=1']) {
      const raw = await rawExchange(get(path, 'Connection: close\r\n'), { port: lab.port });
      const head = headSection(raw.data);
      assert.ok(head.startsWith('HTTP/1.1 200 OK'));
      assert.ok(head.length >= 100 * 1024 && head.length < 110 * 1024, `head ${head.length} bytes`);
      const err = await rejection(request(lab.url + path, { dispatcher: agent }));
      assert.equal(err.code, 'UND_ERR_HEADERS_OVERFLOW', `${path}: ${err.code} ${err.message}`);
    }
  });

  test('/two-content-length: two different values → UND_ERR_RES_CONTENT_LENGTH_MISMATCH', async () => {
    const raw = await rawExchange(get('/two-content-length'), { port: lab.port });
    const head = headSection(raw.data);
    assert.ok(head.includes('\r\nContent-Length: 5\r\nContent-Length: 6'), head);
    const err = await rejection(request(lab.url + '/two-content-length', { dispatcher: agent }));
    assert.equal(err.code, 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', `${err.name} ${err.code} ${err.message}`);
  });

  test('/cut-headers: half a head, then close → UND_ERR_SOCKET', async () => {
    const raw = await rawExchange(get('/cut-headers'), { port: lab.port });
    assert.equal(raw.end, 'closed');
    assert.ok(raw.data.length > 20);
    assert.ok(raw.data.toString('latin1').startsWith('HTTP/1.1 200 OK\r\n'));
    assert.equal(raw.data.indexOf('\r\n\r\n'), -1);
    const err = await rejection(request(lab.url + '/cut-headers', { dispatcher: agent }));
    assert.equal(err.code, 'UND_ERR_SOCKET');
  });

  test('/cut-body: Content-Length 1000, 100 bytes, close → 200 then UND_ERR_SOCKET', async () => {
    const raw = await rawExchange(get('/cut-body'), { port: lab.port });
    assert.equal(raw.end, 'closed');
    assert.match(headSection(raw.data), /\r\nContent-Length: 1000/);
    assert.equal(raw.data.length - (raw.data.indexOf('\r\n\r\n') + 4), 100);
    const res = await request(lab.url + '/cut-body', { dispatcher: agent });
    assert.equal(res.statusCode, 200);
    const err = await rejection(res.body.text());
    assert.equal(err.code, 'UND_ERR_SOCKET', `${err.name} ${err.code} ${err.message}`);
  });

  test('/cut-body?close=1: the same after Connection: close → 200 then UND_ERR_RES_CONTENT_LENGTH_MISMATCH', async () => {
    const raw = await rawExchange(get('/cut-body?close=1'), { port: lab.port });
    assert.match(headSection(raw.data), /\r\nContent-Length: 1000\r\nConnection: close/);
    const res = await request(lab.url + '/cut-body?close=1', { dispatcher: agent });
    assert.equal(res.statusCode, 200);
    const err = await rejection(res.body.text());
    assert.equal(err.code, 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', `${err.name} ${err.code} ${err.message}`);
  });

  test('/bad-chunk: a valid chunk then an invalid size → 200 then HTTPParserError', async () => {
    const raw = await rawExchange(get('/bad-chunk'), { port: lab.port });
    assert.match(raw.data.toString('latin1'), /\r\n\r\n10\r\nfirst chunk ok\.\n\r\nzz\r\n/);
    const res = await request(lab.url + '/bad-chunk', { dispatcher: agent });
    assert.equal(res.statusCode, 200);
    const err = await rejection(res.body.text());
    assert.equal(err.name, 'HTTPParserError', `${err.code} ${err.message}`);
  });

  test('/hang: no byte, the socket stays open → UND_ERR_HEADERS_TIMEOUT', async () => {
    const [raw, err] = await Promise.all([
      rawExchange(get('/hang'), { port: lab.port, deadlineMs: 300 }),
      rejection(request(lab.url + '/hang', { dispatcher: agent, headersTimeout: 150 })),
    ]);
    assert.equal(raw.end, 'deadline');
    assert.equal(raw.data.length, 0);
    assert.equal(err.code, 'UND_ERR_HEADERS_TIMEOUT');
  });

  test('/stall-body: head and 100 bytes, then silence → 200 then UND_ERR_BODY_TIMEOUT', async () => {
    const viaUndici = (async () => {
      const res = await request(lab.url + '/stall-body', { dispatcher: agent, bodyTimeout: 150 });
      assert.equal(res.statusCode, 200);
      return rejection(res.body.text());
    })();
    const raw = await rawExchange(get('/stall-body'), { port: lab.port, deadlineMs: 400 });
    assert.equal(raw.end, 'deadline');
    assert.match(headSection(raw.data), /\r\nContent-Length: 1000/);
    assert.equal(raw.data.length - (raw.data.indexOf('\r\n\r\n') + 4), 100);
    assert.equal((await viaUndici).code, 'UND_ERR_BODY_TIMEOUT');
  });

  test('/slow-headers?ms=N: the status line, a pause, then the rest', async () => {
    const viaUndici = rejection(request(lab.url + '/slow-headers?ms=2000', { dispatcher: agent, headersTimeout: 100 }));
    const raw = await rawExchange(get('/slow-headers?ms=300'), { port: lab.port });
    assert.equal(raw.end, 'closed');
    assert.equal(raw.arrivals.length, 2, JSON.stringify(raw.arrivals));
    assert.equal(raw.arrivals[0]!.bytes, 'HTTP/1.1 200 OK\r\n'.length);
    assert.ok(raw.arrivals[1]!.ms - raw.arrivals[0]!.ms >= 250, JSON.stringify(raw.arrivals));
    assert.ok(raw.data.toString('latin1').endsWith('\r\n\r\nok\n'));
    assert.equal((await viaUndici).code, 'UND_ERR_HEADERS_TIMEOUT');
  });

  test('refusedPort: nothing listens → ECONNREFUSED', async () => {
    const before = lab.stats.requests;
    const err = await rejection(request(`http://127.0.0.1:${lab.refusedPort}/ok`, { dispatcher: agent }));
    assert.equal(err.code, 'ECONNREFUSED');
    assert.equal(lab.stats.requests, before);
  });
});

describe('overload: /work', () => {
  test('capacity slots, a bounded queue, 503 + Retry-After beyond it', async () => {
    const small = await startLab({ capacity: 2, queue: 1 });
    const pool = new Agent({ connections: 10 });
    try {
      const t0 = Date.now();
      const results = await Promise.all(
        [1, 2, 3, 4, 5].map(async () => {
          const res = await request(small.url + '/work?ms=300', { dispatcher: pool });
          const body = await res.body.text();
          return { status: res.statusCode, retryAfter: res.headers['retry-after'], body, at: Date.now() - t0 };
        }),
      );
      const ok = results.filter((r) => r.status === 200);
      const shed = results.filter((r) => r.status === 503);
      assert.equal(ok.length, 3, JSON.stringify(results));
      assert.equal(shed.length, 2);
      for (const r of shed) assert.equal(r.retryAfter, '1');
      const queued = ok.map((r) => (JSON.parse(r.body) as { queuedMs: number }).queuedMs).sort((a, b) => a - b);
      assert.ok(queued[2]! >= 250, `the third job waited for a slot: ${queued}`);
      assert.equal(small.stats.work.peak, 2);
      assert.equal(small.stats.work.rejected, 2);
      assert.equal(small.stats.work.active, 0);
      assert.equal(small.stats.work.queued, 0);
    } finally {
      await pool.close();
      await small.close();
    }
  });

  test('a client leaving frees its place in the queue', async () => {
    const small = await startLab({ capacity: 1, queue: 1 });
    try {
      const first = rawExchange(get('/work?ms=400', 'Connection: close\r\n'), { port: small.port, deadlineMs: 1500 });
      await new Promise((r) => setTimeout(r, 50));
      await rawExchange(get('/work?ms=400'), { port: small.port, deadlineMs: 100 }); // queued, then gone
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(small.stats.work.queued, 0);
      const third = await rawExchange(get('/work?ms=10', 'Connection: close\r\n'), { port: small.port, deadlineMs: 1500 });
      assert.match(third.data.toString('latin1'), /^HTTP\/1\.1 200 /);
      assert.match((await first).data.toString('latin1'), /^HTTP\/1\.1 200 /);
    } finally {
      await small.close();
    }
  });
});

describe('keep-alive', () => {
  test('a short keepAliveTimeoutMs really closes idle connections after that time', async () => {
    const short = await startLab({ keepAliveTimeoutMs: 50 });
    try {
      const raw = await rawExchange(get('/ok'), { port: short.port, deadlineMs: 3000 });
      assert.equal(raw.end, 'closed');
      assert.match(headSection(raw.data), /\r\nConnection: keep-alive\r\nKeep-Alive: timeout=0(\r\n|$)/);
      const idle = raw.ms - raw.firstByteMs!;
      // Node alone would wait keepAliveTimeout + 1 s; the lab closes at 50 ms.
      assert.ok(idle >= 30 && idle < 800, `closed after ${idle} ms idle`);
      // undici is told timeout=0, so it does not reuse: consecutive requests both succeed.
      const pool = new Agent();
      for (let i = 0; i < 3; i++) {
        const res = await request(short.url + '/ok', { dispatcher: pool });
        await res.body.dump();
        await new Promise((r) => setTimeout(r, 80));
      }
      await pool.close();
    } finally {
      await short.close();
    }
  });

  test('the default keeps idle connections open and advertises timeout=5', async () => {
    const raw = await rawExchange(get('/ok') + get('/ok'), { port: lab.port, deadlineMs: 400 });
    assert.equal(raw.end, 'deadline');
    const text = raw.data.toString('latin1');
    assert.equal(text.split('HTTP/1.1 200 OK').length - 1, 2, 'two pipelined answers on one connection');
    assert.match(text, /\r\nKeep-Alive: timeout=5\r\n/);
  });

  test('advertiseKeepAlive: a number says more than the truth; false says nothing', async () => {
    const liar = await startLab({ keepAliveTimeoutMs: 50, advertiseKeepAlive: 7 });
    const mute = await startLab({ keepAliveTimeoutMs: 50, advertiseKeepAlive: false });
    try {
      const a = await rawExchange(get('/ok'), { port: liar.port, deadlineMs: 3000 });
      assert.match(headSection(a.data).toLowerCase(), /\r\nkeep-alive: timeout=7/);
      assert.equal(a.end, 'closed');
      assert.ok(a.ms - a.firstByteMs! < 800);
      const b = await rawExchange(get('/ok'), { port: mute.port, deadlineMs: 3000 });
      assert.doesNotMatch(headSection(b.data).toLowerCase(), /keep-alive: /);
      assert.match(headSection(b.data).toLowerCase(), /\r\nconnection: keep-alive/);
      assert.equal(b.end, 'closed');
    } finally {
      await liar.close();
      await mute.close();
    }
  });
});

describe('keep-alive closes beyond the timeout (the race families)', () => {
  const ask = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: lab\r\n\r\n`;
  const answers = (text: string): number => text.split('HTTP/1.1 200 OK').length - 1;

  test('maxRequestsPerConnection: the connection ends after that many answers, with or without Connection: close on the last', async () => {
    for (const closeHeaderOnLast of [true, false]) {
      const l = await startLab({ maxRequestsPerConnection: 3, closeHeaderOnLast });
      try {
        const c = new RawConn(l.port);
        for (let i = 1; i <= 3; i++) {
          await c.write(ask('/ok'));
          await c.waitFor((t) => answers(t) === i);
          if (i < 3) assert.ok(!c.ended, `open after answer ${i}`);
        }
        await c.closed();
        const lastHead = c.text.slice(c.text.lastIndexOf('HTTP/1.1 200 OK')).toLowerCase();
        assert.equal(/\r\nconnection: close\r\n/.test(lastHead), closeHeaderOnLast, `Connection: close on the last answer: ${closeHeaderOnLast}`);
        assert.equal(answers(c.text), 3);
        c.destroy();
      } finally {
        await l.close();
      }
    }
  });

  test('idleCloseMs: each idle connection is closed after a time drawn in [min, max], whatever Keep-Alive says', async () => {
    const draws: number[] = [];
    const random = (): number => {
      const x = draws.length % 2 === 0 ? 0 : 1;
      draws.push(x);
      return x;
    };
    const l = await startLab({ idleCloseMs: [40, 400], advertiseKeepAlive: 9, random });
    try {
      // First draw 0 → closed after 40 ms; the second connection draws 1 → 400 ms.
      const times: number[] = [];
      for (let k = 0; k < 2; k++) {
        const c = new RawConn(l.port);
        await c.write(ask('/ok'));
        await c.waitFor((t) => answers(t) === 1);
        assert.match(c.text.toLowerCase(), /\r\nkeep-alive: timeout=9\r\n/);
        const t0 = performance.now();
        await c.closed();
        times.push(performance.now() - t0);
        c.destroy();
      }
      assert.ok(times[0]! >= 30 && times[0]! < 300, `closed after ${times[0]} ms (drawn 40)`);
      assert.ok(times[1]! >= 350 && times[1]! < 1500, `closed after ${times[1]} ms (drawn 400)`);
      assert.deepEqual(draws, [0, 1]);
    } finally {
      await l.close();
    }
  });

  test('idleCloseMs: a request in time keeps the connection open; the timer is drawn again after each answer', async () => {
    const l = await startLab({ idleCloseMs: [300, 300] });
    try {
      const c = new RawConn(l.port);
      for (let i = 1; i <= 3; i++) {
        await c.write(ask('/ok'));
        await c.waitFor((t) => answers(t) === i);
        assert.ok(!c.ended);
      }
      await c.closed();
      assert.equal(answers(c.text), 3);
      c.destroy();
    } finally {
      await l.close();
    }
  });
});

describe('TLS', () => {
  test('self-signed listener → DEPTH_ZERO_SELF_SIGNED_CERT', async () => {
    assert.ok(lab.tlsSelfSignedUrl?.startsWith('https://127.0.0.1:'));
    const err = await rejection(request(lab.tlsSelfSignedUrl + '/ok', { dispatcher: agent }));
    assert.equal(err.code, 'DEPTH_ZERO_SELF_SIGNED_CERT');
  });

  test('CA listener: trusted with caPem, untrusted without', async () => {
    assert.ok(lab.tlsCaUrl?.startsWith('https://localhost:'));
    assert.match(lab.caPem ?? '', /^-----BEGIN CERTIFICATE-----/);
    const res = await request(lab.tlsCaUrl + '/echo', { dispatcher: agent });
    assert.equal(res.statusCode, 200);
    assert.equal(((await res.body.json()) as { tls: boolean }).tls, true);
    const byIp = await request(lab.tlsCaUrl!.replace('localhost', '127.0.0.1') + '/ok', { dispatcher: agent });
    assert.equal(byIp.statusCode, 200, 'the certificate also names 127.0.0.1');
    await byIp.body.dump();
    const plainAgent = new Agent();
    try {
      const err = await rejection(request(lab.tlsCaUrl + '/ok', { dispatcher: plainAgent }));
      assert.equal(err.code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    } finally {
      await plainAgent.close();
    }
  });

  test('TLS listeners serve the same faults', async () => {
    const cut = await request(lab.tlsCaUrl + '/cut-body', { dispatcher: agent });
    assert.equal(cut.statusCode, 200);
    assert.equal((await rejection(cut.body.text())).code, 'UND_ERR_SOCKET');
    assert.equal((await rejection(request(lab.tlsCaUrl + '/garbage', { dispatcher: agent }))).name, 'HTTPParserError');
    assert.equal((await rejection(request(lab.tlsCaUrl + '/close', { dispatcher: agent }))).code, 'UND_ERR_SOCKET');
    const port = Number(new URL(lab.tlsCaUrl!).port);
    const reset = await rawExchange(get('/reset'), { port, tls: { ca: lab.caPem, servername: 'localhost' } });
    assert.equal(reset.errorCode, 'ECONNRESET');
    assert.equal((await rejection(request(lab.tlsCaUrl + '/reset', { dispatcher: agent }))).code, 'ECONNRESET');
  });

  test('https to the plain listener → a TLS protocol error', async () => {
    const err = await rejection(request(lab.url.replace('http:', 'https:') + '/ok', { dispatcher: agent }));
    assert.equal(err.code, 'ERR_SSL_WRONG_VERSION_NUMBER', `${err.code} ${err.message}`);
  });
});

describe('WebSocket', () => {
  test('/ws echoes text and binary messages', async () => {
    const ws = new WebSocket(lab.url.replace('http:', 'ws:') + '/ws');
    try {
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      const replies: Array<{ data: string; binary: boolean }> = [];
      const done = new Promise<void>((resolve) => {
        ws.on('message', (data: Buffer, binary: boolean) => {
          replies.push({ data: data.toString(), binary });
          if (replies.length === 2) resolve();
        });
      });
      ws.send('hello');
      ws.send(Buffer.from('bin'), { binary: true });
      await done;
      assert.deepEqual(replies, [
        { data: 'hello', binary: false },
        { data: 'bin', binary: true },
      ]);
    } finally {
      ws.terminate();
    }
  });

  test('an upgrade to any other path is answered 400', async () => {
    const raw = await rawExchange(get('/ok', 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'), { port: lab.port });
    assert.match(raw.data.toString('latin1'), /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.equal(raw.end, 'closed');
  });
});

describe('stats', () => {
  test('counts requests per path, keeps the last request, resets', async () => {
    const s = await startLab();
    try {
      await rawExchange(get('/close'), { port: s.port });
      const res = await request(s.url + '/ok?a=b', { dispatcher: agent, headers: { 'X-Probe': '1' } });
      await res.body.dump();
      assert.equal(s.stats.requests, 2);
      assert.equal(s.stats.byPath.get('/close'), 1);
      assert.equal(s.stats.byPath.get('/ok'), 1);
      assert.equal(s.stats.byPath.get('/hang'), undefined);
      assert.equal(s.stats.lastRequest?.url, '/ok?a=b');
      assert.equal(s.stats.lastRequest?.method, 'GET');
      assert.equal(s.stats.lastRequest?.headers['x-probe'], '1');
      assert.ok(s.stats.lastRequest?.rawHeaders.includes('X-Probe'));
      s.stats.reset();
      assert.equal(s.stats.requests, 0);
      assert.equal(s.stats.byPath.size, 0);
      assert.equal(s.stats.lastRequest, undefined);
    } finally {
      await s.close();
    }
  });
});

describe('close()', () => {
  test('destroys hanging and stalled sockets, websockets, queued work, and stops listening', async () => {
    const doomed = await startLab({ tls: true, capacity: 1, queue: 4 });
    const caPort = Number(new URL(doomed.tlsCaUrl!).port);
    const clients = [
      rawExchange(get('/hang'), { port: doomed.port, deadlineMs: 5000 }),
      rawExchange(get('/stall-body'), { port: doomed.port, deadlineMs: 5000 }),
      rawExchange(get('/slow?ms=60000'), { port: doomed.port, deadlineMs: 5000 }),
      rawExchange(get('/slow-headers?ms=60000'), { port: doomed.port, deadlineMs: 5000 }),
      rawExchange(get('/work?ms=60000'), { port: doomed.port, deadlineMs: 5000 }),
      rawExchange(get('/work?ms=60000'), { port: doomed.port, deadlineMs: 5000 }),
      rawExchange(get('/hang'), { port: caPort, deadlineMs: 5000, tls: { ca: doomed.caPem, servername: 'localhost' } }),
    ];
    const ws = new WebSocket(doomed.url.replace('http:', 'ws:') + '/ws');
    ws.on('error', () => undefined);
    const wsClosed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
    await new Promise<void>((resolve) => ws.once('open', () => resolve()));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(doomed.stats.work.active, 1);
    assert.equal(doomed.stats.work.queued, 1);
    const t0 = Date.now();
    await doomed.close();
    const ends = await Promise.all(clients);
    await wsClosed;
    assert.ok(Date.now() - t0 < 1000, `close took ${Date.now() - t0} ms`);
    for (const end of ends) assert.notEqual(end.end, 'deadline');
    const err = await rejection(request(doomed.url + '/ok', { dispatcher: agent }));
    assert.equal(err.code, 'ECONNREFUSED');
    await doomed.close(); // idempotent
  });
});

describe('LAB_FAULTS', () => {
  test('every entry names a real path and a real RFC 9209 type', () => {
    assert.ok(LAB_FAULTS.length >= 25);
    for (const f of LAB_FAULTS) {
      const path = f.path.split('?')[0]!;
      assert.ok(ROUTES.has(path) || path.startsWith('/status/') || path === '/ws', f.path);
      if (f.expectType !== undefined) assert.ok(isProxyErrorType(f.expectType), f.expectType);
      assert.ok(f.expectStatus >= 100 && f.expectStatus <= 599);
    }
  });

  /** One try at a URL through undici's dispatch API, recording how far it got (as a gateway does). */
  function probe(dispatcher: Dispatcher, url: string, timeoutMs: number): Promise<{ progress: AttemptProgress; status?: number; error?: Error }> {
    const u = new URL(url);
    const progress: AttemptProgress = { connected: false, responseStarted: false, headersReceived: false };
    let status: number | undefined;
    return new Promise((resolve) => {
      dispatcher.dispatch(
        { origin: u.origin, path: u.pathname + u.search, method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs },
        {
          onConnect() {
            progress.connected = true;
          },
          onResponseStarted() {
            progress.responseStarted = true;
          },
          onHeaders(code) {
            if (code >= 200) {
              status = code;
              progress.headersReceived = true;
            }
            return true;
          },
          onData() {
            return true;
          },
          onComplete() {
            resolve({ progress, status });
          },
          onError(error) {
            resolve({ progress, status, error });
          },
        },
      );
    });
  }

  test('what undici reports for each entry classifies as its expectType', async () => {
    const mismatches: string[] = [];
    await Promise.all(
      LAB_FAULTS.filter((f) => f.path !== '/ws').map(async (f) => {
        const url = faultUrl(lab, f);
        assert.ok(url, f.path);
        // Short timeouts only where the fault is a timeout; /slow?ms=500 must not time out.
        const r = await probe(agent, url, f.needsTimeout === true ? 250 : 5000);
        const label = `${f.listener ?? 'http'} ${f.path}`;
        if (f.expectType === undefined) {
          if (r.error) mismatches.push(`${label}: unexpected ${r.error.name} ${(r.error as { code?: string }).code}`);
          else if (r.status !== f.expectStatus) mismatches.push(`${label}: status ${r.status}, expected ${f.expectStatus}`);
          return;
        }
        if (!r.error) {
          mismatches.push(`${label}: succeeded with ${r.status}, expected ${f.expectType}`);
          return;
        }
        const failure = classify(r.error, r.progress);
        if (failure.type !== f.expectType && !(f.alsoAccept ?? []).includes(failure.type)) mismatches.push(`${label}: classified ${failure.type}, expected ${f.expectType} (${(r.error as { code?: string }).code})`);
        if (f.midBody === true && !r.progress.headersReceived) mismatches.push(`${label}: failed before the headers`);
      }),
    );
    assert.deepEqual(mismatches, []);
  });
});

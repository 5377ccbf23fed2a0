import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { labByteAt, startLab, type Lab } from '../../src/lab/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { sampleRss, startWatchUpstream, type WatchUpstream } from '../helpers/watch-upstream.js';

/**
 * Bodies stream through the gateway: 1 GiB each way with bounded memory, backpressure
 * from a slow client reaches the upstream, a client that leaves stops the upstream work,
 * and an upstream that dies mid-body never produces a body that looks complete.
 *
 * The gateway, the upstreams and the clients share this process, so RSS growth bounds all
 * of them together.
 */

const GiB = 1024 * 1024 * 1024;
const MiB = 1024 * 1024;
const RSS_LIMIT = 150 * MiB;

let lab: Lab;
let up: WatchUpstream;
let gw: TestGateway;
const client = new Agent({ keepAliveTimeout: 1000, bodyTimeout: 30_000, headersTimeout: 30_000 });

before(async () => {
  lab = await startLab();
  up = await startWatchUpstream();
  gw = await startTestGateway({
    clusters: {
      lab: { endpoints: [lab.url] },
      watch: { endpoints: [up.url] },
    },
    routes: [
      { match: { pathPrefix: '/w' }, cluster: 'watch', stripPrefix: true },
      { cluster: 'lab' },
    ],
  });
});

after(async () => {
  await gw?.close();
  await up?.close();
  await lab?.close();
  await client.close();
});

let ids = 0;
const nextId = (): string => `r${++ids}-${Date.now().toString(36)}`;

/** Download through the gateway, checking the byte pattern cheaply (first byte of each chunk). */
async function download(path: string, expected: number): Promise<{ bytes: number; maxGrowth: number; ms: number }> {
  const rss = sampleRss();
  const t0 = Date.now();
  const res = await request(gw.url + path, { dispatcher: client });
  assert.equal(res.statusCode, 200);
  let bytes = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    if (chunk[0] !== labByteAt(bytes)) assert.fail(`byte ${bytes} is ${chunk[0]}, expected ${labByteAt(bytes)}`);
    bytes += chunk.length;
  }
  const { maxGrowth } = rss.stop();
  assert.equal(bytes, expected);
  return { bytes, maxGrowth, ms: Date.now() - t0 };
}

/** A body of `total` bytes made on demand from one reused buffer (never allocated whole). */
function generated(total: number): Readable {
  const block = Buffer.alloc(64 * 1024, 0x5a);
  let left = total;
  return new Readable({
    read() {
      if (left <= 0) {
        this.push(null);
        return;
      }
      const n = Math.min(left, block.length);
      left -= n;
      this.push(n === block.length ? block : block.subarray(0, n));
    },
  });
}

async function upload(total: number, withLength: boolean): Promise<{ bytes: number; maxGrowth: number; ms: number }> {
  const rss = sampleRss();
  const t0 = Date.now();
  const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
  if (withLength) headers['content-length'] = String(total);
  const res = await request(gw.url + '/upload', { dispatcher: client, method: 'POST', headers, body: generated(total) });
  const text = await res.body.text();
  const { maxGrowth } = rss.stop();
  assert.equal(res.statusCode, 200, text);
  return { bytes: (JSON.parse(text) as { bytes: number }).bytes, maxGrowth, ms: Date.now() - t0 };
}

/** A raw client: sends a GET and hands back the socket plus the bytes seen so far. */
function rawGet(path: string): { socket: Socket; received: () => number; head: Promise<string> } {
  const socket = connect(gw.port, '127.0.0.1');
  let received = 0;
  let headBuf = '';
  let resolveHead!: (h: string) => void;
  const head = new Promise<string>((r) => (resolveHead = r));
  socket.on('error', () => {});
  socket.on('data', (d: Buffer) => {
    if (headBuf !== undefined && !headBuf.includes('\r\n\r\n')) {
      headBuf += d.toString('latin1');
      const end = headBuf.indexOf('\r\n\r\n');
      if (end >= 0) {
        received += headBuf.length - end - 4;
        resolveHead(headBuf.slice(0, end));
        return;
      }
      return;
    }
    received += d.length;
  });
  socket.write(`GET ${path} HTTP/1.1\r\nHost: gw.test\r\n\r\n`);
  return { socket, received: () => received, head };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, timeoutMs: number, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${timeoutMs} ms`);
    await sleep(10);
  }
}

describe('1 GiB through the gateway with bounded memory', () => {
  test('download, Content-Length', { timeout: 60_000 }, async (t) => {
    const r = await download(`/bytes?n=${GiB}`, GiB);
    t.diagnostic(`1 GiB down (content-length) in ${r.ms} ms, RSS grew at most ${(r.maxGrowth / MiB).toFixed(1)} MiB`);
    assert.ok(r.maxGrowth < RSS_LIMIT, `RSS grew by ${(r.maxGrowth / MiB).toFixed(1)} MiB`);
  });

  test('download, chunked', { timeout: 60_000 }, async (t) => {
    const r = await download(`/bytes?n=${GiB}&chunked=1`, GiB);
    t.diagnostic(`1 GiB down (chunked) in ${r.ms} ms, RSS grew at most ${(r.maxGrowth / MiB).toFixed(1)} MiB`);
    assert.ok(r.maxGrowth < RSS_LIMIT, `RSS grew by ${(r.maxGrowth / MiB).toFixed(1)} MiB`);
  });

  test('upload, Content-Length', { timeout: 60_000 }, async (t) => {
    const r = await upload(GiB, true);
    t.diagnostic(`1 GiB up (content-length) in ${r.ms} ms, RSS grew at most ${(r.maxGrowth / MiB).toFixed(1)} MiB`);
    assert.equal(r.bytes, GiB);
    assert.ok(r.maxGrowth < RSS_LIMIT, `RSS grew by ${(r.maxGrowth / MiB).toFixed(1)} MiB`);
  });

  test('upload, chunked (256 MiB)', { timeout: 60_000 }, async (t) => {
    const r = await upload(256 * MiB, false);
    t.diagnostic(`256 MiB up (chunked) in ${r.ms} ms, RSS grew at most ${(r.maxGrowth / MiB).toFixed(1)} MiB`);
    assert.equal(r.bytes, 256 * MiB);
    assert.ok(r.maxGrowth < RSS_LIMIT, `RSS grew by ${(r.maxGrowth / MiB).toFixed(1)} MiB`);
  });
});

describe('backpressure', () => {
  test('a client that stops reading stops the upstream (its writes block), then everything arrives', { timeout: 30_000 }, async (t) => {
    const id = nextId();
    const total = 512 * MiB;
    const rss = sampleRss();
    const c = rawGet(`/w/big?n=${total}&id=${id}`);
    await c.head;
    c.socket.pause();
    const rec = await up.arrived(id);
    // Let every buffer on the way fill up, then check the upstream stays blocked.
    await until('the upstream blocking on write()', 5000, () => rec.waitingForDrain);
    await sleep(700);
    const w1 = rec.bytesWritten;
    await sleep(500);
    const w2 = rec.bytesWritten;
    const growth = rss.stop().maxGrowth;
    t.diagnostic(`paused client: upstream wrote ${(w2 / MiB).toFixed(1)} MiB of ${total / MiB} MiB, blocked ${rec.blocked}x; client got ${(c.received() / MiB).toFixed(1)} MiB; RSS +${(growth / MiB).toFixed(1)} MiB`);
    assert.equal(w2, w1, 'the upstream kept writing while the client did not read');
    assert.ok(rec.waitingForDrain, "the upstream's write() is blocked");
    assert.ok(w2 < 64 * MiB, `${(w2 / MiB).toFixed(1)} MiB in flight for a paused client`);
    assert.ok(growth < RSS_LIMIT);
    c.socket.resume();
    await until('the whole body arriving', 20_000, () => c.received() >= total);
    assert.equal(c.received(), total);
    assert.ok(rec.finished);
    c.socket.destroy();
  });
});

describe('a client that leaves stops the upstream work', () => {
  test('disconnect mid-download (large body) → upstream connection closed within 1 s', { timeout: 10_000 }, async (t) => {
    const id = nextId();
    const c = rawGet(`/w/big?n=${GiB}&id=${id}`);
    await c.head;
    await until('some body arriving', 5000, () => c.received() > 4 * MiB);
    const t0 = Date.now();
    c.socket.destroy();
    const rec = await up.closed(id, 1000);
    t.diagnostic(`upstream connection closed ${rec.closedAt! - t0} ms after the client left (${(rec.bytesWritten / MiB).toFixed(1)} MiB written)`);
    assert.ok(!rec.finished);
  });

  test('disconnect during a stalled body → upstream connection closed within 1 s', { timeout: 10_000 }, async () => {
    const id = nextId();
    const c = rawGet(`/w/stall?id=${id}`);
    await c.head;
    await until('the first 100 bytes', 3000, () => c.received() >= 100);
    c.socket.destroy();
    await up.closed(id, 1000);
  });

  test('disconnect during a stalled body from the lab (/stall-body) → the gateway lets go of it', { timeout: 10_000 }, async () => {
    const c = rawGet('/stall-body');
    const head = await c.head;
    assert.match(head, /^HTTP\/1\.1 200/);
    await until('the first 100 bytes', 3000, () => c.received() >= 100);
    const before = gw.logs.length;
    c.socket.destroy();
    // The access-log line is written when the exchange ends: the client's leaving ended it.
    await until('the exchange ending', 1000, () => gw.logs.slice(before).some((l) => l.type === 'access' && l.path === '/stall-body'));
    const line = gw.logs.slice(before).find((l) => l.type === 'access' && l.path === '/stall-body')!;
    assert.equal(line.endedBy, 'client');
  });

  test('disconnect while waiting for response headers (/hang) → upstream connection closed within 1 s', { timeout: 10_000 }, async () => {
    const id = nextId();
    const c = rawGet(`/w/hang?id=${id}`);
    await up.arrived(id);
    await sleep(100);
    c.socket.destroy();
    await up.closed(id, 1000);
  });
});

describe('an upstream that dies mid-body', () => {
  for (const chunked of [false, true]) {
    test(`${chunked ? 'chunked' : 'Content-Length'} body → the client sees an aborted body, never a clean end`, { timeout: 10_000 }, async () => {
      const id = nextId();
      const res = await request(`${gw.url}/w/die?n=${MiB}&id=${id}${chunked ? '&chunked=1' : ''}`, { dispatcher: client });
      assert.equal(res.statusCode, 200);
      let bytes = 0;
      let error: unknown;
      try {
        for await (const chunk of res.body as AsyncIterable<Buffer>) bytes += chunk.length;
      } catch (err) {
        error = err;
      }
      assert.ok(error, `the body ended cleanly after ${bytes} bytes`);
      assert.ok(bytes <= MiB, `${bytes} bytes`);
      const line = await gw.logFor(String(res.headers['x-request-id']));
      assert.equal(line.error, 'http_response_incomplete');
    });

    test(`${chunked ? 'chunked' : 'Content-Length'} body, raw client: the connection is cut without a terminator`, { timeout: 10_000 }, async () => {
      const id = nextId();
      const socket = connect(gw.port, '127.0.0.1');
      const chunks: Buffer[] = [];
      socket.on('data', (d: Buffer) => chunks.push(d));
      const ended = new Promise<string>((resolve) => {
        socket.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
        socket.on('close', () => resolve('closed'));
      });
      socket.write(`GET /w/die?n=${256 * 1024}&id=${id}${chunked ? '&chunked=1' : ''} HTTP/1.1\r\nHost: gw.test\r\n\r\n`);
      const how = await Promise.race([ended, sleep(5000).then(() => 'deadline')]);
      socket.destroy();
      assert.notEqual(how, 'deadline', 'the gateway kept the connection open after the upstream died');
      const data = Buffer.concat(chunks);
      const headEnd = data.indexOf('\r\n\r\n');
      const head = data.subarray(0, headEnd).toString('latin1');
      assert.match(head, /^HTTP\/1\.1 200/);
      const body = data.subarray(headEnd + 4);
      if (chunked) {
        assert.match(head, /transfer-encoding: chunked/i);
        assert.ok(!body.subarray(-5).equals(Buffer.from('0\r\n\r\n')), 'the chunked body was terminated as if complete');
      } else {
        const cl = Number(/content-length: (\d+)/i.exec(head)![1]);
        assert.ok(body.length < cl, `${body.length} of ${cl} bytes`);
      }
    });
  }
});

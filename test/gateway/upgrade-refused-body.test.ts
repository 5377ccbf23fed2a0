import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { seededRandom } from '../helpers/seeded.js';
import { startRawUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';

/**
 * An upgrade request the upstream answers without switching (a 200, 401, 426 … with a
 * body): the gateway passes that answer on and closes. Found in session 13 on the native
 * client (the default): the answer's body had no idle timer (an upstream that stopped
 * mid-body held the client connection for ever), and a body larger than the client
 * socket's buffer stalled for ever too (the relay paused on the full buffer and nothing
 * resumed it). Both are run over a seeded family: body sizes around the buffer sizes a
 * socket and the client produce, and stall points within the body.
 */

const UPGRADE = (path: string): string =>
  `GET ${path} HTTP/1.1\r\nHost: up.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;

/** The idle timeout of the cluster (the wait between body bytes). */
const IDLE_MS = 300;

let upstream: ScriptedUpstream;

/** `/body/<n>`: a 200 with n bytes; `/stall/<n>/<of>`: the head of `of` bytes, n of them, then silence. */
before(async () => {
  upstream = await startRawUpstream((head) => {
    const path = /^GET (\S+)/.exec(head)![1]!;
    const body = /^\/body\/(\d+)$/.exec(path);
    if (body) {
      const n = Number(body[1]);
      return { bytes: Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${n}\r\n\r\n`), Buffer.alloc(n, 0x61)]), close: true };
    }
    const stall = /^\/stall\/(\d+)\/(\d+)$/.exec(path);
    if (stall) return Buffer.concat([Buffer.from(`HTTP/1.1 426 Upgrade Required\r\nContent-Length: ${stall[2]}\r\n\r\n`), Buffer.alloc(Number(stall[1]), 0x62)]);
    return { bytes: 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n', close: true };
  });
});

after(() => upstream.close());

/** An upgrade request on a new connection; resolves with all the bytes once the gateway closes it (fails past 10 s, with what came). */
function exchange(port: number, path: string, readDelayMs = 0): Promise<{ data: Buffer; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const chunks: Buffer[] = [];
    const s = connect(port, '127.0.0.1', () => s.write(UPGRADE(path)));
    const limit = setTimeout(() => {
      s.destroy();
      reject(new Error(`${path}: the gateway had not closed after 10 s; ${chunks.reduce((n, c) => n + c.length, 0)} bytes came`));
    }, 10_000);
    s.on('close', () => clearTimeout(limit));
    if (readDelayMs > 0) {
      // A client slow to read: paused at first, so the gateway's buffer toward it fills.
      s.pause();
      setTimeout(() => s.resume(), readDelayMs).unref();
    }
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', reject);
    s.on('close', () => resolve({ data: Buffer.concat(chunks), ms: performance.now() - t0 }));
  });
}

function split(data: Buffer): { status: number; body: Buffer } {
  const end = data.indexOf('\r\n\r\n');
  assert.ok(end > 0, `no head in ${JSON.stringify(data.subarray(0, 200).toString('latin1'))}`);
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(data.subarray(0, end).toString('latin1'))?.[1]), body: data.subarray(end + 4) };
}

describe('a non-switching answer to an upgrade request', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway({
      clusters: { up: { endpoints: [upstream.url], timeouts: { idle: `${IDLE_MS}ms` }, outlierDetection: { enabled: false } } },
      routes: [{ cluster: 'up', retry: { tries: 1 } }],
    });
  });
  after(() => gw.close());

  test('its body is passed on whole, whatever its size and however slowly the client reads (seeded)', { timeout: 60_000 }, async () => {
    const rand = seededRandom();
    // Around the sizes where buffers fill: a socket's 16 KiB high-water mark, 64 KiB reads, a MiB.
    const cases: Array<[number, number]> = [0, 1, 16383, 16384, 16385, 65535, 65536, 65537, 1 << 20, 4 << 20].map((n) => [n, rand.pick([0, 0, 50, 200])]);
    // A client that reads nothing for a while: past the loopback socket buffers, the gateway's own buffer fills.
    cases.push([4 << 20, 300], [8 << 20, 300]);
    for (let i = 0; i < 6; i++) cases.push([1 + rand.int(2 << 20), rand.pick([0, 0, 50, 200])]);
    for (const [n, readDelayMs] of cases) {
      const { data } = await exchange(gw.port, `/body/${n}`, readDelayMs);
      const { status, body } = split(data);
      assert.equal(status, 200, `seed ${rand.seed}, ${n} bytes`);
      assert.equal(body.length, n, `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}): ${n} bytes, client reading after ${readDelayMs} ms`);
    }
  });

  test('an upstream that stops mid-body is cut after the idle timeout, recorded as connection_read_timeout (seeded)', { timeout: 60_000 }, async () => {
    const rand = seededRandom();
    for (let i = 0; i < 5; i++) {
      const of = 1 + rand.int(200_000);
      const sent = rand.pick([0, 1, rand.int(of)]);
      const { data, ms } = await exchange(gw.port, `/stall/${sent}/${of}`);
      const { status, body } = split(data);
      const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}): ${sent} of ${of} bytes`;
      assert.equal(status, 426, ctx);
      assert.equal(body.length, sent, ctx);
      assert.ok(ms >= IDLE_MS, `${ctx}: closed after ${ms.toFixed(0)} ms, before the idle timeout`);
      const line = await gw.logFor(requestId(data));
      assert.equal(line.error, 'connection_read_timeout', `${ctx}: ${JSON.stringify(line)}`);
      assert.equal(line.status, 426, ctx);
    }
  });
});

/** The request id the gateway gave the answer. */
function requestId(data: Buffer): string {
  const head = data.subarray(0, data.indexOf('\r\n\r\n')).toString('latin1');
  const id = /\r\nx-request-id: ([^\r]+)/i.exec(head)?.[1];
  assert.ok(id !== undefined, `no request id in ${JSON.stringify(head)}`);
  return id;
}

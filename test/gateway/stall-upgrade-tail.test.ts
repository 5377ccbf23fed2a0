import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { seededRandom } from '../helpers/seeded.js';
import { onFirstHead, startRawServer, type RawServer } from '../helpers/scripted-upstream.js';

/**
 * Stall hunt (session 13), the tail of an upgraded tunnel: after a 101 the gateway pipes
 * both ways, and `upstream.on('close', () => client.destroy())` (src/gateway/upgrade.ts
 * onUpgrade). An upstream that sends its last bytes (a large message, then its Close frame)
 * and closes: the pipe has ended the client side (`client.end()`), but the upstream's
 * 'close' follows at once and destroys the client socket with the bytes still queued in it
 * (up to a buffer's worth): a client that reads slower than loopback loses the end of the
 * stream, and sees a clean FIN where the Close frame should have been. The forward tunnel
 * (src/forward/tunnel.ts) gives the other side LINGER_MS to flush; here nothing does.
 *
 * Sizes around the buffer sizes and beyond the socket buffers; the client reads in bounded
 * steps (a chunk, then a short pause). Every wait is bounded.
 */

const UPGRADE = (path: string): string =>
  `GET ${path} HTTP/1.1\r\nHost: up.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;

let upstream: RawServer;

/** `/send/<n>`: 101, then n bytes (a byte pattern), then end. */
before(async () => {
  upstream = await startRawServer((s) =>
    onFirstHead(s, (head) => {
      const n = Number(/^GET \/send\/(\d+)/.exec(head)?.[1] ?? 0);
      s.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n');
      s.end(pattern(n));
    }),
  );
});

after(() => upstream.close());

function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
}

/** Upgrade, then read everything at about `rate` chunks a second; resolves with the bytes after the 101 head (bounded: 30 s). */
function slowRead(port: number, n: number, pauseMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect(port, '127.0.0.1', () => s.write(UPGRADE(`/send/${n}`)));
    const limit = setTimeout(() => {
      s.destroy();
      reject(new Error(`/send/${n}: not closed after 30 s`));
    }, 30_000);
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      if (pauseMs > 0) {
        s.pause();
        setTimeout(() => s.resume(), pauseMs).unref();
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(limit);
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      resolve(end < 0 ? Buffer.alloc(0) : all.subarray(end + 4));
    });
  });
}

describe('an upgraded tunnel whose upstream sends its last bytes and closes', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway({
      clusters: { up: { endpoints: [upstream.url], outlierDetection: { enabled: false } } },
      routes: [{ cluster: 'up', retry: { tries: 1 } }],
    });
  });
  after(() => gw.close());

  test('a client reading slowly gets every byte (seeded sizes and read pace)', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    const sizes = [4 << 20, 8 << 20];
    const failures: string[] = [];
    await Promise.all(
      sizes.map(async (n) => {
        const pauseMs = rand.pick([50, 100]);
        const got = await slowRead(gw.port, n, pauseMs);
        if (got.length !== n) failures.push(`${n} bytes sent, ${got.length} arrived (client pausing ${pauseMs} ms per chunk); the last ${n - got.length} were dropped`);
        else if (!got.equals(pattern(n))) failures.push(`${n} bytes arrived altered`);
      }),
    );
    assert.deepEqual(failures, [], `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}):\n${failures.join('\n')}`);
  });
});

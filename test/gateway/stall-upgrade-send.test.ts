import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { startTestGateway, type GatewayFront } from '../helpers/gateway.js';
import { onFirstHead, startRawServer, type RawServer } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * An upgraded tunnel had no send timeout on the reverse gateway (docs/security.md listed it):
 * a client that stops reading while the upstream writes pauses the upstream, nothing moves,
 * and the tunnel held both sockets, the buffers full of unread bytes and its maxConnections
 * place until the tunnel idle time (5 minutes by default), or for ever with `tunnelIdle: 0s`.
 * The listener's `sendTimeout` now applies to the tunnel as to the forward proxy's tunnels:
 * once the client's buffer has stayed full that long, both sides are cut, recorded
 * `endedBy: client`, `http_request_error`, with the detail. Seeded over the timeout, both
 * fronts; `tunnelIdle: 0s` so only the send timeout can end it; a client that keeps taking
 * bytes (slowly) over the same time is not cut.
 */

const UPGRADE = 'GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
/** Bound on what one upstream connection writes (far beyond any socket buffers). */
const MAX_BYTES = 256 << 20;
const CHUNK = Buffer.alloc(64 * 1024, 0x62);

let upstream: RawServer;
const upstreamClosed: Array<Promise<void>> = [];

before(async () => {
  // After its 101, writes as fast as it is let until MAX_BYTES or its connection closes.
  upstream = await startRawServer((s) => {
    upstreamClosed.push(new Promise((resolve) => s.once('close', () => resolve())));
    onFirstHead(s, () => {
      s.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
      let sent = 0;
      const pump = (): void => {
        while (!s.destroyed && sent < MAX_BYTES) {
          sent += CHUNK.length;
          if (!s.write(CHUNK)) {
            s.once('drain', pump);
            return;
          }
        }
      };
      pump();
    });
  });
});

after(async () => {
  await upstream?.close();
});

/** Upgrade; resolves with the socket (its head read, still flowing) and the request id. */
function upgrade(port: number): Promise<{ s: Socket; id: string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1' }, () => s.write(UPGRADE));
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    let text = '';
    const onData = (d: Buffer): void => {
      text += d.toString('latin1');
      if (!text.includes('\r\n\r\n')) return;
      s.off('data', onData);
      const id = /\r\nx-request-id: ([^\r]+)/i.exec(text)?.[1];
      if (!/^HTTP\/1\.1 101 /.test(text) || id === undefined) reject(new Error(`no 101: ${text.slice(0, 200)}`));
      else resolve({ s, id, closed });
    };
    s.on('data', onData);
    s.on('error', () => {});
    s.once('close', () => reject(new Error('closed before the 101')));
  });
}

function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}

describe('upgrade tunnel send timeout (listeners[].sendTimeout)', () => {
  test('seeded family: a client that stops reading is cut once its buffer stayed full for sendTimeout (not before), recorded endedBy client; a slow reader is kept', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (const front of ['node', 'net'] as GatewayFront[]) {
        for (let i = 0; i < 2; i++) {
          const sendMs = 300 + rand.int(1200);
          const what = `${front} front, sendTimeout ${sendMs} ms`;
          const gw = await startTestGateway({
            listeners: [{ address: '127.0.0.1', port: 0, front, sendTimeout: `${sendMs}ms` }],
            clusters: { up: { endpoints: [upstream.url], outlierDetection: { enabled: false }, timeouts: { tunnelIdle: '0s' } } },
            routes: [{ cluster: 'up', retry: { tries: 1 } }],
          } as never);
          try {
            // A slow reader: takes a chunk, pauses well under the timeout, for twice the timeout.
            const slow = await upgrade(gw.port);
            const until = performance.now() + 2 * sendMs;
            let slowBytes = 0;
            await new Promise<void>((resolve) => {
              const onData = (d: Buffer): void => {
                slowBytes += d.length;
                if (performance.now() >= until) {
                  slow.s.off('data', onData);
                  resolve();
                  return;
                }
                slow.s.pause();
                setTimeout(() => slow.s.resume(), Math.min(20, sendMs / 10)).unref(); // pacing, not synchronisation
              };
              slow.s.on('data', onData);
              slow.closed.then(() => resolve());
            });
            assert.ok(!slow.s.destroyed && !slow.s.readableEnded, `${what}: a client reading ${slowBytes} bytes slowly was cut`);
            slow.s.destroy();

            // A client that stops reading at its 101.
            const stopped = await upgrade(gw.port);
            const upClosed = upstreamClosed[upstreamClosed.length - 1]!;
            stopped.s.pause();
            const t0 = performance.now();
            const line = await gw.logFor(stopped.id, sendMs + 20_000);
            const waited = performance.now() - t0;
            assert.equal(line.endedBy, 'client', `${what}: ${JSON.stringify(line)}`);
            assert.equal(line.error, 'http_request_error', `${what}: ${JSON.stringify(line)}`);
            assert.match(String(line.detail), /did not read/, what);
            assert.ok(waited >= sendMs * 0.9 && (line.durationMs as number) >= sendMs, `${what}: cut after ${Math.round(waited)} ms`);
            await bounded(upClosed, 10_000, `${what}: the upstream connection's close`);
            stopped.s.destroy();
          } finally {
            await gw.close();
          }
        }
      }
    });
  });
});

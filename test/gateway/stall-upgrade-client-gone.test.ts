import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Socket, connect } from 'node:net';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { seededRandom } from '../helpers/seeded.js';
import { onHeads, startRawServer, type RawServer } from '../helpers/scripted-upstream.js';

/**
 * Stall hunt (session 13): an upgrade request whose client leaves before a 101. An ordinary
 * request whose client leaves aborts its try at once (Exchange.responseClosed →
 * Attempt.cancel; streaming.test: "upstream connection closed within 1 s"). UpgradeExchange's
 * 'close' handler only destroys `#upstream`, which exists after a 101: before it (waiting
 * for the answer) or during a non-switching answer's body (a 426 with a large body), the
 * upstream request is not aborted. During the body the client's socket is gone, so onData's
 * write returns false and waits for a 'drain' that never comes: the upstream is paused and
 * its connection held until the send timeout (60 s by default; for ever with sendTimeout
 * "0s"), or with `client: undici` (whose body timeout does not run while paused) for ever.
 * Waiting for the head, it is held until the response timeout (30 s by default).
 *
 * Here the upstream connection must close within CLOSE_WITHIN ms of the client leaving.
 */

const CLOSE_WITHIN = 3000;

const UPGRADE = (path: string): string =>
  `GET ${path} HTTP/1.1\r\nHost: up.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;

let upstream: RawServer;
/** Upstream connections by the id in their request path, with a promise of their close. */
const conns = new Map<string, { socket: Socket; closed: Promise<number> }>();
const arrivedWaiters = new Map<string, () => void>();

/** `/big/<id>/<n>`: a 426 of n bytes (written as fast as the gateway takes it); `/hang/<id>`: no answer. */
before(async () => {
  upstream = await startRawServer((s) => {
    const closed = new Promise<number>((r) => s.once('close', () => r(performance.now())));
    onHeads(s, (head) => {
      const path = /^GET (\S+)/.exec(head)?.[1] ?? '/';
      const id = path.split('/')[2] ?? '';
      conns.set(id, { socket: s, closed });
      arrivedWaiters.get(id)?.();
      const big = /^\/big\/[^/]+\/(\d+)$/.exec(path);
      if (big) {
        const n = Number(big[1]);
        s.write(`HTTP/1.1 426 Upgrade Required\r\nContent-Length: ${n}\r\n\r\n`);
        s.end(Buffer.alloc(n, 0x61));
      }
      // /hang: nothing
    });
  });
});

after(() => upstream.close());

function arrived(id: string, ms: number): Promise<void> {
  if (conns.has(id)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`the upgrade request ${id} did not reach the upstream within ${ms} ms`)), ms);
    arrivedWaiters.set(id, () => {
      clearTimeout(t);
      resolve();
    });
  });
}

async function upstreamClosedWithin(id: string, since: number, ctx: string): Promise<void> {
  const c = conns.get(id)!;
  const timer = new Promise<'open'>((r) => setTimeout(() => r('open'), CLOSE_WITHIN).unref());
  const r = await Promise.race([c.closed, timer]);
  if (r === 'open') {
    c.socket.destroy();
    assert.fail(`${ctx}: the upstream connection was still open ${Math.round(performance.now() - since)} ms after the client left`);
  }
}

let seq = 0;

for (const client of ['native', 'undici'] as const) {
  describe(`client ${client}: an upgrade request whose client leaves before a 101`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startTestGateway({
        clusters: { up: { endpoints: [upstream.url], client, outlierDetection: { enabled: false } } },
        routes: [{ cluster: 'up', retry: { tries: 1 } }],
      } as never);
    });
    // Bounded teardown: while the defect is there, the gateway's upstream connection stays paused
    // (it does not even see the upstream close: a paused socket reads no FIN), and its close waits
    // for it (native: until the 60 s send timeout; undici: for ever). Then those sockets are cut here.
    after(async () => {
      const closed = await Promise.race([gw.close().then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 5000).unref())]);
      if (closed) return;
      const port = upstream.port;
      const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
      for (const h of handles) if (h instanceof Socket && h.remotePort === port) h.destroy();
    });

    test('mid-way through a large non-switching answer: the upstream request is aborted (seeded sizes)', { timeout: 60_000 }, async () => {
      const rand = seededRandom();
      for (const n of [8 << 20, (8 << 20) + rand.int(24 << 20)]) {
        const id = `b${++seq}`;
        const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}), client ${client}: a 426 of ${n} bytes`;
        const s = connect(gw.port, '127.0.0.1', () => s.write(UPGRADE(`/big/${id}/${n}`)));
        s.on('error', () => {});
        let got = 0;
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`${ctx}: less than 1 MiB arrived within 5 s (${got})`)), 5000);
          s.on('data', (d: Buffer) => {
            got += d.length;
            if (got >= 1 << 20) {
              clearTimeout(t);
              resolve();
            }
          });
        });
        const t0 = performance.now();
        s.destroy();
        await upstreamClosedWithin(id, t0, `${ctx}, client gone after ${got} bytes`);
      }
    });

    test('while waiting for the answer: the upstream request is aborted', { timeout: 30_000 }, async () => {
      const id = `h${++seq}`;
      const s = connect(gw.port, '127.0.0.1', () => s.write(UPGRADE(`/hang/${id}`)));
      s.on('error', () => {});
      await arrived(id, 5000);
      await new Promise((r) => setTimeout(r, 100));
      const t0 = performance.now();
      s.destroy();
      await upstreamClosedWithin(id, t0, `client ${client}: no answer yet`);
    });
  });
}

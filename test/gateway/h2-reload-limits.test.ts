import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startRawServer, type RawServer } from '../helpers/scripted-upstream.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * A reload's listener limits reach HTTP/2 streams too (attacker's audit of the h2 front).
 * Found: the HTTP/2 side of a listener kept the `maxHeaderCount` and the client limits
 * (clientBodyTimeout, sendTimeout, …) it was built with, while HTTP/1.1 on the same listener
 * took the reloaded ones, and the reload summary named no restart: a limit tightened by a
 * reload did not hold for HTTP/2 clients.
 */

let upstream: RawServer;
let gw: TestGateway;

before(async () => {
  // Answers a head at once when it has no body; a head with one is answered once its body is in (never, for a body that stops).
  upstream = await startRawServer((socket: Socket) => {
    let bytes = '';
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => {
      bytes += d.toString('latin1');
      if (bytes.includes('\r\n\r\n') && !/content-length: [1-9]|transfer-encoding/i.test(bytes)) socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
    });
  });
});

after(async () => {
  await gw?.close();
  await upstream?.close();
});

const input = (listener: Record<string, unknown>) =>
  ({
    listeners: [{ address: '127.0.0.1', port: 0, http2: { h2c: true }, ...listener }],
    clusters: { up: { endpoints: [upstream.url], outlierDetection: { enabled: false } } },
    routes: [{ cluster: 'up', retry: { tries: 1 } }],
  }) as never;

function ask(s: ClientHttp2Session, headers: Record<string, string>, body?: string): Promise<number | string> {
  return new Promise((resolve) => {
    const q = s.request({ ':path': '/', ...headers });
    q.on('response', (h) => resolve(Number(h[':status'])));
    q.on('error', (e: Error) => resolve(e.message));
    if (body === undefined) q.end();
    else q.write(body); // and never ends: a body that stops
  });
}

describe('HTTP/2 after a reload of the listener\'s limits', () => {
  test('seeded: a maxHeaderCount lowered by a reload refuses HTTP/2 requests over it (431); a clientBodyTimeout lowered to 1s ends a stopped body with 408', { timeout: 60_000 }, async () => {
    await seededRun('reloaded limits', async (rand) => {
      gw = await startTestGateway(input({}));
      const lowered = between(rand, 10, 60);
      const over = between(rand, lowered + 1, 95);
      const fields = Object.fromEntries(Array.from({ length: over - 1 }, (_, i) => [`x-f${i}`, 'v'])); // + Host
      const s1 = h2connect(gw.url);
      s1.on('error', () => {});
      assert.equal(await ask(s1, fields), 200, `${over} fields before the reload`);
      s1.close();
      await gw.reload(input({ maxHeaderCount: lowered, clientBodyTimeout: '1s' }));
      // A new connection after the reload, HTTP/2 and HTTP/1.1 alike.
      const s2 = h2connect(gw.url);
      s2.on('error', () => {});
      try {
        const t0 = performance.now();
        const status = await ask(s2, { ':method': 'POST', 'content-length': '10' }, 'abc');
        assert.equal(status, 408, 'a stopped body after clientBodyTimeout was reloaded to 1s');
        assert.ok(performance.now() - t0 < 15_000, `the 408 came ${Math.round(performance.now() - t0)} ms after the body stopped (the old clientBodyTimeout is 30 s)`);
        assert.equal(await ask(s2, fields), 431, `${over} fields over HTTP/2 after maxHeaderCount was reloaded to ${lowered}`);
      } finally {
        s2.close();
      }
    });
  });
});

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { startLab, type Lab } from '../../src/lab/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { EARLY_MS, GUARD_MS } from '../helpers/time-bounds.js';

/**
 * The listener's keepAliveTimeout holds for HTTP/2 sessions as it does for HTTP/1.1
 * connections: a session with no stream open is closed with GOAWAY NO_ERROR once it has been
 * quiet that long, and never while a stream is open (a slow upstream is bounded by the
 * request's own timers). Found: a no-op 'timeout' handler kept idle sessions open for ever.
 * A seeded family over keep-alive timeouts and the number of requests before the quiet.
 */

let lab: Lab;
const gateways: TestGateway[] = [];

before(async () => {
  lab = await startLab();
});
after(async () => {
  for (const g of gateways) await g.close();
  await lab?.close();
});

async function gatewayWith(keepAlive: number): Promise<TestGateway> {
  const g = await startTestGateway({
    listeners: [{ address: '127.0.0.1', port: 0, keepAliveTimeout: `${keepAlive}ms`, http2: { h2c: true } }],
    clusters: { lab: { endpoints: [lab.url] } },
    routes: [{ cluster: 'lab' }],
  });
  gateways.push(g);
  return g;
}

function get(s: ClientHttp2Session, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = s.request({ ':path': path });
    let status = 0;
    req.on('response', (h) => (status = Number(h[':status'])));
    req.resume();
    req.on('end', () => resolve(status));
    req.on('error', reject);
    req.end();
  });
}

/** The session's end as the client sees it: the GOAWAY's code (undefined: none came) and when it closed. */
function ended(s: ClientHttp2Session): Promise<{ goaway: number | undefined; at: number }> {
  let goaway: number | undefined;
  s.on('goaway', (code: number) => (goaway = code));
  s.on('error', () => {});
  return once(s, 'close').then(() => ({ goaway, at: performance.now() }));
}

describe('HTTP/2 sessions and the listener keepAliveTimeout', () => {
  test('seeded: an idle session is closed with GOAWAY NO_ERROR after keepAliveTimeout, not before', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let round = 0; round < 4; round++) {
        const keepAlive = 300 + rand.int(1200);
        const g = await gatewayWith(keepAlive);
        const s = h2connect(g.url);
        const end = ended(s);
        const n = 1 + rand.int(4);
        for (let i = 0; i < n - 1; i++) assert.equal(await get(s, '/ok'), 200);
        // The quiet is measured from before the last request is sent: the session's idle timer
        // is restarted by that request's frames and the answer's, so it cannot start earlier,
        // and the close cannot come before quietFrom + keepAlive. (It was measured from the
        // client's 'end' of the answer, which a loaded machine may run well after the gateway's
        // last frame started the timer: seed 1286353457 saw the close less than 0.9 × keepAlive
        // after it, a false "early".) A close seen later only lengthens the measure, so the
        // bound needs no slack beyond the clocks' whole milliseconds (EARLY_MS); /ok answers at
        // once, so this start is as close to the last answer as the old one was.
        const quietFrom = performance.now();
        assert.equal(await get(s, '/ok'), 200);
        // Bounded: the close must come; GUARD_MS is far beyond any keepAlive here, a failure guard.
        const timer = setTimeout(() => s.destroy(new Error('the gateway never closed the idle session')), GUARD_MS);
        const e = await end;
        clearTimeout(timer);
        assert.equal(e.goaway, 0, `round ${round}: GOAWAY NO_ERROR (keepAlive ${keepAlive} ms)`);
        assert.ok(e.at - quietFrom >= keepAlive - EARLY_MS, `round ${round}: closed ${Math.round(e.at - quietFrom)} ms after the last request was sent, keepAlive ${keepAlive} ms`);
      }
    });
  });

  test('a stream open longer than keepAliveTimeout is not cut; the session closes once idle', { timeout: 60_000 }, async () => {
    const g = await gatewayWith(300);
    const s = h2connect(g.url);
    const end = ended(s);
    // The upstream answers after 1.5 s: five keep-alive timeouts with no frame on the session.
    assert.equal(await get(s, '/slow?ms=1500'), 200);
    const timer = setTimeout(() => s.destroy(new Error('the gateway never closed the idle session')), GUARD_MS);
    const e = await end;
    clearTimeout(timer);
    assert.equal(e.goaway, 0);
  });
});

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { startLab, type Lab } from '../../src/lab/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * Issue 14, finding 3 on the reverse face: connection floods. Before, the reverse listener
 * had no cap at all and no per-address limit: one address could hold every connection.
 */

const open: Socket[] = [];
after(() => open.forEach((s) => s.destroy()));

async function dialFrom(port: number, localAddress: string): Promise<Socket> {
  const s = connect({ host: '127.0.0.1', port, localAddress });
  s.on('error', () => {});
  await once(s, 'connect');
  open.push(s);
  return s;
}

/** Everything the gateway writes on `s` until it closes (bounded in time). */
function readAll(s: Socket, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    const t = setTimeout(() => resolve(out), timeoutMs);
    s.on('data', (c: Buffer) => (out += c.toString('latin1')));
    s.once('close', () => {
      clearTimeout(t);
      resolve(out);
    });
  });
}

async function get(port: number, localAddress = '127.0.0.1'): Promise<string> {
  const s = await dialFrom(port, localAddress);
  s.write('GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  return readAll(s);
}

describe('reverse listener: connection caps answered by name', () => {
  let up: Lab;
  const gws: TestGateway[] = [];
  after(async () => {
    for (const g of gws) await g.close();
    await up?.close();
  });

  test('seeded family: past the per-address cap and past the listener cap a new connection gets 503 connection_limit_reached with Retry-After, other addresses are served', { timeout: 60_000 }, async () => {
    up = await startLab();
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let run = 0; run < 3; run++) {
        const perSource = 2 + rand.int(6);
        const cap = perSource + 2 + rand.int(6);
        const gw = await startTestGateway({
          listeners: [{ address: '127.0.0.1', port: 0, maxConnections: cap, maxConnectionsPerSource: perSource }],
          clusters: { c: { endpoints: [up.url] } },
          routes: [{ cluster: 'c' }],
        });
        gws.push(gw);
        const ctx = `run ${run}: perSource ${perSource}, cap ${cap}`;
        // One address fills its share with idle connections: its next one is refused by name.
        const idle: Socket[] = [];
        for (let i = 0; i < perSource; i++) idle.push(await dialFrom(gw.port, '127.0.0.2'));
        const over = await get(gw.port, '127.0.0.2');
        assert.match(over, /^HTTP\/1\.1 503 /, `${ctx}: ${over.slice(0, 80)}`);
        assert.match(over, /proxy-status: [^\r]*error=connection_limit_reached/i, ctx);
        assert.match(over, /retry-after: 1/i, ctx);
        // Another address is served meanwhile.
        assert.match(await get(gw.port, '127.0.0.1'), /^HTTP\/1\.1 200 /, ctx);
        // Fill the listener from other addresses: the next connection from anywhere gets 503.
        for (let i = perSource, a = 3; i < cap; i++, a++) idle.push(await dialFrom(gw.port, `127.0.0.${a}`));
        const full = await get(gw.port, '127.0.0.1');
        assert.match(full, /^HTTP\/1\.1 503 /, `${ctx}: at the cap: ${full.slice(0, 80)}`);
        assert.match(full, /connection_limit_reached/, ctx);
        // Connections closing give their slots back.
        for (const s of idle) s.destroy();
        await new Promise((r) => setImmediate(r));
        let served = '';
        for (let tries = 0; tries < 50 && !served.startsWith('HTTP/1.1 200'); tries++) served = await get(gw.port, '127.0.0.2');
        assert.match(served, /^HTTP\/1\.1 200 /, `${ctx}: after the idle ones closed`);
        const stats = gw.gw.connectionStats()[0]!;
        assert.ok(stats.refused >= 2, `${ctx}: refusals counted (${JSON.stringify(stats)})`);
      }
    });
  });

  test('under pressure a new connection gets less time for its first head (408 before requestHeaderTimeout)', { timeout: 30_000 }, async () => {
    up ??= await startLab();
    const gw = await startTestGateway({
      listeners: [{ address: '127.0.0.1', port: 0, maxConnections: 10, maxConnectionsPerSource: 0, requestHeaderTimeout: '20s', handshakeFloor: '300ms' }],
      clusters: { c: { endpoints: [up.url] } },
      routes: [{ cluster: 'c' }],
    });
    gws.push(gw);
    for (let i = 0; i < 8; i++) await dialFrom(gw.port, '127.0.0.1');
    // The 9th is admitted at load 0.9: max(300 ms, 20 s × 2 × 0.1 = 4 s) = 4 s, not 20 s.
    const s = await dialFrom(gw.port, '127.0.0.1');
    const t0 = performance.now();
    s.write('GET /ok HTTP/1.1\r\nHost: x\r\n');
    const out = await readAll(s, 8000);
    const ms = performance.now() - t0;
    assert.match(out, /^HTTP\/1\.1 408 /, out.slice(0, 80));
    assert.ok(ms > 3000 && ms < 6000, `cut after ${Math.round(ms)} ms (expected about 4 s)`);
  });
});

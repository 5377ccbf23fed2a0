import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { between, seededRun } from '../helpers/seeded.js';
import { GUARD_MS } from '../helpers/time-bounds.js';
import { closed, echoServer, holdingOrigin, readAll } from './drain-rig.js';
import { basic, dial, readUntil, startTestProxy } from './helpers.js';

/**
 * How the forward proxy's close() waits (forward-proxy.ts `drain`): for what is in flight until
 * the drain timeout, then for the records of what it cut. Both waits are woken by the meter
 * (`Meter.settled`: its open sessions reached 0) or by their deadline, and a keep-alive
 * connection whose answer finishes during the drain is closed as it goes idle (its response's
 * 'finish'), not found by a loop that looks again every few milliseconds.
 */

/**
 * A record that comes late after the cut: close() resolves only once it came, and burns no CPU
 * meanwhile. Before, the wait for the cut's records turned the event loop with `setImmediate`
 * until `meter.live` reached 0 (up to 1 s): a core busy for as long as the record took.
 *
 * The late record is a meter session the test opens on the proxy's own meter (the public
 * `ForwardProxy.meter`) and finishes `lateMs` after the cut closed the real client connection
 * of a GET held by its origin: it stands for a request whose record comes from an event later
 * than the sockets' 'close' (the drain cannot tell them apart: it counts open sessions).
 *
 * The CPU bound: process.cpuUsage from the cut (the client's connection closed) to close()'s
 * end, against that wall time (≥ `lateMs`, 300-800 ms). Waiting on events, the process does
 * next to nothing then (the cut's records, a timer); spinning, it used 40 % of a core or more
 * (measured here on a loaded 2-core machine: 329 ms of CPU in 977 ms). The bound, a tenth of
 * the wall time plus 20 ms, is well above the first and below the second.
 */
async function lateRecordCase(drainMs: number, lateMs: number): Promise<void> {
  const origin = await holdingOrigin();
  const p = await startTestProxy({ shutdown: { drainTimeout: `${drainMs}ms` }, timeouts: { clientKeepAlive: '60s', handshake: '60s' } });
  const client = await dial(p.port);
  client.on('error', () => {});
  let closing: Promise<void> | undefined;
  let finishLate: NodeJS.Timeout | undefined;
  try {
    client.write(`GET http://127.0.0.1:${origin.port}/held HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
    await origin.arrived();
    const late = p.proxy.meter.open({ protocol: 'http', requestId: 'late-record', user: null });
    let finishedAt = -1;
    const t0 = performance.now();
    closing = p.proxy.close();
    let resolvedAt = -1;
    void closing.then(() => (resolvedAt = performance.now()));
    await closed(client); // the cut, at the drain timeout
    const cpu0 = process.cpuUsage();
    const t1 = performance.now();
    finishLate = setTimeout(() => {
      finishedAt = performance.now();
      late.finish({ status: 200, method: 'GET' });
    }, lateMs);
    await closing;
    const cpu = process.cpuUsage(cpu0);
    const wall = performance.now() - t1;
    const cpuMs = (cpu.user + cpu.system) / 1000;
    assert.ok(finishedAt > 0 && resolvedAt >= finishedAt, `close() resolved only after the late record (finished at ${Math.round(finishedAt - t0)} ms, resolved at ${Math.round(resolvedAt - t0)} ms)`);
    assert.equal(p.proxy.meter.live, 0, 'nothing left open');
    assert.ok(cpuMs < wall / 10 + 20, `close() used ${Math.round(cpuMs)} ms of CPU in the ${Math.round(wall)} ms from the cut to its end (waiting ${lateMs} ms for a late record after a ${drainMs} ms drain)`);
  } finally {
    clearTimeout(finishLate);
    client.destroy();
    await (closing ?? p.proxy.close(0));
    await origin.close();
  }
}

/**
 * A keep-alive connection whose answer finishes during the drain is closed then, while another
 * request or tunnel is still in flight (the drain goes on): the proxy does not keep an idle
 * connection until the drain ends. A tunnel keeps the drain going until the test ends it.
 */
async function goesIdleCase(): Promise<void> {
  const origin = await holdingOrigin();
  const echo = await echoServer();
  const p = await startTestProxy({ shutdown: { drainTimeout: `${GUARD_MS}ms` }, timeouts: { clientKeepAlive: '60s', handshake: '60s' } });
  const a = await dial(p.port);
  const b = await dial(p.port);
  a.on('error', () => {});
  b.on('error', () => {});
  let closing: Promise<void> | undefined;
  try {
    const answer = readAll(a);
    a.write(`GET http://127.0.0.1:${origin.port}/held HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
    await origin.arrived();
    b.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
    await readUntil(b, (x) => x.includes('\r\n\r\n'), GUARD_MS);
    let resolved = false;
    closing = p.proxy.close();
    void closing.then(() => (resolved = true));
    origin.release('the answer');
    const got = (await answer).toString('latin1'); // resolves when the proxy closed the connection
    assert.match(got, /^HTTP\/1\.1 200 [^]*\r\n\r\nthe answer$/, 'the request in flight got its full answer');
    assert.equal(resolved, false, 'the drain goes on for the tunnel');
    assert.equal(b.destroyed, false, 'the tunnel is still open');
    echo.end();
    await closing;
  } finally {
    a.destroy();
    b.destroy();
    await (closing ?? p.proxy.close(0));
    await origin.close();
    await echo.close();
  }
}

describe('forward proxy: how close() waits', () => {
  it('waits for the records of what it cut on the meter, not by turning the event loop (seeded: drain timeout, how late the record comes)', { timeout: 300_000 }, async () => {
    await seededRun('forward drain late record', async (rand) => {
      for (let i = 0; i < 3; i++) {
        const drainMs = between(rand, 100, 200);
        const lateMs = between(rand, 300, 800);
        try {
          await lateRecordCase(drainMs, lateMs);
        } catch (err) {
          (err as Error).message = `drain ${drainMs} ms, record ${lateMs} ms after the cut: ${(err as Error).message}`;
          throw err;
        }
      }
    });
  });

  it('closes a keep-alive connection as its answer finishes during the drain, while a tunnel keeps the drain going', { timeout: 120_000 }, async () => {
    await goesIdleCase();
  });
});

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { seededRandom } from '../helpers/seeded.js';
import { GUARD_MS, LATE_MS } from '../helpers/time-bounds.js';
import { accessLines, linesUntil, startTestProxy, type TestProxy } from './helpers.js';

/**
 * Stall hunt (forward proxy), the other side of a stall: a tunnel whose destination sent
 * its last bytes and closed, to a client that reads them slowly (but does read: it is
 * never blocked for the send timeout), for seconds past the destination's close. After one
 * side closes, the tunnel gives the other LINGER_MS (1 s) to flush, then destroys it: had
 * bytes still been queued in the proxy for the client then, they would be lost behind a
 * clean FIN. Probed and ruled out: the tunnel writes to the client only while its buffer
 * takes them (the destination is paused otherwise, so its 'end' comes after a 'drain'), so
 * what is owed at the close is in the kernel, which still delivers it after the destroy.
 * Kept as a regression guard: the case must really outlive the linger (asserted).
 */

/**
 * The client reads all the time, but a loaded machine can hold its reading timer back for
 * seconds; the send timeout is past that (it was 3 s), so the client is never cut for not
 * reading. The property here is the linger (1 s) after the destination's close.
 */
const SEND_MS = LATE_MS;

let origin: Server;
let originPort: number;
/** performance.now() when the destination's last connection closed. */
let originClosedAt = 0;
/** Bytes the destination sends on a tunnel before it closes: the first 4 bytes of the tunnel's data say how many. */
before(async () => {
  origin = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.once('close', () => (originClosedAt = performance.now()));
    s.once('data', (d: Buffer) => {
      const n = d.readUInt32BE(0);
      s.end(Buffer.alloc(n, 0x62));
    });
  });
  origin.listen(0, '127.0.0.1');
  await once(origin, 'listening');
  originPort = (origin.address() as AddressInfo).port;
});
after(() => origin.close());

/**
 * Read `s` at about `rate` bytes a second until it ends; the byte count, bounded by `limitMs`.
 * Paced by the clock, not by the count of ticks: each 10 ms tick reads what the rate allows
 * since the start, less what was read (it read `rate / 100` bytes a tick, so a loaded machine
 * that ran the ticks late read slower than `rate` and overran the bound).
 */
function slowRead(s: Socket, rate: number, limitMs: number): Promise<{ bytes: number; ended: boolean }> {
  return new Promise((resolve) => {
    let bytes = 0;
    const started = performance.now();
    const timer = setInterval(() => {
      let left = Math.max(1, Math.round(((performance.now() - started) * rate) / 1000) - bytes);
      while (left > 0) {
        const c = s.read(Math.min(left, s.readableLength)) as Buffer | null;
        if (c === null || c.length === 0) break;
        bytes += c.length;
        left -= c.length;
      }
      if (s.readableLength === 0) s.read(0); // ask for more from the kernel
    }, 10);
    const stop = setTimeout(() => finish(false), limitMs);
    const finish = (ended: boolean): void => {
      clearInterval(timer);
      clearTimeout(stop);
      resolve({ bytes, ended });
    };
    s.once('end', () => {
      // What is still buffered came before the FIN.
      for (let c = s.read() as Buffer | null; c !== null; c = s.read() as Buffer | null) bytes += c.length;
      finish(true);
    });
    s.once('close', () => finish(true));
  });
}

describe('a tunnel whose destination closed, to a client that reads the rest slowly', () => {
  let p: TestProxy;
  before(async () => {
    p = await startTestProxy({ auth: { required: false }, timeouts: { send: `${SEND_MS}ms`, tunnelIdle: `${3 * LATE_MS}ms` } });
  });
  after(() => p.close());

  it('the client gets every byte the destination sent, however long past the destination\'s close it takes (seeded sizes and read rates)', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    const failures: string[] = [];
    let longestTail = 0;
    for (let i = 0; i < 3; i++) {
      const n = 1_500_000 + rand.int(2_000_000);
      const rate = 800_000 + rand.int(700_000); // bytes/s: the tail outlives the destination's close by seconds
      const socks = rand.next() < 0.5;
      const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}), case ${i}: ${socks ? 'SOCKS5' : 'CONNECT'}, ${n} bytes read at ${rate} B/s`;
      const s = connect({ port: p.port, host: '127.0.0.1' });
      s.on('error', () => {});
      await once(s, 'connect');
      const port = Buffer.alloc(2);
      port.writeUInt16BE(originPort);
      const head = socks ? Buffer.concat([Buffer.from([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1]), port]) : Buffer.from(`CONNECT 127.0.0.1:${originPort} HTTP/1.1\r\nHost: x\r\n\r\n`);
      s.write(head);
      // The reply first (SOCKS5: 2 + 10 bytes; CONNECT: a head).
      const reply = await new Promise<Buffer>((resolve) => {
        let b = Buffer.alloc(0);
        const onData = (d: Buffer): void => {
          b = Buffer.concat([b, d]);
          const end = socks ? (b.length >= 12 ? 12 : -1) : b.indexOf('\r\n\r\n') < 0 ? -1 : b.indexOf('\r\n\r\n') + 4;
          if (end >= 0) {
            s.off('data', onData);
            s.pause();
            if (b.length > end) s.unshift(b.subarray(end));
            resolve(b.subarray(0, end));
          }
        };
        s.on('data', onData);
      });
      assert.ok(socks ? reply[1] === 0 : /^HTTP\/1\.1 200/.test(reply.toString('latin1')), `${ctx}: tunnel not opened`);
      const ask = Buffer.alloc(4);
      ask.writeUInt32BE(n);
      s.write(ask);
      const t0 = performance.now();
      const { bytes, ended } = await slowRead(s, rate, (n / rate) * 1000 + GUARD_MS);
      const ms = Math.round(performance.now() - t0);
      const tail = Math.round(performance.now() - originClosedAt);
      longestTail = Math.max(longestTail, tail);
      s.destroy();
      if (bytes !== n) failures.push(`${ctx}: got ${bytes} of ${n} bytes (${n - bytes} lost) in ${ms} ms, the last ${tail} ms after the destination closed, ${ended ? 'then the tunnel closed as if complete' : 'the tunnel still open'}`);
    }
    assert.deepEqual(failures, [], failures.join('\n'));
    assert.ok(longestTail > 1500, `seed ${rand.seed}: no case read past the linger time (longest tail after the destination's close: ${longestTail} ms)`);
    assert.ok(await linesUntil(p.lines, () => accessLines(p.lines).length >= 3));
  });
});

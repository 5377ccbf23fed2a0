import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { between, seededRun } from '../helpers/seeded.js';
import { USER, PASSWORD, startPoolProxy } from '../egress/helpers.js';
import { accessLine, waitFor } from './helpers.js';
import { associate, udpClient, udpFrame } from '../helpers/socks-udp.js';

/**
 * A byte quota ends a SOCKS5 UDP association as it ends a CONNECT tunnel: checked before each
 * datagram is counted, in either direction, so the datagram that crosses the limit goes through
 * and the next one (either way) is dropped and ends the association; the record says endedBy
 * "quota" and carries `quota`, and its bytes are what was relayed. Probe of session 38: each
 * direction checked only its own quota (a user over the down quota kept sending up, a user
 * over the up quota kept receiving), the association went on, and its record had no `quota`.
 * Seeded: the direction limited, the limit, and the payload sizes. Loopback only: an echo on
 * 127.0.0.1; the rules allow 127.0.0.0/8 only.
 */

const T0 = Date.parse('2026-03-10T10:00:00.100Z');
const HEADER = 10;

async function echo(): Promise<{ sock: UdpSocket; port: number; seen: number[] }> {
  const sock = createSocket('udp4');
  const seen: number[] = [];
  sock.on('message', (m, r) => {
    seen.push(m.length);
    sock.send(m, r.port, r.address);
  });
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  return { sock, port: sock.address().port, seen };
}

describe('SOCKS5 UDP byte quota', () => {
  it('a quota over in either direction ends the association at the next datagram, either way; the record carries quota (seeded sizes)', { timeout: 120_000 }, async () => {
    await seededRun('socks5-udp-quota', async (rand) => {
      for (let round = 0; round < 4; round++) {
        const dir = rand() < 0.5 ? 'up' : 'down';
        const limit = between(rand, 2_000, 12_000);
        const sizes = Array.from({ length: 200 }, () => between(rand, 1, 1_400));
        const what = `round ${round}: ${dir} quota ${limit}, sizes ${sizes.slice(0, 12).join(',')}…`;
        const e = await echo();
        const p = await startPoolProxy(
          { plans: { q: { bytesPerDay: { [dir]: limit } } }, rules: { allowPrivate: true, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }] } },
          { alice: { plan: 'q' } },
          { now: () => T0 },
        );
        const c = await udpClient();
        try {
          const { socket, remoteHost } = await associate(p.port, { user: USER, password: PASSWORD }, c.port);
          const closed = once(socket, 'close');
          let total = 0;
          let k = 0;
          // Datagram by datagram (each echo in before the next), until one crosses the limit.
          while (total < limit && k < sizes.length) {
            const n = sizes[k]!;
            c.sock.send(udpFrame('127.0.0.1', e.port, Buffer.alloc(n, 0x61 + (k % 26))), remoteHost!.port, remoteHost!.host);
            k++;
            if (dir === 'down' || total + n < limit) {
              assert.ok(await waitFor(() => c.inbox.length === k, 5000), `${what}: echo ${k} not relayed`);
            }
            total += n;
          }
          assert.ok(total >= limit, what);
          if (dir === 'down') {
            // Over the down quota: the next datagram up is dropped and ends the association.
            c.sock.send(udpFrame('127.0.0.1', e.port, 'after'), remoteHost!.port, remoteHost!.host);
          }
          // Over the up quota: the echo of the datagram that crossed it (down) ends it.
          const ended = await Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000).unref())]);
          assert.ok(ended, `${what}: the association was not ended by the quota`);
          assert.equal(e.seen.length, k, `${what}: datagrams that reached the destination`);
          const delivered = dir === 'down' ? k : k - 1;
          assert.equal(c.inbox.length, delivered, `${what}: echoes the client received`);
          const line = await accessLine(p.lines, (l) => l.protocol === 'socks5-udp', what);
          const up = sizes.slice(0, k).reduce((s, n) => s + n, 0);
          const down = c.inbox.reduce((s, m) => s + m.length - HEADER, 0);
          assert.equal(line.endedBy, 'quota', `${what}: ${JSON.stringify(line)}`);
          assert.equal(typeof line.quota, 'string', `${what}: ${JSON.stringify(line)}`);
          assert.match(line.quota as string, new RegExp(dir), what);
          assert.equal(line.bytesUp, up, what);
          assert.equal(line.bytesDown, down, what);
          assert.equal(line.datagramsDropped, 1, what);
        } finally {
          c.sock.close();
          e.sock.close();
          await p.close();
        }
      }
    });
  });
});

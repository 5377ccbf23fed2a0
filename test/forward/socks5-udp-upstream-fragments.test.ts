import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SocksClient } from 'socks';
import { between, seededRun } from '../helpers/seeded.js';
import { fakeUpstream } from '../helpers/socks5-udp-upstream.js';
import { USER, PASSWORD, startPoolProxy } from '../egress/helpers.js';
import { accessLine, waitFor } from './helpers.js';
import { associate, udpClient, udpFrame } from '../helpers/socks-udp.js';

/**
 * The relay-to-session hookup of fragments an upstream SOCKS5 relay sends (UdpOpenOptions.onDropped,
 * egress/socks5-udp-dialer.ts → the association's record): review of session 37 counted them in
 * the egress's own test only, and the association's side was covered by types alone. Here a
 * client's association leaves through a pool whose exit is a test SOCKS5 upstream on loopback;
 * its relay answers with a seeded number of fragments (FRAG ≠ 0, RFC 1928 §7: no reassembly,
 * dropped), then a whole datagram; the association's record counts each fragment in
 * `datagramsDropped` and the client gets only the whole one. Loopback only; the rules allow
 * 127.0.0.0/8 only.
 */

describe('SOCKS5 UDP through an upstream SOCKS5 relay that sends fragments', () => {
  it('the association record counts each fragment the upstream relay sent as dropped (seeded count and FRAG values)', { timeout: 60_000 }, async () => {
    await seededRun('socks5-udp-upstream-fragments', async (rand) => {
      for (let round = 0; round < 3; round++) {
        const up = await fakeUpstream();
        const p = await startPoolProxy({
          egress: { pools: { up: { proxies: [`socks5://127.0.0.1:${up.port}`] } }, defaultPool: 'up' },
          rules: { allowPrivate: true, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }] },
        });
        const c = await udpClient();
        const n = between(rand, 1, 12);
        const frags: number[] = [];
        try {
          const { socket, remoteHost } = await associate(p.port, { user: USER, password: PASSWORD }, c.port);
          // The destination the client names; the test upstream's relay answers for it (nothing reaches port 9).
          c.sock.send(udpFrame('127.0.0.1', 9, 'hello'), remoteHost!.port, remoteHost!.host);
          const egressPort = await up.clientPort;
          const send = (m: Buffer): Promise<void> => new Promise((r, j) => up.relay.send(m, egressPort, '127.0.0.1', (err) => (err ? j(err) : r())));
          for (let i = 0; i < n; i++) {
            const f = SocksClient.createUDPFrame({ remoteHost: { host: '127.0.0.1', port: 9 }, data: Buffer.from(`fragment ${i}`) });
            f[2] = between(rand, 1, 255);
            frags.push(f[2]);
            await send(f);
          }
          // Sent last from the same socket: once it is in, every fragment was read before it.
          await send(SocksClient.createUDPFrame({ remoteHost: { host: '127.0.0.1', port: 9 }, data: Buffer.from('whole') }));
          assert.ok(await waitFor(() => c.inbox.length >= 1, 5000), `round ${round}: the whole datagram did not reach the client`);
          assert.deepEqual(c.inbox.map((m) => m.subarray(10).toString()), ['whole'], `round ${round}`);
          socket.destroy();
          const line = await accessLine(p.lines, (l) => l.protocol === 'socks5-udp', `round ${round}: the association record`);
          assert.equal(line.datagramsDropped, n, `round ${round}: FRAG ${frags.join(',')}: ${JSON.stringify(line)}`);
          assert.equal(line.datagramsDown, 1, `round ${round}`);
        } finally {
          c.sock.close();
          for (const s of up.controls) s.destroy();
          up.relay.close();
          up.server.close();
          await p.close();
        }
      }
    });
  });
});

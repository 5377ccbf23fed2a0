import assert from 'node:assert/strict';
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { SocksClient } from 'socks';
import { tableResolver } from '../forward/helpers.js';
import { bounded } from '../forward/front-clients.js';
import { associate, udpClient, udpFrame } from '../helpers/socks-udp.js';
import { between, seededRun } from '../helpers/seeded.js';
import { PASSWORD, USER, startPoolProxy } from './helpers.js';

/**
 * A SOCKS5 UDP association accepts an answer on an egress socket only from a destination
 * the client sent to through that socket. Review finding: the allowed peers were one set for
 * the association, shared by the egresses of its pools (the route's, and one per pool a
 * routing rule sends some hosts to): a destination the client reached through one pool could
 * send through another pool's socket, from wherever it learned that socket's address, and be
 * relayed to the client. Seeded: which pool is the association's own (a default pool or
 * direct), which pool a rule sends the other host through, and whether the stray datagram
 * goes out before or after the legitimate answers.
 */

const POOL_ADDRESS: Record<string, string> = { resi: '127.0.0.2', dc: '127.0.0.3', def: '127.0.0.4' };

/** A UDP peer on 127.0.0.1 that keeps where each datagram came from. */
async function peer(): Promise<{ sock: UdpSocket; port: number; next(): Promise<RemoteInfo> }> {
  const sock = createSocket('udp4');
  const waiting: Array<(r: RemoteInfo) => void> = [];
  const seen: RemoteInfo[] = [];
  sock.on('message', (_m, r) => {
    const w = waiting.shift();
    if (w) w(r);
    else seen.push(r);
  });
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  return { sock, port: sock.address().port, next: () => (seen.length ? Promise.resolve(seen.shift()!) : new Promise((r) => waiting.push(r))) };
}

/** The next datagram `sock` receives, as the SOCKS5 frame's data. */
function nextFrame(sock: UdpSocket): Promise<string> {
  return new Promise((resolve) => sock.once('message', (m: Buffer) => resolve(SocksClient.parseUDPFrame(m).data.toString())));
}

describe('SOCKS5 UDP: allowed peers per egress socket', () => {
  it('a destination reached through one pool\'s egress is not relayed when it sends to another egress of the association (seeded)', { timeout: 60_000 }, async () => {
    await seededRun('udp-peers-per-egress', async (rand) => {
      for (let round = 0; round < 4; round++) {
        const defaultPool = rand() < 0.5 ? 'def' : undefined;
        const other = rand() < 0.5 ? 'resi' : 'dc';
        const strayFirst = rand() < 0.5;
        const what = `round ${round}: own egress ${defaultPool ?? 'direct'}, routed.test through ${other}, stray ${strayFirst ? 'before' : 'after'} the answers`;
        const p = await startPoolProxy(
          {
            egress: {
              pools: { resi: { addresses: [POOL_ADDRESS.resi!] }, dc: { addresses: [POOL_ADDRESS.dc!] }, def: { addresses: [POOL_ADDRESS.def!] } },
              routing: [{ hosts: ['routed.test'], pool: other }],
              ...(defaultPool ? { defaultPool } : {}),
            },
          },
          {},
          { resolver: tableResolver({ 'routed.test': ['127.0.0.1'], 'plain.test': ['127.0.0.1'] }) },
        );
        // A: reached through the routed pool's egress. B: through the association's own egress.
        const a = await peer();
        const b = await peer();
        const c = await udpClient();
        let control: { destroy(): void } | undefined;
        try {
          const { socket, remoteHost } = await associate(p.port, { user: USER, password: PASSWORD }, c.port);
          control = socket;
          const send = (host: string, port: number, data: string): void => void c.sock.send(udpFrame(host, port, data), remoteHost!.port, remoteHost!.host);
          send('routed.test', a.port, `${round}-to-a`);
          const viaOther = await bounded(a.next(), 3000, `${what}: A's datagram`);
          assert.equal(viaOther.address, POOL_ADDRESS[other], `${what}: A reached through ${other}`);
          send('plain.test', b.port, `${round}-to-b`);
          const viaOwn = await bounded(b.next(), 3000, `${what}: B's datagram`);
          assert.notEqual(`${viaOwn.address}:${viaOwn.port}`, `${viaOther.address}:${viaOther.port}`, `${what}: two egress sockets`);
          const n = 1 + between(rand, 0, 2);
          // The stray: A sends to the association's own egress (whose address B learned), where the client never sent to A.
          const stray = (): void => void a.sock.send(`${round}-stray`, viaOwn.port, viaOwn.address);
          if (strayFirst) stray();
          // Legitimate answers, each waited for: A through its own egress, B through the association's.
          for (let i = 0; i < n; i++) {
            const got = nextFrame(c.sock);
            a.sock.send(`${round}-a-${i}`, viaOther.port, viaOther.address);
            assert.equal(await bounded(got, 3000, `${what}: A's answer ${i}`), `${round}-a-${i}`, `${what}: A's answer ${i} (a stray relayed before it?)`);
          }
          if (!strayFirst) stray();
          // The barrier: B answers on the socket the stray went to, after it (one receive queue,
          // read in order): the next frame the client gets must be B's, not the stray.
          const barrier = nextFrame(c.sock);
          b.sock.send(`${round}-b`, viaOwn.port, viaOwn.address);
          assert.equal(await bounded(barrier, 3000, `${what}: B's answer`), `${round}-b`, `${what}: a datagram from A, sent to an egress the client never sent A through, was relayed`);
        } finally {
          control?.destroy();
          c.sock.close();
          a.sock.close();
          b.sock.close();
          await p.close();
        }
      }
    });
  });
});

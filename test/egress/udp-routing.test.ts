import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { SocksClient } from 'socks';
import type { ForwardConfigInput } from '../../src/config/forward.js';
import { accessLines, tableResolver, waitFor } from '../forward/helpers.js';
import { associate, udpClient, udpFrame } from '../helpers/socks-udp.js';
import { between, seededRun } from '../helpers/seeded.js';
import { PASSWORD, PASSWORD2, USER, USER2, startPoolProxy } from './helpers.js';

/**
 * The routing rules apply to each datagram of a SOCKS5 UDP association as they apply to a
 * TCP connection to the same host: a datagram to a host a rule names leaves through that
 * rule's pool (here: from that pool's address), others through the default pool or
 * directly; a pool the user's plan does not include drops the datagram (counted). Review
 * finding: the association chose one pool for the host `*`, so rules with `hosts` never
 * applied to datagrams. Seeded: the default pool (or none), whether the plan leaves `dc`
 * out, the user and the hosts named.
 */

const POOL_ADDRESS: Record<string, string> = { resi: '127.0.0.2', dc: '127.0.0.3', def: '127.0.0.4' };
const ROUTING = [
  { hosts: ['*.bank.test'], pool: 'resi' },
  { users: [USER2], hosts: ['only-bob.test'], pool: 'dc' },
  { hosts: ['exact.test'], pool: 'dc' },
];
const HOSTS = ['a.bank.test', 'x.y.bank.test', 'bank.test', 'exact.test', 'EXACT.test', 'only-bob.test', 'other.test', '127.0.0.1'];

/** The pool a datagram to `host` from `user` must leave through (undefined: directly), as the rules read. */
function expectedPool(user: string, host: string, defaultPool: string | undefined): string | undefined {
  const h = host.toLowerCase();
  for (const r of ROUTING) {
    if (r.users && !r.users.includes(user)) continue;
    if (!r.hosts.some((p) => (p.startsWith('*.') ? h.endsWith(p.slice(1)) : h === p))) continue;
    return r.pool;
  }
  return defaultPool;
}

describe('SOCKS5 UDP follows the routing rules per datagram', () => {
  it('each datagram leaves through the pool its host routes to, or is dropped when the plan refuses that pool (seeded)', { timeout: 90_000 }, async () => {
    await seededRun('udp-routing', async (rand) => {
      for (let round = 0; round < 3; round++) {
        const defaultPool = rand() < 0.5 ? 'def' : undefined;
        const planWithoutDc = rand() < 0.5;
        const asBob = rand() < 0.5;
        const user = asBob ? USER2 : USER;
        const cfg: Partial<ForwardConfigInput> = {
          egress: { pools: { resi: { addresses: [POOL_ADDRESS.resi!] }, dc: { addresses: [POOL_ADDRESS.dc!] }, def: { addresses: [POOL_ADDRESS.def!] } }, routing: ROUTING, ...(defaultPool ? { defaultPool } : {}) },
          ...(planWithoutDc ? { plans: { nodc: { pools: ['resi', 'def'] } } } : {}),
        };
        const table: Record<string, string[]> = {};
        for (const h of HOSTS) table[h.toLowerCase()] = ['127.0.0.1'];
        const p = await startPoolProxy(cfg, planWithoutDc ? { alice: { plan: 'nodc' }, bob: { plan: 'nodc' } } : {}, { resolver: tableResolver(table) });
        const echo = createSocket('udp4');
        const sources = new Map<string, string>();
        echo.on('message', (m, r) => {
          sources.set(m.toString(), r.address);
          echo.send(m, r.port, r.address);
        });
        echo.bind(0, '0.0.0.0');
        await once(echo, 'listening');
        const echoPort = echo.address().port;
        const c = await udpClient();
        let control: { destroy(): void } | undefined;
        try {
          const { socket, remoteHost } = await associate(p.port, { user, password: asBob ? PASSWORD2 : PASSWORD }, c.port);
          control = socket;
          const n = 6 + between(rand, 0, 4);
          let delivered = 0;
          let dropped = 0;
          const what = (host: string): string => `round ${round}: ${user} → ${host} (default ${defaultPool ?? 'direct'}, plan ${planWithoutDc ? 'without dc' : 'any pool'})`;
          for (let i = 0; i < n; i++) {
            const host = HOSTS[between(rand, 0, HOSTS.length - 1)]!;
            const pool = expectedPool(user, host, defaultPool);
            const payload = `${round}-${i}-${host}`;
            c.sock.send(udpFrame(host, echoPort, payload), remoteHost!.port, remoteHost!.host);
            if (pool === 'dc' && planWithoutDc) {
              dropped++;
              continue;
            }
            delivered++;
            assert.ok(await waitFor(() => c.inbox.length >= delivered, 3000), `${what(host)}: no answer`);
            const back = SocksClient.parseUDPFrame(c.inbox[delivered - 1]!);
            assert.equal(back.data.toString(), payload, what(host));
            assert.equal(sources.get(payload), pool ? POOL_ADDRESS[pool] : '127.0.0.1', `${what(host)}: left from the wrong address (expected pool ${pool ?? 'none: direct'})`);
          }
          // A last datagram every case delivers (default pool or direct): once its answer is in,
          // the relay has handled every datagram before it, the dropped ones too.
          c.sock.send(udpFrame('other.test', echoPort, `${round}-barrier`), remoteHost!.port, remoteHost!.host);
          delivered++;
          assert.ok(await waitFor(() => c.inbox.length >= delivered, 3000), 'the last datagram\'s answer');
          socket.destroy();
          assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.protocol === 'socks5-udp'), 3000), 'the association is recorded');
          const rec = accessLines(p.lines).find((l) => l.protocol === 'socks5-udp')!;
          assert.equal(rec.datagramsUp, delivered, JSON.stringify(rec));
          assert.equal(rec.datagramsDropped ?? 0, dropped, `datagrams to a pool the plan leaves out are dropped and counted: ${JSON.stringify(rec)}`);
          const leaked = [...sources.keys()].filter((k) => k.startsWith(`${round}-`) && expectedPool(user, k.split('-').slice(2).join('-'), defaultPool) === 'dc' && planWithoutDc);
          assert.deepEqual(leaked, [], 'a datagram to a pool the plan refuses reached the destination');
        } finally {
          control?.destroy();
          c.sock.close();
          echo.close();
          await p.close();
        }
      }
    });
  });
});

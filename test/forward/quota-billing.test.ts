import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { PASSWORD, USER, basicOf, startPoolProxy } from '../egress/helpers.js';
import { accessLines, readUntil, waitFor } from './helpers.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { periodOf, usageKey } from '../../src/tenants/index.js';

const T0 = Date.parse('2026-03-10T10:00:00.100Z');

/** A TCP source on loopback: a client that sends `GO N\n` is sent N bytes (in one write; the kernel and the proxy cut it in chunks). */
export async function byteSource(): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const conns = new Set<Socket>();
  const server = createServer((s) => {
    conns.add(s);
    s.on('close', () => conns.delete(s));
    s.on('error', () => {});
    let text = '';
    s.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      const m = /GO (\d+)\n/.exec(text);
      if (!m) return;
      text = '';
      s.write(Buffer.alloc(Number(m[1]), 0x63));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const s of conns) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A CONNECT tunnel through the proxy to `sourcePort`, once its head arrived (the status, and the socket when 200). */
export async function openTunnel(proxyPort: number, sourcePort: number, user = USER, password = PASSWORD): Promise<{ status: number; sock: Socket }> {
  const s = connect(proxyPort, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  s.write(`CONNECT 127.0.0.1:${sourcePort} HTTP/1.1\r\nhost: 127.0.0.1:${sourcePort}\r\nproxy-authorization: ${basicOf(user, password)}\r\n\r\n`);
  const head = await readUntil(s, (b) => b.includes('\r\n\r\n'), 10_000);
  // The source sends nothing before it is asked: the head is all there is.
  const status = Number(head.subarray(9, 12).toString('latin1'));
  if (status !== 200) s.destroy();
  return { status, sock: s };
}

/** Ask the source for `n` bytes through an open tunnel; the bytes received once the tunnel closed (or `n` arrived). Destroys the socket. */
export function pull(s: Socket, n: number, timeoutMs = 20_000): Promise<{ got: number; closed: boolean }> {
  return new Promise((resolve) => {
    let got = 0;
    const finish = (closed: boolean): void => {
      clearTimeout(t);
      s.off('data', onData);
      s.off('close', onClose);
      s.destroy();
      resolve({ got, closed });
    };
    const onClose = (): void => finish(true);
    const onData = (c: Buffer): void => {
      got += c.length;
      if (got >= n) finish(false);
    };
    const t = setTimeout(() => finish(false), timeoutMs);
    s.on('data', onData);
    s.once('close', onClose);
    s.write(`GO ${n}\n`);
  });
}

describe('byte quota billing: a tunnel cut by the quota is billed only for what it passed on', () => {
  it('parallel tunnels opened just under the quota: billed down equals the bytes the clients received (seeded)', async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let round = 0; round < 2; round++) {
        const quota = 200_000 + rand.int(600_000);
        const first = quota - 1 - rand.int(20_000);
        const tunnels = 2 + rand.int(14);
        const src = await byteSource();
        const socks: Socket[] = [];
        const p = await startPoolProxy({ plans: { q: { bytesPerDay: { down: quota } } } }, { alice: { plan: 'q' } }, { now: () => T0 });
        try {
          const t0 = await openTunnel(p.port, src.port);
          assert.equal(t0.status, 200);
          assert.equal((await pull(t0.sock, first)).got, first);
          // All open (admitted under the quota) before any pulls its bytes.
          const open = await Promise.all(Array.from({ length: tunnels }, () => openTunnel(p.port, src.port)));
          socks.push(...open.map((o) => o.sock));
          assert.ok(open.every((o) => o.status === 200), JSON.stringify(open.map((o) => o.status)));
          const rs = await Promise.all(open.map((o) => pull(o.sock, quota * 2)));
          const received = first + rs.reduce((s, r) => s + r.got, 0);
          // Every tunnel recorded (its bytes counted) before the usage is read.
          assert.ok(await waitFor(() => accessLines(p.lines).filter((l) => l.protocol === 'connect').length === tunnels + 1, 10_000));
          await p.proxy.plans.flush();
          const day = await p.proxy.store.hgetall(usageKey(USER, 'day', periodOf('day', T0).id));
          const recorded = accessLines(p.lines).reduce((s, l) => s + (l.bytesDown as number), 0);
          const info = JSON.stringify({ quota, first, tunnels, received, billed: day.down, recorded });
          // The chunk that crossed the quota went through; nothing past it; what is billed arrived.
          assert.ok(received >= quota, info);
          assert.equal(day.down, received, info);
          assert.equal(recorded, received, info);
          assert.ok(accessLines(p.lines).some((l) => l.endedBy === 'quota'), info);
        } finally {
          for (const s of socks) s.destroy();
          await p.close();
          await src.close();
        }
      }
    });
  });
});

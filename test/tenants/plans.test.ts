import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { accessLines, readUntil, udpEcho, waitFor } from '../forward/helpers.js';
import { associate, udpClient, udpFrame } from '../helpers/socks-udp.js';
import { PASSWORD, PASSWORD2, USER, USER2, basicOf, connectGet, proxyGet, socks4Reply, socksGet, startPoolProxy, whoAmI, type PoolProxy, type WhoAmI } from '../egress/helpers.js';
import { MemoryStore } from '../../src/state/index.js';

const T0 = Date.parse('2026-03-10T10:00:00.100Z');

async function socksCode(port: number, target: number, user: string, password: string): Promise<string> {
  try {
    await socksGet(port, '127.0.0.1', target, user, password);
    return 'ok';
  } catch (err) {
    return (err as Error).message;
  }
}

describe('plans: limits per protocol', () => {
  const clock = { t: T0 };
  let origin: WhoAmI;
  let p: PoolProxy;
  before(async () => {
    origin = await whoAmI();
    p = await startPoolProxy(
      {
        egress: { pools: { dc: { addresses: ['127.0.0.2'] }, other: { addresses: ['127.0.0.3'] } } },
        plans: {
          tiny: { requestsPerSecond: 2, maxConnections: 1, bytesPerDay: { down: '2KB' }, pools: ['dc'] },
          udp: { bytesPerDay: { down: 10 } },
        },
      },
      { alice: { plan: 'tiny' }, bob: { plan: 'udp' } },
      { now: () => clock.t },
    );
  });
  after(async () => {
    await p.close();
    await origin.close();
  });

  it('requests per second: HTTP and CONNECT answer 429, SOCKS5 0x02, SOCKS4 0x5b', async () => {
    const url = `http://127.0.0.1:${origin.port}/`;
    assert.equal((await proxyGet(p.port, url)).status, 200);
    assert.equal((await proxyGet(p.port, url)).status, 200);
    const over = await proxyGet(p.port, url);
    assert.equal(over.status, 429);
    assert.match(String(over.headers['proxy-status']), /error=http_request_denied/);
    assert.match(String(over.headers['proxy-status']), /requestsPerSecond limit of 2 reached; resets in \d+ ms/);
    assert.equal(over.headers['retry-after'], '1');
    const c = await connectGet(p.port, '127.0.0.1', origin.port);
    assert.match(c.connect, /^HTTP\/1\.1 429/);
    assert.match(c.connect, /requestsPerSecond/);
    assert.match(await socksCode(p.port, origin.port, USER, PASSWORD), /NotAllowed/);
    assert.equal(await socks4Reply(p.port, origin.port, `${USER}:${PASSWORD}`), 0x5b);
    clock.t += 1000;
    assert.equal((await proxyGet(p.port, url)).status, 200);
  });

  it('pools outside the plan are refused with 403', async () => {
    clock.t += 1000;
    const r = await proxyGet(p.port, `http://127.0.0.1:${origin.port}/`, `${USER}-pool-other`);
    assert.equal(r.status, 403);
    assert.match(String(r.headers['proxy-status']), /does not include egress pool other/);
    assert.match(await socksCode(p.port, origin.port, `${USER}-pool-other`, PASSWORD), /NotAllowed/);
  });

  it('concurrent connections: 429 while a tunnel is open, SOCKS5 0x02', async () => {
    clock.t += 1000;
    const s = connect(p.port, '127.0.0.1');
    await once(s, 'connect');
    s.write(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nproxy-authorization: ${basicOf(USER, PASSWORD)}\r\n\r\n`);
    await readUntil(s, (b) => b.includes('\r\n\r\n'));
    try {
      const r = await proxyGet(p.port, `http://127.0.0.1:${origin.port}/`);
      assert.equal(r.status, 429);
      assert.match(String(r.headers['proxy-status']), /maxConnections limit of 1 reached/);
      clock.t += 1000;
      assert.match(await socksCode(p.port, origin.port, USER, PASSWORD), /NotAllowed/);
    } finally {
      s.destroy();
    }
    await waitFor(() => accessLines(p.lines).filter((l) => l.protocol === 'connect' && l.status === 200).length > 0);
  });

  it('bytes per day: once the quota is used, 429 naming the limit and its reset', async () => {
    clock.t += 1000;
    const big = await proxyGet(p.port, `http://127.0.0.1:${origin.port}/bytes/3000`);
    assert.equal(big.status, 200);
    clock.t += 1000;
    const r = await proxyGet(p.port, `http://127.0.0.1:${origin.port}/`);
    assert.equal(r.status, 429);
    assert.match(String(r.headers['proxy-status']), /bytesPerDay\.down limit of 2 KiB reached; resets at 2026-03-11T00:00:00\.000Z/);
    assert.ok(Number(r.headers['retry-after']) > 3600);
    assert.match(await socksCode(p.port, origin.port, USER, PASSWORD), /NotAllowed/);
    // Usage reaches the store in batches (at most a second late); flush() writes it now.
    await p.proxy.plans.flush();
    const day = await p.proxy.store.hgetall('usage:alice:day:2026-03-10');
    assert.ok(day.down! >= 3000 && day.requests! >= 4, JSON.stringify(day));
  });

  it('UDP: datagrams over the quota are dropped and counted', async () => {
    const echo = await udpEcho();
    const { sock: client, port, inbox } = await udpClient();
    try {
      const assoc = await associate(p.port, { user: USER2, password: PASSWORD2 }, port);
      const frame = udpFrame('127.0.0.1', echo.port, 'ping-ping');
      client.send(frame, assoc.remoteHost!.port, assoc.remoteHost!.host);
      assert.ok(await waitFor(() => inbox.length === 1));
      await new Promise((r) => setTimeout(r, 30));
      client.send(frame, assoc.remoteHost!.port, assoc.remoteHost!.host);
      client.send(frame, assoc.remoteHost!.port, assoc.remoteHost!.host);
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(inbox.length, 1);
      assoc.socket.destroy();
      assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.protocol === 'socks5-udp' && l.user === USER2)));
      const rec = accessLines(p.lines).find((l) => l.protocol === 'socks5-udp' && l.user === USER2)!;
      assert.ok((rec.datagramsDropped as number) >= 1, JSON.stringify(rec));
      assert.equal(rec.plan, 'udp');
    } finally {
      client.close();
      echo.close();
    }
  });
});

describe('memory store', () => {
  it('increments with expiry, hashes, keys, dump and load', async () => {
    const clock = { t: 1000 };
    const s = new MemoryStore({ now: () => clock.t });
    assert.equal(await s.incrby('a', 2, 500), 2);
    assert.equal(await s.incrby('a', 3, 500), 5);
    assert.equal(await s.pttl('a'), 500);
    await s.hincrby('h', 'up', 7, 1000);
    assert.deepEqual(await s.hgetall('h'), { up: 7 });
    assert.deepEqual((await s.keys('')).sort(), ['a', 'h']);
    clock.t = 1500;
    assert.equal(await s.get('a'), undefined);
    const copy = new MemoryStore({ now: () => clock.t });
    const dump = s.dump();
    assert.deepEqual(dump.entries.map((e) => e.key), ['h']);
    await s.close();
    await copy.close();
  });
});

describe('plans: an open tunnel ends when it crosses its byte quota', () => {
  it('cuts the tunnel at the next chunk and logs the quota', async () => {
    const origin = await whoAmI();
    const p = await startPoolProxy({ plans: { small: { bytesPerDay: { down: 5000 } } } }, { alice: { plan: 'small' } });
    try {
      const s = connect(p.port, '127.0.0.1');
      s.on('error', () => {});
      await once(s, 'connect');
      s.write(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nproxy-authorization: ${basicOf(USER, PASSWORD)}\r\n\r\n`);
      await readUntil(s, (b) => b.includes('\r\n\r\n'));
      for (let i = 0; i < 2; i++) {
        s.write(`GET /bytes/4000 HTTP/1.1\r\nhost: x\r\n\r\n`);
        const got = await readUntil(s, (b) => b.length >= 4000, 3000);
        assert.ok(got.length >= 4000);
      }
      await new Promise((r) => setTimeout(r, 20));
      s.write(`GET /bytes/4000 HTTP/1.1\r\nhost: x\r\n\r\n`);
      const third = await readUntil(s, () => false, 2000);
      assert.equal(third.length, 0);
      assert.ok(s.destroyed || s.readableEnded);
      assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.endedBy === 'quota')));
      assert.match(String(accessLines(p.lines).find((l) => l.endedBy === 'quota')!.quota), /bytesPerDay\.down/);
    } finally {
      await p.close();
      await origin.close();
    }
  });
});

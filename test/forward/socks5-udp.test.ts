import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { SocksClient } from 'socks';
import { PASSWORD, USER, accessLines, startTestProxy, tableResolver, udpEcho, waitFor, type TestProxy } from './helpers.js';
import { associate, udpClient, udpFrame } from '../helpers/socks-udp.js';

const ALICE = { user: USER, password: PASSWORD };

/** A tiny DNS server: answers every A question with 192.0.2.7. */
async function dnsLikeServer(): Promise<{ port: number; close(): void }> {
  const s = createSocket('udp4');
  s.on('message', (q, r) => {
    // header(12) + question; answer: pointer to name at 12, type A, class IN, ttl 60, rdlen 4, rdata
    const header = Buffer.from(q.subarray(0, 12));
    header[2] = 0x81;
    header[3] = 0x80;
    header.writeUInt16BE(1, 6);
    const question = q.subarray(12);
    const answer = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
    s.send(Buffer.concat([header, question, answer]), r.port, r.address);
  });
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  return { port: s.address().port, close: () => s.close() };
}

function dnsQuery(id: number, name: string): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const head = Buffer.alloc(12);
  head.writeUInt16BE(id, 0);
  head.writeUInt16BE(0x0100, 2);
  head.writeUInt16BE(1, 4);
  return Buffer.concat([head, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

describe('SOCKS5 UDP ASSOCIATE', () => {
  let p: TestProxy;
  let echo: Awaited<ReturnType<typeof udpEcho>>;

  before(async () => {
    p = await startTestProxy({}, { resolver: tableResolver({ 'echo.test': ['127.0.0.1'], 'dns.test': ['127.0.0.1'] }) });
    echo = await udpEcho();
  });
  after(async () => {
    await p.close();
    echo.close();
  });

  it('relays datagrams both ways (echo) and a DNS-like exchange by name', async () => {
    const c = await udpClient();
    const { socket, remoteHost } = await associate(p.port, ALICE, c.port);
    try {
      assert.equal(remoteHost!.host, '127.0.0.1');
      c.sock.send(udpFrame('127.0.0.1', echo.port, 'hello'), remoteHost!.port, remoteHost!.host);
      assert.ok(await waitFor(() => c.inbox.length >= 1));
      const back = SocksClient.parseUDPFrame(c.inbox[0]!);
      assert.equal(back.data.toString(), 'echo:hello');
      assert.equal(back.remoteHost.host, '127.0.0.1');
      assert.equal(back.remoteHost.port, echo.port);

      const dns = await dnsLikeServer();
      try {
        c.sock.send(udpFrame('dns.test', dns.port, dnsQuery(0x4242, 'www.example.test')), remoteHost!.port, remoteHost!.host);
        assert.ok(await waitFor(() => c.inbox.length >= 2));
        const ans = SocksClient.parseUDPFrame(c.inbox[1]!).data;
        assert.equal(ans.readUInt16BE(0), 0x4242, 'the answer carries the query id');
        assert.equal(ans.readUInt16BE(6), 1, 'one answer');
        assert.deepEqual([...ans.subarray(ans.length - 4)], [192, 0, 2, 7]);
      } finally {
        dns.close();
      }
    } finally {
      socket.destroy();
      c.sock.close();
    }
    assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.protocol === 'socks5-udp' && l.datagramsUp === 2 && l.datagramsDown === 2)));
    const snap = p.proxy.meter.snapshot();
    assert.ok(snap.users[USER]!.datagramsUp >= 2);
    assert.ok(snap.destinations[`dns.test:${0}`] === undefined);
    assert.ok(Object.keys(snap.destinations).some((d) => d.startsWith('dns.test:')));
  });

  it('drops fragments and datagrams from other sources, then keeps relaying', async () => {
    const c = await udpClient();
    const other = await udpClient();
    const { socket, remoteHost } = await associate(p.port, ALICE, c.port);
    try {
      const before = echo.received.length;
      c.sock.send(udpFrame('127.0.0.1', echo.port, 'fragment', 1), remoteHost!.port, remoteHost!.host);
      other.sock.send(udpFrame('127.0.0.1', echo.port, 'intruder'), remoteHost!.port, remoteHost!.host);
      c.sock.send(Buffer.from([0, 0]), remoteHost!.port, remoteHost!.host); // truncated header
      c.sock.send(udpFrame('127.0.0.1', echo.port, 'after'), remoteHost!.port, remoteHost!.host);
      assert.ok(await waitFor(() => c.inbox.length >= 1));
      await new Promise((r) => setTimeout(r, 100));
      const got = echo.received.slice(before).map((b) => b.toString());
      assert.deepEqual(got, ['after']);
      assert.equal(other.inbox.length, 0);
    } finally {
      socket.destroy();
      c.sock.close();
      other.sock.close();
    }
    assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.protocol === 'socks5-udp' && (l.datagramsDropped as number) >= 2)));
  });

  it('ends the association when its TCP control connection closes', async () => {
    const c = await udpClient();
    const { socket, remoteHost } = await associate(p.port, ALICE);
    c.sock.send(udpFrame('echo.test', echo.port, 'one'), remoteHost!.port, remoteHost!.host);
    assert.ok(await waitFor(() => c.inbox.length >= 1));
    const ended = accessLines(p.lines).length;
    socket.destroy();
    assert.ok(await waitFor(() => accessLines(p.lines).slice(ended).some((l) => l.protocol === 'socks5-udp' && l.endedBy === 'client')));
    // The relay port is closed now: a connected UDP socket learns it from ICMP port unreachable.
    const probe = createSocket('udp4');
    try {
      probe.connect(remoteHost!.port, '127.0.0.1');
      await once(probe, 'connect');
      const err = new Promise<string>((resolve) => {
        probe.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
        setTimeout(() => resolve('none'), 1500);
      });
      probe.send(udpFrame('127.0.0.1', echo.port, 'late'));
      await new Promise((r) => setTimeout(r, 50));
      probe.send(udpFrame('127.0.0.1', echo.port, 'late'));
      assert.equal(await err, 'ECONNREFUSED');
    } finally {
      probe.close();
      c.sock.close();
    }
  });

  it('ends an idle association and closes its control connection', async () => {
    const q = await startTestProxy({ timeouts: { udpIdle: '300ms' } });
    try {
      const { socket } = await associate(q.port, ALICE);
      const t0 = Date.now();
      await once(socket, 'close');
      assert.ok(Date.now() - t0 < 3000);
      assert.ok(await waitFor(() => accessLines(q.lines).some((l) => l.protocol === 'socks5-udp' && l.endedBy === 'idle')));
    } finally {
      await q.close();
    }
  });

  it('drops datagrams to destinations the rules deny', async () => {
    const q = await startTestProxy({ rules: { allowPrivate: false } }, { resolver: tableResolver({ localhost: ['127.0.0.1'] }) });
    const c = await udpClient();
    try {
      const { socket, remoteHost } = await associate(q.port, ALICE, c.port);
      const before = echo.received.length;
      c.sock.send(udpFrame('localhost', echo.port, 'denied'), remoteHost!.port, remoteHost!.host);
      c.sock.send(udpFrame('127.0.0.1', echo.port, 'denied'), remoteHost!.port, remoteHost!.host);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(echo.received.length, before);
      socket.destroy();
      assert.ok(await waitFor(() => accessLines(q.lines).some((l) => l.protocol === 'socks5-udp' && l.datagramsDropped === 2)));
    } finally {
      c.sock.close();
      await q.close();
    }
  });
});

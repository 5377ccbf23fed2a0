import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FinishedRecord } from '../../src/tenants/index.js';
import { PASSWORD, USER, accessLines, readUntil, run, startOrigin, startTestProxy, udpEcho, waitFor, type Origin, type TestProxy } from './helpers.js';
import { associate, udpClient, udpFrame } from '../helpers/socks-udp.js';

describe('metering and the access log across protocols', () => {
  let origin: Origin;
  let p: TestProxy;
  const events: FinishedRecord[] = [];

  before(async () => {
    origin = await startOrigin();
    p = await startTestProxy();
    p.proxy.meter.on('finished', (r) => events.push(r));
  });
  after(async () => {
    await p.close();
    await origin.close();
  });

  it('counts bytes, requests, tunnels and datagrams per user and destination, one event per finish', async () => {
    const dest = `127.0.0.1:${origin.port}`;
    await run('curl', ['-sS', '-x', p.authUrl, `http://${dest}/m1`]);
    await run('curl', ['-sS', '-x', p.authUrl, '-p', `http://${dest}/m2`]);
    await run('curl', ['-sS', '-x', `socks5h://${USER}:${PASSWORD}@127.0.0.1:${p.port}`, `http://${dest}/m3`]);
    const echo = await udpEcho();
    const { sock: c, port, inbox: got } = await udpClient();
    const info = await associate(p.port, { user: USER, password: PASSWORD }, port);
    c.send(udpFrame('127.0.0.1', echo.port, '12345'), info.remoteHost!.port, info.remoteHost!.host);
    assert.ok(await waitFor(() => got.length === 1));
    info.socket.destroy();
    c.close();
    echo.close();
    assert.ok(await waitFor(() => events.length >= 4));

    const byProto = (proto: string): FinishedRecord | undefined => events.find((e) => e.protocol === proto);
    for (const proto of ['http', 'connect', 'socks5', 'socks5-udp']) {
      const e = byProto(proto);
      assert.ok(e, `${proto} event`);
      assert.equal(e.user, USER);
      assert.equal(e.error, undefined);
      assert.ok(typeof e.requestId === 'string' && e.requestId.length > 10);
      assert.ok(e.durationMs >= 0);
    }
    assert.equal(byProto('http')!.status, 200);
    assert.equal(byProto('connect')!.status, 200);
    assert.equal(byProto('socks5')!.reply, 0);
    assert.equal(byProto('socks5-udp')!.datagramsUp, 1);
    assert.equal(byProto('socks5-udp')!.datagramsDown, 1);

    const snap = p.proxy.meter.snapshot();
    const u = snap.users[USER]!;
    assert.equal(u.requests, 1);
    assert.equal(u.tunnels, 2);
    assert.equal(u.associations, 1);
    assert.equal(u.datagramsUp, 1);
    assert.equal(u.datagramsDown, 1);
    assert.ok(u.bytesUp > 100 && u.bytesDown > 300);
    const d = snap.destinations[dest]!;
    assert.equal(d.requests + d.tunnels, 3);
    assert.equal(snap.destinations[`127.0.0.1:${echo.port}`]!.datagramsUp, 1);
    assert.equal(snap.destinations[`127.0.0.1:${echo.port}`]!.bytesUp, 5);
    assert.equal(snap.totals.requests, 1);

    const lines = accessLines(p.lines);
    for (const l of lines) {
      const keys = ['time', 'face', 'component', 'protocol', 'user', 'endedBy', 'bytesUp', 'bytesDown', 'durationMs', 'requestId'];
      // A UDP association has no single destination: its datagrams name theirs.
      if (l.protocol !== 'socks5-udp') keys.push('destination', 'address');
      for (const k of keys) assert.ok(k in l, `${k} in ${JSON.stringify(l)}`);
      assert.ok('status' in l || 'reply' in l);
    }
  });

  it('counts refusals as failures of the user, and raw HTTP tunnels end by who closed', async () => {
    const before = p.proxy.meter.snapshot().users[USER]?.failures ?? 0;
    await run('curl', ['-sS', '-x', p.authUrl, 'http://127.0.0.1:1/']);
    assert.ok(await waitFor(() => (p.proxy.meter.snapshot().users[USER]?.failures ?? 0) === before + 1));
    const { dial, basic } = await import('./helpers.js');
    const s = await dial(p.port);
    s.write(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
    await readUntil(s, (b) => b.includes('\r\n\r\n'));
    s.end();
    assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.protocol === 'connect' && l.endedBy === 'client')));
    s.destroy();
  });

  it('publishes finished records on diagnostics_channel and accepts a dns.lookup-style resolver', async () => {
    const { subscribe, unsubscribe } = await import('node:diagnostics_channel');
    const { REQUEST_END_CHANNEL: FINISHED_CHANNEL } = await import('../../src/forward/index.js');
    const seen: unknown[] = [];
    const onMsg = (m: unknown): void => {
      seen.push(m);
    };
    subscribe(FINISHED_CHANNEL, onMsg);
    const lookup = (_h: string, _o: unknown, cb: (e: null, a: Array<{ address: string; family: number }>) => void): void => cb(null, [{ address: '127.0.0.1', family: 4 }]);
    const q = await startTestProxy({}, { resolver: lookup });
    try {
      const r = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-x', q.authUrl, `http://lookup.test:${origin.port}/`]);
      assert.equal(r.stdout, '200');
      assert.ok(await waitFor(() => seen.some((m) => (m as FinishedRecord).destination === `lookup.test:${origin.port}`)));
    } finally {
      unsubscribe(FINISHED_CHANNEL, onMsg);
      await q.close();
    }
  });
});

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createSocket } from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import { accessLines, waitFor } from '../forward/helpers.js';
import { associate, udpClient, udpFrame } from '../helpers/socks-udp.js';
import { PASSWORD, USER, connectGet, proxyGet, socksGet, startPoolProxy, whoAmI, type PoolProxy, type WhoAmI } from './helpers.js';

const EXITS = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];

describe('address pools (datacenter exits)', () => {
  let origin: WhoAmI;
  let p: PoolProxy;
  before(async () => {
    origin = await whoAmI('0.0.0.0');
    p = await startPoolProxy({
      egress: {
        pools: {
          dc: { addresses: EXITS, strategy: 'round-robin' },
          one: { addresses: ['127.0.0.9'] },
        },
        defaultPool: 'dc',
      },
    });
  });
  after(async () => {
    await p.close();
    await origin.close();
  });

  it('HTTP: the destination sees each exit address in turn, named in x-gatewise-exit', async () => {
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await proxyGet(p.port, `http://127.0.0.1:${origin.port}/`);
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-gatewise-exit'], r.body);
      seen.push(r.body);
    }
    assert.deepEqual(new Set(seen), new Set(EXITS));
    assert.deepEqual(seen.slice(0, 3).sort(), [...EXITS].sort());
    assert.deepEqual(seen.slice(3), seen.slice(0, 3));
  });

  it('CONNECT and SOCKS5: the destination sees an exit address', async () => {
    const c = await connectGet(p.port, '127.0.0.1', origin.port);
    assert.match(c.connect, /^HTTP\/1\.1 200/);
    const exit = /x-gatewise-exit: (\S+)/.exec(c.connect)?.[1];
    assert.ok(exit && EXITS.includes(exit));
    assert.equal(c.body, exit);
    const body = await socksGet(p.port, '127.0.0.1', origin.port);
    assert.ok(EXITS.includes(body), body);
  });

  it('a -pool- username parameter picks the pool; an unknown pool is refused (403)', async () => {
    const r = await proxyGet(p.port, `http://127.0.0.1:${origin.port}/`, `${USER}-pool-one`);
    assert.equal(r.body, '127.0.0.9');
    const bad = await proxyGet(p.port, `http://127.0.0.1:${origin.port}/`, `${USER}-pool-nope`);
    assert.equal(bad.status, 403);
    assert.match(String(bad.headers['proxy-status']), /error=http_request_denied/);
  });

  it('a session id keeps one exit across requests and protocols; the access log names it', async () => {
    const user = `${USER}-session-s42-ttl-5m`;
    const first = await proxyGet(p.port, `http://127.0.0.1:${origin.port}/`, user);
    for (let i = 0; i < 4; i++) assert.equal((await proxyGet(p.port, `http://127.0.0.1:${origin.port}/`, user)).body, first.body);
    assert.equal(await socksGet(p.port, '127.0.0.1', origin.port, user, PASSWORD), first.body);
    assert.equal(first.headers['x-gatewise-session'], 's42');
    await waitFor(() => accessLines(p.lines).some((l) => l.session === 's42' && l.protocol === 'socks5'));
    const rec = accessLines(p.lines).find((l) => l.session === 's42')!;
    assert.equal(rec.pool, 'dc');
    assert.equal(rec.exit, first.body);
    assert.equal(rec.user, USER);
  });

  it('IPv6 exits: only exits of the destination\'s family are used', async () => {
    const v6 = await whoAmI('::1');
    const q = await startPoolProxy({ egress: { pools: { mixed: { addresses: ['127.0.0.2', '::1'], strategy: 'round-robin' } }, defaultPool: 'mixed' } });
    try {
      for (let i = 0; i < 3; i++) {
        const r = await proxyGet(q.port, `http://[::1]:${v6.port}/`);
        assert.equal(r.status, 200);
        assert.equal(r.body, '::1');
        assert.equal(r.headers['x-gatewise-exit'], '::1');
      }
      assert.equal((await proxyGet(q.port, `http://127.0.0.1:${origin.port}/`)).body, '127.0.0.2');
    } finally {
      await q.close();
      await v6.close();
    }
  });

  it('SOCKS5 UDP leaves from an exit address', async () => {
    const echo = createSocket('udp4');
    let from = '';
    echo.on('message', (m, r) => {
      from = r.address;
      echo.send(m, r.port, r.address);
    });
    echo.bind(0, '0.0.0.0');
    await once(echo, 'listening');
    const { sock: client, port, inbox } = await udpClient();
    try {
      const assoc = await associate(p.port, { user: USER, password: PASSWORD }, port);
      client.send(udpFrame('127.0.0.1', echo.address().port, 'ping'), assoc.remoteHost!.port, assoc.remoteHost!.host);
      assert.ok(await waitFor(() => inbox.length > 0));
      assert.ok(EXITS.includes(from), from);
      assoc.socket.destroy();
    } finally {
      client.close();
      echo.close();
    }
  });
});

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ProxyAgent, request } from 'undici';
import { PASSWORD, USER, accessLines, basic, dial, linesUntil, quickCheckUsers, rawExchange, readUntil, refusedPort, run, startTestProxy, waitFor, type TestProxy } from './helpers.js';
import { GUARD_MS, LATE_MS, assertFiredOnTime } from '../helpers/time-bounds.js';
import { startTlsOrigin, type TlsOrigin } from './tls-origin.js';

describe('CONNECT tunnels', () => {
  let tls: TlsOrigin;
  let p: TestProxy;

  before(async () => {
    tls = await startTlsOrigin();
    p = await startTestProxy();
  });
  after(async () => {
    await p.close();
    await tls.close();
  });

  it('carries HTTPS for curl -k and counts the tunnel', async () => {
    const r = await run('curl', ['-sS', '-k', '-x', p.authUrl, `https://127.0.0.1:${tls.port}/secure`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'tls ok /secure');
    assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.protocol === 'connect' && l.status === 200)));
    const line = accessLines(p.lines).find((l) => l.protocol === 'connect' && l.status === 200)!;
    assert.equal(line.user, 'alice');
    assert.equal(line.destination, `127.0.0.1:${tls.port}`);
    assert.equal(line.address, '127.0.0.1');
    assert.ok((line.bytesUp as number) > 100 && (line.bytesDown as number) > 100);
    const snap = p.proxy.meter.snapshot();
    assert.ok(snap.users['alice']!.tunnels >= 1);
    assert.ok(snap.destinations[`127.0.0.1:${tls.port}`]!.bytesDown > 100);
  });

  it('carries HTTPS for undici ProxyAgent (tunnel) with the origin certificate trusted', async () => {
    const agent = new ProxyAgent({ uri: p.url, token: basic(), requestTls: { ca: tls.cert } });
    try {
      const res = await request(`https://localhost:${tls.port}/undici`, { dispatcher: agent });
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), 'tls ok /undici');
    } finally {
      await agent.close();
    }
  });

  it('answers CONNECT failures with status and Proxy-Status before any tunnel', async () => {
    const port = await refusedPort();
    const refused = await rawExchange(p.port, `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
    assert.match(refused, /^HTTP\/1\.1 502/);
    assert.match(refused, /proxy-status: gatewise;error=connection_refused/);
    const noAuth = await rawExchange(p.port, `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.match(noAuth, /^HTTP\/1\.1 407/);
    assert.match(noAuth, /proxy-authenticate: Basic realm="gatewise"/);
    const bad = await rawExchange(p.port, `CONNECT nonsense HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
    assert.match(bad, /^HTTP\/1\.1 400/);
  });

  it('allows only configured CONNECT ports (443 by default)', async () => {
    const q = await startTestProxy({ rules: { connectPorts: [443] } });
    try {
      // The bound is a failure guard (rawExchange's 3 s default was overrun under load: the
      // first request's password check runs on a thread, seconds on a loaded machine).
      const r = await rawExchange(q.port, `CONNECT 127.0.0.1:${tls.port} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic()}\r\n\r\n`, GUARD_MS);
      assert.match(r, /^HTTP\/1\.1 403/);
      assert.match(r, /error=http_request_denied/);
      const c = await run('curl', ['-sS', '-k', '-o', '/dev/null', '-w', '%{http_code}', '-x', q.authUrl, `https://127.0.0.1:${tls.port}/`]);
      assert.notEqual(c.code, 0);
    } finally {
      await q.close();
    }
  });

  it('refuses CONNECT to localhost under default rules without connecting', async () => {
    const q = await startTestProxy({ rules: { allowPrivate: false } });
    let accepted = 0;
    const onConn = (): void => {
      accepted++;
    };
    tls.server.on('connection', onConn);
    try {
      const r = await rawExchange(q.port, `CONNECT localhost:${tls.port} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
      assert.match(r, /^HTTP\/1\.1 502/);
      assert.match(r, /proxy-status: gatewise;error=destination_ip_prohibited/);
      assert.equal(accepted, 0);
    } finally {
      tls.server.off('connection', onConn);
      await q.close();
    }
  });

  it('closes a connection that sends nothing within the handshake time; a tunnel opened in time outlives it', async () => {
    // A quick password check: the tunnel's check counts within the short handshake time (1 s:
    // at 300 ms a tunnel's own dial, head and check ran past it at load average ~8, a 408).
    const q = await startTestProxy({ auth: { required: true, users: await quickCheckUsers() }, timeouts: { handshake: '1s' } });
    const { sink, port } = await echoSink();
    try {
      // Before the connection: the handshake time runs from the accept, which cannot be earlier
      // (it was taken after 'connect', which a loaded machine may run well after the accept).
      const t0 = performance.now();
      const silent = await dial(q.port);
      await once(silent, 'close');
      assertFiredOnTime(performance.now() - t0, 1000, 'the silent connection closed at the handshake time');

      const s = await openTunnel(q.port, port);
      await new Promise((r) => setTimeout(r, 2000));
      assert.equal(s.destroyed, false, 'the tunnel is still open after twice the handshake time');
      s.write('still-here');
      const echo = await readUntil(s, (b) => b.includes('still-here'));
      assert.match(echo.toString(), /still-here/);
      s.destroy();
    } finally {
      await q.close();
      sink.close();
    }
  });

  it('bytes the client sends right behind the CONNECT head, before the 200, reach the destination', async () => {
    const q = await startTestProxy({});
    const { sink, port } = await echoSink();
    try {
      // 30 tunnels each way: the early bytes in their own write (they arrive while the proxy
      // dials), and in the same write as the head.
      for (let i = 0; i < 60; i++) {
        const s = await dial(q.port);
        const head = `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic()}\r\n\r\n`;
        if (i % 2 === 0) {
          s.write(head);
          setTimeout(() => s.write(`early-${i};`), i % 4);
        } else {
          s.write(head + `early-${i};`);
        }
        const got = await readUntil(s, (b) => b.includes(`early-${i};`), GUARD_MS);
        assert.match(got.toString(), /^HTTP\/1\.1 200/);
        assert.ok(got.toString().includes(`early-${i};`), `tunnel ${i}: the early bytes came back (${JSON.stringify(got.toString())})`);
        s.destroy();
      }
    } finally {
      await q.close();
      sink.close();
    }
  });

  it('keeps a tunnel open while bytes move more often than tunnelIdle, for longer than tunnelIdle', async () => {
    const q = await startTestProxy({ timeouts: { tunnelIdle: '300ms' } });
    const { sink, port } = await echoSink();
    try {
      const s = await openTunnel(q.port, port);
      let closed = false;
      s.once('close', () => (closed = true));
      // Pings back to back, each sent when the last one's echo came, for four times the idle
      // timeout: never quiet for longer than an echo's round trip. (They were 150 ms apart:
      // a loaded machine stretched a 150 ms sleep plus an echo past the 300 ms.)
      const from = performance.now();
      for (let i = 0; performance.now() - from < 4 * 300 && !closed; i++) {
        s.write(`ping${i};`);
        await readUntil(s, (b) => b.includes(`ping${i};`), GUARD_MS);
      }
      assert.equal(closed, false, 'an active tunnel is not idle');
      // Before the last echo was read, so after the proxy's last byte: a later start only shortens this.
      const t0 = performance.now();
      await once(s, 'close');
      const waited = performance.now() - t0;
      assert.ok(waited < 300 + LATE_MS, `then closed ${Math.round(waited)} ms after the last byte`);
    } finally {
      await q.close();
      sink.close();
    }
  });

  it('closes an idle tunnel after tunnelIdle', async () => {
    const q = await startTestProxy({ timeouts: { tunnelIdle: '300ms' } });
    const { sink, port } = await echoSink();
    try {
      const s = await openTunnel(q.port, port);
      // Before the last bytes: the idle time runs from them, so it cannot start earlier (it was
      // taken after the echo was read, which a loaded machine may run well after they passed).
      const t0 = performance.now();
      s.write('ping');
      const echo = await readUntil(s, (b) => b.includes('ping'), GUARD_MS);
      assert.match(echo.toString(), /ping/);
      await once(s, 'close');
      assertFiredOnTime(performance.now() - t0, 300, 'the idle tunnel closed at tunnelIdle');
      assert.ok(await linesUntil(q.lines, () => accessLines(q.lines).some((l) => l.protocol === 'connect' && l.endedBy === 'idle')));
    } finally {
      await q.close();
      sink.close();
    }
  });

  it('tunnelIdle "0s" never closes a quiet tunnel', async () => {
    const q = await startTestProxy({ timeouts: { tunnelIdle: '0s' } });
    const { sink, port } = await echoSink();
    try {
      const s = await openTunnel(q.port, port);
      let closed = false;
      s.once('close', () => (closed = true));
      await new Promise((r) => setTimeout(r, 400));
      s.write('still there?');
      const echo = await readUntil(s, (b) => b.includes('still there?'));
      assert.match(echo.toString(), /still there\?/);
      assert.equal(closed, false);
      s.destroy();
    } finally {
      await q.close();
      sink.close();
    }
  });
});

describe('handshake "0s" means no limit', () => {
  it('a SOCKS5 client and an HTTP client that pause 400 ms inside their handshakes are served', async () => {
    const q = await startTestProxy({ timeouts: { handshake: '0s' } });
    const { sink, port } = await echoSink();
    try {
      const s = await dial(q.port);
      s.write(Buffer.from([5, 1, 2])); // greeting: user/password
      assert.deepEqual([...(await readUntil(s, (b) => b.length >= 2))], [5, 2]);
      await new Promise((r) => setTimeout(r, 400));
      const u = Buffer.from(USER);
      const pw = Buffer.from(PASSWORD);
      s.write(Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([pw.length]), pw]));
      await readUntil(s, (b) => b.length >= 2);
      s.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 0xff]));
      const reply = await readUntil(s, (b) => b.length >= 10);
      assert.equal(reply[1], 0, 'SOCKS5 CONNECT succeeded');
      s.write('ping');
      assert.match((await readUntil(s, (b) => b.includes('ping'))).toString('latin1'), /ping/);
      s.destroy();

      const h = await dial(q.port);
      h.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\n`);
      await new Promise((r) => setTimeout(r, 400));
      h.write(`Host: x\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
      assert.match((await readUntil(h, (b) => b.includes('\r\n\r\n'))).toString('latin1'), /^HTTP\/1\.1 200/);
      h.destroy();
    } finally {
      await q.close();
      sink.close();
    }
  });
});

/** A tunnel through the proxy to 127.0.0.1:port, open (its 200 read). */
async function openTunnel(proxyPort: number, port: number): Promise<Socket> {
  const s = await dial(proxyPort);
  s.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
  const head = await readUntil(s, (b) => b.includes('\r\n\r\n'), GUARD_MS);
  assert.match(head.toString(), /^HTTP\/1\.1 200/);
  return s;
}

/** A TCP server on loopback that echoes what it receives. */
async function echoSink(): Promise<{ sink: ReturnType<typeof createServer>; port: number }> {
  const sink = createServer((s) => s.on('data', (d) => s.write(d)));
  sink.listen(0, '127.0.0.1');
  await once(sink, 'listening');
  return { sink, port: (sink.address() as AddressInfo).port };
}

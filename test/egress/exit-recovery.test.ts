import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { SocksClient } from 'socks';
import { accessLines, tableResolver, waitFor } from '../forward/helpers.js';
import { PASSWORD, USER, connectGet, proxyGet, socksGet, startPoolProxy, startUpstreamGatewise, whoAmI, type PoolProxy, type WhoAmI } from './helpers.js';

/**
 * Forward side, issue 15: an upstream proxy hop that refuses (403, 407, 502 on CONNECT or
 * to a plain-HTTP request, a SOCKS5 refusal reply) is a failure of that exit: the request
 * goes through another exit where that is safe, a sticky session re-pins, the exit is
 * marked, and when every exit refuses the answer names the hop.
 */

const resolver = tableResolver({ 'origin.test': ['127.0.0.1'] });

type Refusal = '403' | '407' | '502' | 'socks';

/** A hop that refuses everything: HTTP 403/407/502 to CONNECT and to absolute-form requests, or a SOCKS5 server answering "not allowed" (0x02). */
async function refusingHop(kind: Refusal): Promise<{ url: string; label: string; seen: () => number; close(): Promise<void> }> {
  let seen = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    if (kind === 'socks') {
      let stage = 0;
      s.on('data', (d: Buffer) => {
        if (stage === 0) {
          // Greeting: take username/password when offered, else no authentication.
          const methods = [...d.subarray(2, 2 + d[1]!)];
          stage = methods.includes(2) ? 1 : 2;
          s.write(Buffer.from([5, methods.includes(2) ? 2 : 0]));
        } else if (stage === 1) {
          stage = 2;
          s.write(Buffer.from([1, 0]));
        } else {
          seen++;
          s.end(Buffer.from([5, 0x02, 0, 1, 0, 0, 0, 0, 0, 0]));
        }
      });
      return;
    }
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      seen++;
      const reason = kind === '403' ? 'Forbidden' : kind === '407' ? 'Proxy Authentication Required' : 'Bad Gateway';
      const extra =
        kind === '407'
          ? 'proxy-authenticate: Basic realm="hop"\r\n'
          : `proxy-status: refuser; error=${kind === '403' ? 'http_request_denied' : 'destination_unavailable'}\r\n`;
      s.end(`HTTP/1.1 ${kind} ${reason}\r\n${extra}content-length: 0\r\nconnection: close\r\n\r\n`);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const scheme = kind === 'socks' ? 'socks5' : 'http';
  return {
    url: `${scheme}://hopuser:hoppass@127.0.0.1:${port}`,
    label: `${scheme}://127.0.0.1:${port}`,
    seen: () => seen,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('recover through another exit when a hop refuses (issue 15)', () => {
  let origin: WhoAmI;
  let good: PoolProxy;
  let goodUrl: string;
  let goodLabel: string;
  before(async () => {
    origin = await whoAmI();
    good = await startUpstreamGatewise('good', resolver);
    goodUrl = `http://${USER}:${PASSWORD}@127.0.0.1:${good.port}`;
    goodLabel = `http://127.0.0.1:${good.port}`;
  });
  after(async () => {
    await good.close();
    await origin.close();
  });

  for (const kind of ['403', '407', '502', 'socks'] as const) {
    it(`a hop answering ${kind === 'socks' ? 'a SOCKS5 refusal' : kind}: CONNECT, SOCKS5 and plain GET succeed through the other exit, and the refusing exit is marked`, async () => {
      const bad = await refusingHop(kind);
      // The refusing exit comes first in the rotation: every kind of request meets it first.
      const p = await startPoolProxy({ egress: { pools: { rot: { proxies: [bad.url, goodUrl], strategy: 'round-robin', failure: { threshold: 1, cooldown: '30s' } } }, defaultPool: 'rot' } });
      try {
        const c = await connectGet(p.port, 'origin.test', origin.port);
        assert.match(c.connect, /^HTTP\/1\.1 200/, c.connect);
        assert.match(c.connect, new RegExp(`x-gatewise-exit: ${goodLabel}`));
        assert.equal(c.body, '127.0.0.1');
        const pool = p.proxy.egress.pools.get('rot')!;
        assert.equal(pool.marker.available(bad.label, 'origin.test'), false, 'the refusing exit cools down (for this destination at least)');
        assert.ok(bad.seen() >= 1, 'the refusing hop was asked');
        // The mark lasts 30 s: fresh pools for SOCKS5 and plain HTTP, so each meets the refusing hop first.
        for (const via of ['socks5', 'http'] as const) {
          const q = await startPoolProxy({ egress: { pools: { rot: { proxies: [bad.url, goodUrl], strategy: 'round-robin', failure: { threshold: 1, cooldown: '30s' } } }, defaultPool: 'rot' } });
          try {
            const before = bad.seen();
            if (via === 'socks5') assert.equal(await socksGet(q.port, 'origin.test', origin.port), '127.0.0.1');
            else {
              const r = await proxyGet(q.port, `http://origin.test:${origin.port}/`);
              assert.equal(r.status, 200, `${r.status} ${String(r.headers['proxy-status'])}`);
              assert.equal(r.headers['x-gatewise-exit'], goodLabel);
            }
            assert.equal(bad.seen(), before + 1, `${via}: the refusing hop was tried first`);
            await waitFor(() => accessLines(q.lines).length >= 1);
            assert.equal(accessLines(q.lines)[0]!.exitRetries, 1, `${via}: the record counts the other exit`);
          } finally {
            await q.close();
          }
        }
      } finally {
        await p.close();
        await bad.close();
      }
    });
  }

  it('a sticky session pinned to a refusing exit re-pins and succeeds, and stays on its new exit', async () => {
    const bad = await refusingHop('403');
    const p = await startPoolProxy({ egress: { pools: { rot: { proxies: [bad.url, goodUrl], failure: { threshold: 1, cooldown: '30s' } } }, defaultPool: 'rot' } });
    try {
      const pool = p.proxy.egress.pools.get('rot')!;
      // Pin the session to the refusing exit, as a first pick at random may have.
      pool.sessions.pin(`${USER}|s1`, bad.label, 600_000, 600_000);
      const user = `${USER}-session-s1`;
      for (const attempt of ['CONNECT', 'GET', 'CONNECT again'] as const) {
        if (attempt === 'GET') {
          const r = await proxyGet(p.port, `http://origin.test:${origin.port}/`, user);
          assert.equal(r.status, 200, attempt);
          assert.equal(r.headers['x-gatewise-exit'], goodLabel);
          assert.equal(r.headers['x-gatewise-session-repinned'], undefined, 'already on its new exit');
        } else {
          const c = await connectGet(p.port, 'origin.test', origin.port, user);
          assert.match(c.connect, /^HTTP\/1\.1 200/, attempt);
          assert.match(c.connect, new RegExp(`x-gatewise-exit: ${goodLabel}`));
          if (attempt === 'CONNECT') assert.match(c.connect, /x-gatewise-session-repinned: 1/i);
        }
      }
      assert.equal(bad.seen(), 1, 'the refusing exit was tried once, then the session moved');
      assert.equal(pool.sessions.get(`${USER}|s1`)?.exitId, goodLabel);
      await waitFor(() => accessLines(p.lines).some((l) => l.repinned === true));
    } finally {
      await p.close();
      await bad.close();
    }
  });

  it('every exit refusing: the client gets the refusal with the hop named (next-hop, received-status), for CONNECT, SOCKS5 and plain HTTP', async () => {
    const b403 = await refusingHop('403');
    const b502 = await refusingHop('502');
    const socks = await refusingHop('socks');
    const p = await startPoolProxy({ egress: { pools: { bad: { proxies: [b403.url, b502.url], strategy: 'round-robin', failure: { threshold: 5 } }, sb: { proxies: [socks.url], failure: { threshold: 5 } } }, defaultPool: 'bad' } });
    try {
      const c = await connectGet(p.port, 'origin.test', origin.port);
      console.log(`every exit refusing, CONNECT answer: ${c.connect.split('\r\n').filter((l) => /^HTTP|^proxy-status/i.test(l)).join(' | ')}`);
      // Both were tried; the answer is the last hop's refusal, named.
      assert.equal(b403.seen() + b502.seen(), 2, 'both exits were tried');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(c.connect)![1]);
      const last = b502.seen() === 1 && /received-status=502/.test(c.connect) ? b502 : b403;
      assert.ok(status === 403 || status === 503, c.connect);
      assert.match(c.connect, new RegExp(`proxy-status: [^\\r]*next-hop="${last.label}"`, 'i'));
      assert.match(c.connect, /received-status=(403|502)/);
      assert.match(c.connect, /error=(http_request_denied|destination_unavailable)/);
      // The access-log line of the failed tunnel names the pool and the hop that refused last.
      await waitFor(() => accessLines(p.lines).some((l) => l.protocol === 'connect'));
      const line = accessLines(p.lines).find((l) => l.protocol === 'connect')!;
      assert.equal(line.pool, 'bad', JSON.stringify(line));
      assert.equal(line.exit, last.label, JSON.stringify(line));
      assert.equal(line.exitRetries, 1, JSON.stringify(line));
      // SOCKS5 through the refusing SOCKS5 exit: the client gets a SOCKS refusal (0x02, not allowed).
      await assert.rejects(
        SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: p.port, type: 5, userId: `${USER}-pool-sb`, password: PASSWORD }, command: 'connect', destination: { host: 'origin.test', port: origin.port }, timeout: 5000 }),
        /Not allowed|ruleset|refused|Socks5 proxy rejected/i,
      );
      // Plain HTTP: the hop's own answer passed on (its Proxy-Status names it), once every exit was tried.
      const r = await proxyGet(p.port, `http://origin.test:${origin.port}/`);
      assert.ok(r.status === 403 || r.status === 502, String(r.status));
      assert.match(String(r.headers['proxy-status']), /refuser; error=/);
    } finally {
      await p.close();
      await b403.close();
      await b502.close();
      await socks.close();
    }
  });

  it('plain HTTP through a pool whose exits cannot be reached: the log line names the pool, the last exit and the exits tried', async () => {
    const dead = async (): Promise<number> => {
      const srv = createServer();
      srv.listen(0, '127.0.0.1');
      await once(srv, 'listening');
      const port = (srv.address() as AddressInfo).port;
      await new Promise<void>((r) => srv.close(() => r()));
      return port;
    };
    const a = `http://127.0.0.1:${await dead()}`;
    const b = `http://127.0.0.1:${await dead()}`;
    const p = await startPoolProxy({ egress: { pools: { gone: { proxies: [a, b], strategy: 'round-robin', failure: { threshold: 5 } } }, defaultPool: 'gone' } });
    try {
      const r = await proxyGet(p.port, `http://origin.test:${origin.port}/`);
      assert.equal(r.status, 502);
      await waitFor(() => accessLines(p.lines).some((l) => l.protocol === 'http'));
      const line = accessLines(p.lines).find((l) => l.protocol === 'http')!;
      assert.equal(line.pool, 'gone', JSON.stringify(line));
      assert.ok([a, b].some((u) => String(line.exit).includes(new URL(u).port)), `the last exit tried is named: ${JSON.stringify(line)}`);
      assert.equal(line.exitRetries, 1, JSON.stringify(line));
      assert.equal(line.error, 'connection_refused', JSON.stringify(line));
    } finally {
      await p.close();
    }
  });
});

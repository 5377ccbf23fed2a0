import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { accessLines, refusedPort, tableResolver, udpEcho, waitFor } from '../forward/helpers.js';
import { associate, udpClient, udpFrame } from '../helpers/socks-udp.js';
import { SocksClient } from 'socks';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { PASSWORD, USER, connectGet, proxyGet, socksGet, startPoolProxy, startUpstreamGatewise, whoAmI, type PoolProxy, type WhoAmI } from './helpers.js';

const resolver = tableResolver({ 'good.test': ['127.0.0.1'], 'bad.test': ['127.0.0.1'], 'origin.test': ['127.0.0.1'] });

function httpUrl(p: PoolProxy, pass = PASSWORD): string {
  return `http://${USER}:${pass}@127.0.0.1:${p.port}`;
}
function socksUrl(p: PoolProxy): string {
  return `socks5://${USER}:${PASSWORD}@127.0.0.1:${p.port}`;
}
function upstreamHits(p: PoolProxy): number {
  return accessLines(p.lines).filter((l) => l.error === undefined).length;
}

describe('upstream proxy pools (rotating exits)', () => {
  let origin: WhoAmI;
  let u1: PoolProxy;
  let u2: PoolProxy;
  let dead: number;
  before(async () => {
    origin = await whoAmI();
    u1 = await startUpstreamGatewise('up1', resolver);
    u2 = await startUpstreamGatewise('up2', resolver);
    dead = await refusedPort();
  });
  after(async () => {
    await u1.close();
    await u2.close();
    await origin.close();
  });

  it('rotates round-robin over an HTTP and a SOCKS5 upstream, for HTTP, CONNECT and SOCKS5', async () => {
    const p = await startPoolProxy({ egress: { pools: { rot: { proxies: [httpUrl(u1), socksUrl(u2)], strategy: 'round-robin' } }, defaultPool: 'rot' } });
    try {
      const exits: string[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await proxyGet(p.port, `http://origin.test:${origin.port}/`);
        assert.equal(r.status, 200, r.body);
        exits.push(String(r.headers['x-gatewise-exit']));
      }
      assert.deepEqual(new Set(exits), new Set([`http://127.0.0.1:${u1.port}`, `socks5://127.0.0.1:${u2.port}`]));
      assert.notEqual(exits[0], exits[1]);
      const c = await connectGet(p.port, 'origin.test', origin.port);
      assert.match(c.connect, /^HTTP\/1\.1 200/);
      assert.equal(c.body, '127.0.0.1');
      assert.equal(await socksGet(p.port, 'origin.test', origin.port), '127.0.0.1');
      // Plain HTTP through the HTTP upstream went in absolute-form (the upstream logs an http request).
      await waitFor(() => accessLines(u1.lines).some((l) => l.protocol === 'http'));
      assert.ok(accessLines(u1.lines).some((l) => l.protocol === 'http' && l.destination === `origin.test:${origin.port}`));
      assert.ok(accessLines(u2.lines).some((l) => l.protocol === 'socks5'));
    } finally {
      await p.close();
    }
  });

  it('chains Connector over Connector: HTTP CONNECT to the first upstream, SOCKS5 through it to the second', async () => {
    const p = await startPoolProxy({ egress: { pools: { chain: { proxies: [{ chain: [httpUrl(u1), socksUrl(u2)] }] } }, defaultPool: 'chain' } });
    try {
      const before1 = upstreamHits(u1);
      const before2 = upstreamHits(u2);
      const r = await proxyGet(p.port, `http://origin.test:${origin.port}/`);
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-gatewise-exit'], `http://127.0.0.1:${u1.port} > socks5://127.0.0.1:${u2.port}`);
      assert.equal(await socksGet(p.port, 'origin.test', origin.port), '127.0.0.1');
      await waitFor(() => upstreamHits(u2) >= before2 + 2);
      assert.ok(upstreamHits(u2) >= before2 + 2);
      assert.ok(accessLines(u1.lines).length > before1);
    } finally {
      await p.close();
    }
  });

  it('retries through another exit when the first refuses, and cools the dead exit', async () => {
    const p = await startPoolProxy({
      egress: { pools: { rot: { proxies: [`http://127.0.0.1:${dead}`, httpUrl(u1)], strategy: 'round-robin', failure: { threshold: 1, cooldown: '30s' } } }, defaultPool: 'rot' },
    });
    try {
      for (let i = 0; i < 4; i++) {
        const r = await proxyGet(p.port, `http://origin.test:${origin.port}/`);
        assert.equal(r.status, 200);
        assert.equal(r.headers['x-gatewise-exit'], `http://127.0.0.1:${u1.port}`);
      }
      const c = await connectGet(p.port, 'origin.test', origin.port);
      assert.match(c.connect, /^HTTP\/1\.1 200/);
      await waitFor(() => accessLines(p.lines).length >= 5);
      assert.equal(accessLines(p.lines).filter((l) => l.exitRetries === 1).length, 1);
      assert.ok(p.proxy.egress.pools.get('rot')!.marker.down(`http://127.0.0.1:${dead}`));
    } finally {
      await p.close();
    }
  });

  it('a 407 from an upstream marks that exit and the request goes through another', async () => {
    const p = await startPoolProxy({
      egress: { pools: { rot: { proxies: [httpUrl(u1, 'wrong'), httpUrl(u2)], strategy: 'round-robin', failure: { threshold: 1 } } }, defaultPool: 'rot' },
    });
    try {
      const c = await connectGet(p.port, 'origin.test', origin.port);
      assert.match(c.connect, /^HTTP\/1\.1 200/);
      assert.match(c.connect, new RegExp(`x-gatewise-exit: http://127.0.0.1:${u2.port}`));
      assert.ok(p.proxy.egress.pools.get('rot')!.marker.down(`http://127.0.0.1:${u1.port}`));
    } finally {
      await p.close();
    }
  });

  it("a 502 from an upstream on CONNECT keeps its cause, names the exit, and cools the exit for that domain only", async () => {
    const p = await startPoolProxy({ egress: { pools: { one: { proxies: [httpUrl(u1)], failure: { threshold: 1, cooldown: '30s' }, maxAttempts: 1 } }, defaultPool: 'one' } });
    try {
      const bad = await connectGet(p.port, 'bad.test', dead);
      assert.match(bad.connect, /^HTTP\/1\.1 502/);
      assert.match(bad.connect, /proxy-status: [^\r]*error=connection_refused/i);
      assert.match(bad.connect, new RegExp(`next-hop="http://127.0.0.1:${u1.port}"`));
      const good = await connectGet(p.port, 'good.test', origin.port);
      assert.match(good.connect, /^HTTP\/1\.1 200/);
      const again = await connectGet(p.port, 'bad.test', origin.port);
      assert.match(again.connect, /^HTTP\/1\.1 503/);
      assert.match(again.connect, /error=destination_unavailable/);
      assert.match(again.connect, /cooling down for bad\.test/);
    } finally {
      await p.close();
    }
  });

  it('SOCKS5 UDP goes through a SOCKS5 upstream (its UDP ASSOCIATE)', async () => {
    const p = await startPoolProxy({ egress: { pools: { s: { proxies: [`http://127.0.0.1:${dead}`, socksUrl(u2)] } }, defaultPool: 's' } });
    const echo = await udpEcho();
    const { sock: client, port, inbox } = await udpClient();
    try {
      const assoc = await associate(p.port, { user: USER, password: PASSWORD }, port);
      client.send(udpFrame('127.0.0.1', echo.port, 'hello'), assoc.remoteHost!.port, assoc.remoteHost!.host);
      assert.ok(await waitFor(() => inbox.length > 0), 'a reply came back');
      const reply = SocksClient.parseUDPFrame(inbox[0]!);
      assert.equal(reply.data.toString(), 'echo:hello');
      assert.equal(reply.remoteHost.port, echo.port);
      assoc.socket.destroy();
      assert.ok(await waitFor(() => accessLines(u2.lines).some((l) => l.protocol === 'socks5-udp' && (l.datagramsUp as number) >= 1)));
      assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.protocol === 'socks5-udp' && l.exit === `socks5://127.0.0.1:${u2.port}`)));
    } finally {
      client.close();
      echo.close();
      await p.close();
    }
  });

  it('a denied IP literal, in any spelling a resolver reads as that address, is refused through every way out: direct, an HTTP upstream (plain HTTP and CONNECT), a SOCKS5 upstream (seeded)', async () => {
    // Finding (adversarial review, session 29): a plain-HTTP request through an HTTP upstream
    // proxy went out in absolute-form without the address rules, so a denied literal was reached.
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let round = 0; round < 2; round++) {
        const denied = `127.0.${rand.int(250) + 1}.${rand.int(250) + 2}`;
        const secret = await whoAmI(denied);
        const p = await startPoolProxy({
          rules: { deny: [{ cidrs: [`${denied}/32`] }] },
          egress: { pools: { h: { proxies: [httpUrl(u1)] }, s: { proxies: [socksUrl(u2)] } } },
        });
        try {
          // The address as written, and as a resolver also reads it (inet_aton forms, a trailing
          // dot): named as a host, such a spelling went to an upstream proxy unjudged (session 30).
          const [a, b, c, d] = denied.split('.').map(Number) as [number, number, number, number];
          const spellings = [
            denied,
            `${denied}.`,
            `${a}.${b}.${c * 256 + d}`,
            `${a}.${b * 65536 + c * 256 + d}`,
            String(((a << 24) | (b << 16) | (c << 8) | d) >>> 0),
            `0x${a.toString(16)}.${b}.${c}.${d}`,
            `0${a.toString(8)}.${b}.0x${c.toString(16)}.${d}`,
          ];
          for (const pool of [undefined, 'h', 's']) {
            const user = pool === undefined ? USER : `${USER}-pool-${pool}`;
            for (const host of [denied, rand.pick(spellings), rand.pick(spellings)]) {
              const where = `${host} (${denied}), ${pool ?? 'direct'}, round ${round}`;
              const r = await proxyGet(p.port, `http://${host}:${secret.port}/`, user);
              assert.equal(r.status, 502, `${where}: ${r.status} ${r.body}`);
              assert.match(String(r.headers['proxy-status']), /error=destination_ip_prohibited/, where);
              const cn = await connectGet(p.port, host, secret.port, user);
              assert.match(cn.connect, /^HTTP\/1\.1 502 /, `${where}: ${cn.connect}`);
              assert.match(cn.connect, /destination_ip_prohibited/, `${where}: ${cn.connect}`);
              // SOCKS5 names the host as a domain (ATYP 3) unless it is a dotted quad.
              await assert.rejects(socksGet(p.port, host, secret.port, user, PASSWORD), /NotAllowed/, where);
            }
          }
          assert.deepEqual(secret.seen, [], `the denied address was reached (seed ${rand.seed})`);
        } finally {
          await p.close();
          await secret.close();
        }
      }
    });
  });

  it('re-pins a session when its exit dies, and says so', async () => {
    const a = await startUpstreamGatewise('upa', resolver);
    const b = await startUpstreamGatewise('upb', resolver);
    const p = await startPoolProxy({ egress: { pools: { rot: { proxies: [httpUrl(a), httpUrl(b)], failure: { threshold: 1 } } }, defaultPool: 'rot' } });
    try {
      const user = `${USER}-session-keep`;
      const first = await proxyGet(p.port, `http://origin.test:${origin.port}/`, user);
      const pinned = String(first.headers['x-gatewise-exit']);
      for (let i = 0; i < 3; i++) assert.equal((await proxyGet(p.port, `http://origin.test:${origin.port}/`, user)).headers['x-gatewise-exit'], pinned);
      const victim = pinned.endsWith(`:${a.port}`) ? a : b;
      await victim.close();
      const moved = await proxyGet(p.port, `http://origin.test:${origin.port}/`, user);
      assert.equal(moved.status, 200);
      assert.notEqual(moved.headers['x-gatewise-exit'], pinned);
      assert.equal(moved.headers['x-gatewise-session-repinned'], '1');
      const next = await proxyGet(p.port, `http://origin.test:${origin.port}/`, user);
      assert.equal(next.headers['x-gatewise-exit'], moved.headers['x-gatewise-exit']);
      assert.equal(next.headers['x-gatewise-session-repinned'], undefined);
      await waitFor(() => accessLines(p.lines).some((l) => l.repinned === true));
      assert.ok(accessLines(p.lines).some((l) => l.repinned === true && l.session === 'keep'));
    } finally {
      await p.close();
      await a.close();
      await b.close();
    }
  });
});

describe('through tinyproxy', () => {
  const bin = '/usr/bin/tinyproxy';
  let child: ChildProcess | undefined;
  let dir = '';
  let port = 0;
  let origin: WhoAmI;
  before(async () => {
    if (!existsSync(bin)) return;
    origin = await whoAmI();
    dir = await mkdtemp(join(tmpdir(), 'gatewise-tinyproxy-'));
    port = await refusedPort();
    await writeFile(join(dir, 'tinyproxy.conf'), `Port ${port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\nMaxClients 20\nLogLevel Error\n`);
    child = spawn(bin, ['-d', '-c', join(dir, 'tinyproxy.conf')], { stdio: 'ignore' });
    const up = await waitFor(() => false, 1, 1);
    void up;
    for (let i = 0; i < 50; i++) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
      if (ok) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  after(async () => {
    child?.kill('SIGTERM');
    await origin?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('HTTP (absolute-form) and CONNECT leave through tinyproxy', { skip: existsSync(bin) ? false : 'tinyproxy is not installed (/usr/bin/tinyproxy)' }, async () => {
    const p = await startPoolProxy({ egress: { pools: { tp: { proxies: [`http://127.0.0.1:${port}`] } }, defaultPool: 'tp' } });
    try {
      const r = await proxyGet(p.port, `http://127.0.0.1:${origin.port}/`);
      assert.equal(r.status, 200);
      assert.equal(r.body, '127.0.0.1');
      assert.match(String(r.headers.via ?? ''), /tinyproxy/i);
      const c = await connectGet(p.port, '127.0.0.1', origin.port);
      assert.match(c.connect, /^HTTP\/1\.1 200/);
      assert.equal(c.body, '127.0.0.1');
      assert.equal(await socksGet(p.port, '127.0.0.1', origin.port), '127.0.0.1');
    } finally {
      await p.close();
    }
  });
});

async function portOpen(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('through squid', () => {
  const bin = '/usr/sbin/squid';
  let child: ChildProcess | undefined;
  let dir = '';
  let port = 0;
  let origin: WhoAmI;
  let dead = 0;
  let up = false;
  before(async () => {
    if (!existsSync(bin)) return;
    origin = await whoAmI();
    dead = await refusedPort();
    dir = await mkdtemp(join(tmpdir(), 'gatewise-squid-'));
    await chmod(dir, 0o777);
    port = await refusedPort();
    const conf = [
      `http_port 127.0.0.1:${port}`,
      'http_access allow all',
      'cache deny all',
      'cache_mem 8 MB',
      `pid_filename ${join(dir, 'squid.pid')}`,
      `cache_log ${join(dir, 'cache.log')}`,
      'access_log none',
      'cache_store_log none',
      `coredump_dir ${dir}`,
      'shutdown_lifetime 0 seconds',
      'dns_v4_first on',
    ].join('\n');
    await writeFile(join(dir, 'squid.conf'), `${conf}\n`);
    child = spawn(bin, ['-N', '-f', join(dir, 'squid.conf')], { stdio: 'ignore' });
    for (let i = 0; i < 100 && !up; i++) {
      up = await portOpen(port);
      if (!up) await new Promise((r) => setTimeout(r, 50));
    }
  });
  after(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child?.kill('SIGKILL'), 3000);
      await new Promise((r) => child!.once('exit', r));
      clearTimeout(t);
    }
    await origin?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('HTTP and CONNECT through squid; its refusal on CONNECT names squid as next hop', { skip: existsSync(bin) ? false : 'squid is not installed (/usr/sbin/squid)' }, async (t) => {
    if (!up) {
      t.skip('squid did not start listening within 5 s');
      return;
    }
    const p = await startPoolProxy({ egress: { pools: { sq: { proxies: [`http://127.0.0.1:${port}`], maxAttempts: 1 } }, defaultPool: 'sq' } });
    try {
      const r = await proxyGet(p.port, `http://127.0.0.1:${origin.port}/`);
      assert.equal(r.status, 200);
      assert.equal(r.body, '127.0.0.1');
      assert.match(String(r.headers.via ?? ''), /squid/i);
      const c = await connectGet(p.port, '127.0.0.1', origin.port);
      assert.match(c.connect, /^HTTP\/1\.1 200/);
      assert.equal(c.body, '127.0.0.1');
      const bad = await connectGet(p.port, '127.0.0.1', dead);
      assert.match(bad.connect, /^HTTP\/1\.1 50[23]/);
      assert.match(bad.connect, new RegExp(`next-hop="http://127.0.0.1:${port}"`));
      assert.match(bad.connect, /upstream proxy http:\/\/127\.0\.0\.1:\d+ answered 50[23] to CONNECT/);
    } finally {
      await p.close();
    }
  });
});

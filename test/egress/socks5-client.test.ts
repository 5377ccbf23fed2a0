import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { Failure } from '../../src/failure/index.js';
import { scopeOf } from '../../src/egress/exit-failure.js';
import { parseProxyUrl } from '../../src/egress/proxy-url.js';
import { encodeSocks5Address, socks5Handshake } from '../../src/egress/socks5-client.js';

/** What the scripted upstream does once it has read the client's request. */
type Script = (sock: Socket, request: Buffer) => void;

/** A SOCKS5 upstream on loopback that greets, optionally checks RFC 1929, then runs the script. */
async function scriptedUpstream(opts: { method?: number; authStatus?: number; script: Script; greeting?: Buffer }): Promise<{ server: Server; port: number }> {
  const server = createServer((sock) => {
    sock.on('error', () => {});
    let stage = 0;
    let buf = Buffer.alloc(0);
    sock.on('data', (c) => {
      buf = Buffer.concat([buf, c]);
      if (stage === 0 && buf.length >= 2 && buf.length >= 2 + buf[1]!) {
        buf = buf.subarray(2 + buf[1]!);
        sock.write(opts.greeting ?? Buffer.from([5, opts.method ?? 0]));
        stage = (opts.method ?? 0) === 2 ? 1 : 2;
      }
      if (stage === 1 && buf.length >= 2 && buf.length >= 3 + buf[1]! && buf.length >= 3 + buf[1]! + buf[2 + buf[1]!]!) {
        const used = 3 + buf[1]! + buf[2 + buf[1]!]!;
        buf = buf.subarray(used);
        sock.write(Buffer.from([1, opts.authStatus ?? 0]));
        stage = 2;
      }
      if (stage === 2 && buf.length >= 4) {
        stage = 3;
        opts.script(sock, buf);
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

async function handshake(port: number, url = `socks5://127.0.0.1:${port}`, timeoutMs = 2000): Promise<unknown> {
  const sock = connect({ host: '127.0.0.1', port });
  sock.on('error', () => {});
  return socks5Handshake(sock, parseProxyUrl(url), 'connect', { host: 'example.test', port: 443 }, timeoutMs).then(
    (r) => {
      r.socket.destroy();
      return r;
    },
    (err: unknown) => err,
  );
}

const EXPECTED: Record<number, [string, string]> = {
  0x01: ['destination_unavailable', 'domain'],
  // The hop's rules refuse this destination: another exit may take it (issue 15), so the exit is marked for the domain.
  0x02: ['http_request_denied', 'domain'],
  0x03: ['destination_ip_unroutable', 'domain'],
  0x04: ['destination_unavailable', 'domain'],
  0x05: ['connection_refused', 'domain'],
  0x06: ['connection_timeout', 'domain'],
  0x07: ['proxy_configuration_error', 'exit'],
  0x08: ['proxy_configuration_error', 'exit'],
};

describe('SOCKS5 client handshake: refusals named by reply code, never by message', () => {
  const servers: Server[] = [];
  after(() => servers.forEach((s) => s.close()));

  it('maps every reply code 0x01–0xFF to a failure type and scope', async () => {
    let code = 0;
    const up = await scriptedUpstream({ script: (sock) => sock.end(Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0])) });
    servers.push(up.server);
    // All of RFC 1928's codes, and unassigned ones (a proxy may send anything).
    for (code = 1; code <= 0xff; code++) {
      const f = await handshake(up.port);
      assert.ok(f instanceof Failure, `reply ${code}: ${String(f)}`);
      const [type, scope] = EXPECTED[code] ?? ['destination_unavailable', 'domain'];
      assert.equal(f.type, type, `reply 0x${code.toString(16)}`);
      assert.equal(scopeOf(f), scope, `reply 0x${code.toString(16)} scope`);
      assert.equal(f.nextHop, `socks5://127.0.0.1:${up.port}`);
      assert.match(f.detail, new RegExp(`0x${code.toString(16).padStart(2, '0')}`));
    }
  });

  it('succeeds with the bound address of every address type, and hands back bytes sent behind the reply', async () => {
    for (const [atyp, addr, host] of [
      [1, Buffer.from([10, 1, 2, 3]), '10.1.2.3'],
      [4, Buffer.from('00000000000000000000000000000001', 'hex'), '::1'],
      [4, Buffer.alloc(16), '::'],
      [3, Buffer.concat([Buffer.from([9]), Buffer.from('relay.box')]), 'relay.box'],
    ] as const) {
      const up = await scriptedUpstream({ script: (sock) => sock.write(Buffer.concat([Buffer.from([5, 0, 0, atyp]), addr, Buffer.from([0x1f, 0x90]), Buffer.from('early')])) });
      servers.push(up.server);
      const sock = connect({ host: '127.0.0.1', port: up.port });
      const r = await socks5Handshake(sock, parseProxyUrl(`socks5://127.0.0.1:${up.port}`), 'connect', { host: '::ffff:1.2.3.4', port: 80 }, 2000);
      assert.deepEqual(r.bound, { host, port: 8080 });
      const [early] = (await once(r.socket, 'data')) as [Buffer];
      assert.equal(early.toString(), 'early');
      r.socket.destroy();
    }
  });

  it('wrong credentials, no acceptable method, not SOCKS5, a close and a stall are each named', async () => {
    const cases: Array<[Parameters<typeof scriptedUpstream>[0], string, string, string?]> = [
      [{ method: 2, authStatus: 1, script: () => {} }, 'proxy_configuration_error', 'exit', 'socks5://u:p@127.0.0.1:PORT'],
      [{ method: 0xff, script: () => {} }, 'proxy_configuration_error', 'exit'],
      [{ method: 2, script: () => {} }, 'proxy_configuration_error', 'exit'], // asks for a password we do not have
      [{ greeting: Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'), script: () => {} }, 'proxy_configuration_error', 'exit'],
      [{ script: (sock) => sock.destroy() }, 'connection_terminated', 'exit'],
      [{ script: () => {} }, 'connection_timeout', 'domain'],
    ];
    for (const [opts, type, scope, url] of cases) {
      const up = await scriptedUpstream(opts);
      servers.push(up.server);
      const f = await handshake(up.port, url?.replace('PORT', String(up.port)), 300);
      assert.ok(f instanceof Failure, String(f));
      assert.equal(f.type, type, f.detail);
      assert.equal(scopeOf(f), scope, f.detail);
    }
  });

  it('a refused connection to the proxy is connection_refused (by its code), the exit\'s fault', async () => {
    const s = createServer();
    s.listen(0, '127.0.0.1');
    await once(s, 'listening');
    const port = (s.address() as AddressInfo).port;
    s.close();
    await once(s, 'close');
    const f = await handshake(port);
    assert.ok(f instanceof Failure);
    assert.equal(f.type, 'connection_refused');
    assert.equal(scopeOf(f), 'exit');
  });
});

describe('SOCKS5 address encoding', () => {
  let seed = Number(process.env.SEED ?? Date.now() % 100000);
  it('encodes IPv4, IPv6 (compressed, embedded IPv4) and names as RFC 1928 wants (seeded)', () => {
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed / 2 ** 31);
    const start = seed;
    for (let i = 0; i < 500; i++) {
      const groups = Array.from({ length: 8 }, () => Math.floor(rnd() * 0x10000));
      const full = groups.map((g) => g.toString(16)).join(':');
      const compressed = new URL(`http://[${full}]/`).hostname.slice(1, -1);
      const enc = encodeSocks5Address(compressed, 443);
      assert.equal(enc[0], 4, `seed ${start}`);
      for (let g = 0; g < 8; g++) assert.equal(enc.readUInt16BE(1 + g * 2), groups[g], `seed ${start}: ${compressed}`);
      assert.equal(enc.readUInt16BE(17), 443);
    }
    assert.deepEqual([...encodeSocks5Address('::ffff:1.2.3.4', 1)], [4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4, 0, 1]);
    assert.deepEqual([...encodeSocks5Address('10.0.0.1', 80)], [1, 10, 0, 0, 1, 0, 80]);
    assert.deepEqual([...encodeSocks5Address('ab', 80)], [3, 2, 0x61, 0x62, 0, 80]);
    assert.throws(() => encodeSocks5Address('x'.repeat(256), 1), /1-255 bytes/);
  });
});

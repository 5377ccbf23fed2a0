import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import test from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfigFile } from '../../src/config/load.js';
import { startForwardProxy } from '../../src/forward/index.js';
import { SourceAllowlist } from '../../src/tenants/index.js';
import { accessLines, basic, memoryLogger, readUntil, startOrigin, startTestProxy, userHashes, waitFor } from './helpers.js';

/** A connection to the proxy from a chosen loopback source address (127.0.0.x). */
function dialFrom(port: number, localAddress: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

async function exchange(port: number, from: string, bytes: string): Promise<string> {
  const s = await dialFrom(port, from);
  s.write(bytes);
  // The whole answer: a CONNECT's 200 or a refusal is its head; the origin's JSON (chunked, or
  // to the close its Connection: close brings) is read to its end. Waited for with the
  // failure guard. It was the 3 s default, and a CONNECT's answer ended every time by it:
  // the proxy says "Connection Established", which the case-sensitive match never saw.
  const whole = (b: Buffer): boolean => {
    const t = b.toString('latin1');
    return /\r\n\r\n/.test(t) && (/^HTTP\/1\.1 200 Connection established/i.test(t) || /\r\n\r\n[^]*\}$/.test(t) || t.endsWith('\r\n0\r\n\r\n') || /content-length: 0/i.test(t) || !/^HTTP\/1\.1 200/.test(t));
  };
  const got = await readUntil(s, whole, undefined, `the whole answer to ${JSON.stringify(bytes.split('\r\n')[0])} from ${from}`);
  s.destroy();
  return got.toString('latin1');
}

/** SOCKS5 greeting with the given methods from `from`; CONNECT to 127.0.0.1:port when a method is chosen. The method byte and the reply code. */
async function socks5(proxyPort: number, from: string, methods: number[], target: number): Promise<{ method: number; reply?: number }> {
  const s = await dialFrom(proxyPort, from);
  try {
    s.write(Buffer.from([0x05, methods.length, ...methods]));
    const m = await readUntil(s, (b) => b.length >= 2, undefined, `the SOCKS5 method choice (from ${from})`);
    const method = m[1]!;
    if (method !== 0x00) return { method };
    s.write(Buffer.from([0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, target >> 8, target & 0xff]));
    const r = await readUntil(s, (b) => b.length >= 10, undefined, `the SOCKS5 CONNECT reply (from ${from})`);
    return { method, reply: r[1] };
  } finally {
    s.destroy();
  }
}

/** A SOCKS4 CONNECT to 127.0.0.1:port with an empty USERID from `from`: the reply code. */
async function socks4(proxyPort: number, from: string, target: number): Promise<number> {
  const s = await dialFrom(proxyPort, from);
  try {
    s.write(Buffer.from([0x04, 0x01, target >> 8, target & 0xff, 127, 0, 0, 1, 0x00]));
    const r = await readUntil(s, (b) => b.length >= 8, undefined, `the SOCKS4 reply (from ${from})`);
    return r[1]!;
  } finally {
    s.destroy();
  }
}

test('IP allowlist: the source address picks the user over HTTP proxy, CONNECT, SOCKS5 (no-auth) and SOCKS4 (no USERID); params from the entry or the listener; other addresses still need a password', async () => {
  const origin = await startOrigin();
  const [hash] = await userHashes();
  const p = await startTestProxy({
    listeners: [{ address: '127.0.0.1', port: 0, usernameParams: 'pool-lo' }],
    auth: {
      required: true,
      users: [
        { name: 'alice', password: hash },
        { name: 'carol', allowFrom: ['127.0.0.2'] },
        { name: 'dave', password: hash, allowFrom: [{ cidr: '127.0.0.3/32', params: 'session-d1-pool-lo2' }] },
        { name: 'erin', allowFrom: ['127.0.0.5'], disabled: true },
      ],
    },
    egress: { pools: { lo: { addresses: ['127.0.0.1'] }, lo2: { addresses: ['127.0.0.1'] } } },
  });
  try {
    const get = `GET http://127.0.0.1:${origin.port}/x HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nConnection: close\r\n\r\n`;
    const connectReq = `CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`;
    // HTTP proxy, no credentials, from carol's address: served as carol, through the listener's pool.
    assert.match(await exchange(p.port, '127.0.0.2', get), /^HTTP\/1\.1 200/);
    // CONNECT from dave's range: his entry's own parameters (pool lo2).
    assert.match(await exchange(p.port, '127.0.0.3', connectReq), /^HTTP\/1\.1 200/);
    // Not on any allowlist, or on a disabled user's: a password is needed.
    assert.match(await exchange(p.port, '127.0.0.4', get), /^HTTP\/1\.1 407/);
    assert.match(await exchange(p.port, '127.0.0.5', connectReq), /^HTTP\/1\.1 407/);
    // Credentials still win from an allowlisted address.
    assert.match(await exchange(p.port, '127.0.0.2', get.replace('\r\n\r\n', `\r\nProxy-Authorization: ${basic()}\r\n\r\n`)), /^HTTP\/1\.1 200/);
    // SOCKS5: "no authentication" is chosen for an allowlisted address only.
    assert.deepEqual(await socks5(p.port, '127.0.0.2', [0x00], origin.port), { method: 0x00, reply: 0x00 });
    assert.deepEqual(await socks5(p.port, '127.0.0.4', [0x00], origin.port), { method: 0xff });
    // A client offering both gets username/password (credentials win).
    assert.deepEqual(await socks5(p.port, '127.0.0.2', [0x00, 0x02], origin.port), { method: 0x02 });
    // SOCKS4 without a USERID: the address decides too.
    assert.equal(await socks4(p.port, '127.0.0.2', origin.port), 0x5a);
    assert.equal(await socks4(p.port, '127.0.0.4', origin.port), 0x5b);
    assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.protocol === 'socks4' && l.user === 'carol') && accessLines(p.lines).length >= 9), `the nine exchanges' records (carol's SOCKS4 among them): ${JSON.stringify(accessLines(p.lines))}`);
    const access = accessLines(p.lines);
    const of = (proto: string, user: string) => access.filter((l) => l.protocol === proto && l.user === user);
    const carolHttp = of('http', 'carol')[0];
    assert.ok(carolHttp, JSON.stringify(access));
    assert.equal(carolHttp.status, 200);
    assert.equal(carolHttp.pool, 'lo', 'the listener\'s usernameParams');
    const daveTunnel = of('connect', 'dave')[0];
    assert.ok(daveTunnel, JSON.stringify(access));
    assert.equal(daveTunnel.pool, 'lo2', 'the entry\'s own params');
    assert.ok(of('socks5', 'carol').length >= 1, 'SOCKS5 no-auth as carol');
    assert.ok(of('http', 'alice').length >= 1, 'credentials win');
    assert.ok(of('socks4', 'carol').length >= 1, 'SOCKS4 as carol');
  } finally {
    await p.close();
    await origin.close();
  }
});

test('overlapping allowlists are a config error naming both entries; a user needs a password or an allowlist', async () => {
  const [hash] = await userHashes();
  const { logger } = memoryLogger();
  await assert.rejects(
    startForwardProxy(
      { listeners: [{ address: '127.0.0.1', port: 0 }], auth: { users: [{ name: 'carol', allowFrom: ['10.0.0.0/8'] }, { name: 'dave', password: hash, allowFrom: ['192.0.2.1', { cidr: '10.20.0.0/16' }] }] } },
      { logger },
    ),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const p = err.problems.find((x) => x.path === 'auth.users[1].allowFrom[1]');
      assert.ok(p, JSON.stringify(err.problems));
      assert.match(p.message, /10\.20\.0\.0\/16 of user dave overlaps allowFrom 10\.0\.0\.0\/8 of user carol/);
      return true;
    },
  );
  // A user needs a password or an allowlist.
  await assert.rejects(startForwardProxy({ listeners: [{ address: '127.0.0.1', port: 0 }], auth: { users: [{ name: 'nobody' }] } }, { logger }), (err: unknown) => err instanceof ConfigError && err.problems.some((x) => x.path === 'auth.users[0].password'));
});

test('gatewise check (and a reload) refuse a users file whose allowlist overlaps a config user\'s, by file, path and line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-allow-'));
  try {
    const users = join(dir, 'users.yaml');
    writeFileSync(users, 'users:\n  - name: dave\n    allowFrom:\n      - 192.0.2.1\n      - 10.1.2.3\n');
    const cfg = join(dir, 'gatewise.yaml');
    writeFileSync(cfg, `listeners: []\nforward:\n  listeners: [{ address: 127.0.0.1, port: 0 }]\n  auth:\n    usersFile: ${users}\n    users:\n      - { name: carol, allowFrom: [10.0.0.0/8] }\n`);
    await assert.rejects(loadConfigFile(cfg), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const p = err.problems.find((x) => x.path === 'users[0].allowFrom[1]');
      assert.ok(p, JSON.stringify(err.problems));
      assert.equal(p.file, users);
      assert.equal(p.line, 5);
      assert.match(p.message, /10\.1\.2\.3 of user dave overlaps allowFrom 10\.0\.0\.0\/8 of user carol/);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SourceAllowlist matches by family and prefix, IPv4-mapped IPv6 included (seeded family of ranges)', () => {
  const seed = Number(process.env.GATEWISE_SEED ?? Date.now() % 1e9);
  let x = seed;
  const rand = (): number => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < 200; i++) {
    const prefix = 8 + Math.floor(rand() * 25);
    const a = [10, Math.floor(rand() * 256), Math.floor(rand() * 256), Math.floor(rand() * 256)];
    const list = new SourceAllowlist([{ user: 'u', cidr: `${a.join('.')}/${prefix}` }]);
    const inside = a.join('.');
    assert.equal(list.match(inside)?.user, 'u', `seed ${seed}: ${inside} in ${inside}/${prefix}`);
    assert.equal(list.match(`::ffff:${inside}`)?.user, 'u', `seed ${seed}: mapped`);
    // Flip a bit just above the prefix: outside.
    const bit = prefix - 1;
    const out = [...a];
    out[Math.floor(bit / 8)]! ^= 1 << (7 - (bit % 8));
    assert.equal(list.match(out.join('.')), undefined, `seed ${seed}: ${out.join('.')} outside ${inside}/${prefix}`);
  }
  assert.equal(SourceAllowlist.of([]), undefined, 'no entries: no allowlist object (no per-request cost)');
});

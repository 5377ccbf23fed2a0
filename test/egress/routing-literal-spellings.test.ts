import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { literalAddress } from '../../src/egress/index.js';
import { canonicalAddress } from '../../src/net/ip-canonical.js';
import { dial, PASSWORD, readUntil, startTestProxy, USER, type TestProxy } from '../forward/helpers.js';
import { socks5NameBytes } from '../forward/front-clients.js';

/**
 * Review of session 35: the egress routing rules matched a rule's `hosts` by the text alone,
 * so a rule sending `127.0.0.2` through a pool was passed by another spelling of that address
 * (a SOCKS5 "domain" `2130706434`, `0x7f000002`, `127.2`; `[::ffff:127.0.0.2]` over CONNECT),
 * and the connection left by the default way instead of the operator's pool. Routing rules now
 * match hosts as the destination rules do (`HostPattern`): an IP address in every spelling.
 *
 * The pool binds its connections to 127.0.0.3; the origin on 127.0.0.2 (loopback) tells which
 * way each connection came by the source address it sees: 127.0.0.3 through the pool, 127.0.0.1
 * directly.
 */
const ROUTED = '127.0.0.2';
const POOL_SOURCE = '127.0.0.3';
const SPELLINGS = ['127.0.0.2', '127.0.0.2.', '2130706434', '0x7f000002', '0X7F000002', '0177.0.0.2', '127.2', '127.0.2', '0x7f.0.0.2', '00000000000177.0.0.2', '::ffff:127.0.0.2', '::ffff:7f00:2', '0:0:0:0:0:ffff:7f00:2'];

function connectBytes(host: string, port: number): string {
  const a = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return `CONNECT ${a} HTTP/1.1\r\nHost: ${a}\r\nProxy-Authorization: Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}\r\n\r\n`;
}

describe('egress routing rules naming an IP address', () => {
  let origin: Server;
  let originPort = 0;
  const seen: string[] = [];
  let p: TestProxy;

  before(async () => {
    origin = createServer((s) => {
      seen.push(s.remoteAddress ?? '');
      s.end('x');
    });
    origin.listen(0, ROUTED);
    await once(origin, 'listening');
    originPort = (origin.address() as AddressInfo).port;
    // Only loopback may be reached at all (belt and braces: a spelling misread goes nowhere).
    p = await startTestProxy({ rules: { allowPrivate: true, connectPorts: ['1-65535'], defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }] }, egress: { pools: { vpn: { addresses: [POOL_SOURCE] } }, routing: [{ hosts: [ROUTED], pool: 'vpn' }] } });
  });

  after(async () => {
    await p.close();
    origin.close();
  });

  async function sourceOf(bytes: Buffer | string, done: (b: Buffer) => boolean, what: string): Promise<string> {
    const before = seen.length;
    const c = await dial(p.port);
    c.on('error', () => {});
    try {
      c.write(bytes);
      await readUntil(c, done, undefined, what);
    } finally {
      c.destroy();
    }
    assert.equal(seen.length, before + 1, `${what}: the origin saw one connection`);
    return seen[seen.length - 1]!;
  }

  it('routes every spelling of the address through the rule’s pool, over SOCKS5 names and CONNECT', async () => {
    // Fail closed before any byte is sent: every spelling must decode to the loopback address
    // (a leading zero is octal to inet_aton: `0000000127.0.0.2` is 87.0.0.2, not loopback).
    for (const name of SPELLINGS) assert.equal(canonicalAddress(literalAddress(name)?.address ?? '')?.address, ROUTED, `${name} must decode to ${ROUTED}`);
    const wrong: string[] = [];
    for (const name of SPELLINGS) {
      if (!name.includes(':')) {
        // The tunnel is open once the origin's byte arrives after the 2 + 2 + 10 reply bytes.
        const src = await sourceOf(socks5NameBytes(name, originPort), (b) => b.length >= 15, `SOCKS5 ${name}`);
        if (src !== POOL_SOURCE) wrong.push(`SOCKS5 domain ${name}: left from ${src}`);
      }
      const src = await sourceOf(connectBytes(name, originPort), (b) => b.includes('\r\n\r\nx'), `CONNECT ${name}`);
      if (src !== POOL_SOURCE) wrong.push(`CONNECT ${name}: left from ${src}`);
    }
    assert.deepEqual(wrong, [], `${wrong.length} spellings left by another way than the rule's pool`);
  });

  it('leaves another address directly', async () => {
    const other = createServer((s) => s.end('x'));
    other.listen(0, '127.0.0.4');
    await once(other, 'listening');
    try {
      let from = '';
      other.removeAllListeners('connection');
      other.on('connection', (s) => {
        from = s.remoteAddress ?? '';
        s.end('x');
      });
      const c = await dial(p.port);
      c.write(connectBytes('127.0.0.4', (other.address() as AddressInfo).port));
      await readUntil(c, (b) => b.includes('\r\n\r\nx'), undefined, 'CONNECT 127.0.0.4');
      c.destroy();
      assert.notEqual(from, POOL_SOURCE, 'not through the pool');
    } finally {
      other.close();
    }
  });
});

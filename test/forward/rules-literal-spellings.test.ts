import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DestinationRules } from '../../src/forward/index.js';
import { PASSWORD, USER, basic, dial, rawExchange, readUntil, startOrigin, startTestProxy, tableResolver, type Origin, type TestProxy } from './helpers.js';
import { socks5NameBytes } from './front-clients.js';

/**
 * Adversarial review, session 35: a deny rule whose `hosts` names an IP address (the config
 * allows `hosts: ["127.0.0.2"]`, `hosts: ["::1"]`) matched only that spelling of it. A SOCKS5
 * or SOCKS4a client naming the address as a "domain" in an inet_aton form (`2130706434`,
 * `0x7f000002`, `0177.0.0.2`, `127.2`), or any client naming its IPv4-mapped IPv6 form
 * (`[::ffff:127.0.0.2]`, `[::ffff:7f00:2]`), reached the denied address. Every spelling below
 * decodes to 127.0.0.2 (loopback), where the lab origin listens: a bypass dials only loopback.
 */
const DENIED = '127.0.0.2';


function socks5Mapped(port: number): Buffer {
  const u = Buffer.from(USER);
  const p = Buffer.from(PASSWORD);
  const a = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 2]);
  const pb = Buffer.alloc(2);
  pb.writeUInt16BE(port);
  return Buffer.concat([Buffer.from([5, 1, 2, 1, u.length]), u, Buffer.from([p.length]), p, Buffer.from([5, 1, 0, 4]), a, pb]);
}

function socks4a(name: string, port: number): Buffer {
  const head = Buffer.from([4, 1, 0, 0, 0, 0, 0, 1]);
  head.writeUInt16BE(port, 2);
  return Buffer.concat([head, Buffer.from(`${USER}:${PASSWORD}`), Buffer.from([0]), Buffer.from(name, 'latin1'), Buffer.from([0])]);
}

/** The SOCKS reply code (SOCKS5 byte 1 of the reply after the 2+2 auth bytes; SOCKS4 byte 1). */
async function socksReply(port: number, bytes: Buffer, v4: boolean): Promise<number> {
  const s = await dial(port);
  s.on('error', () => {});
  s.write(bytes);
  const need = v4 ? 8 : 4 + 2;
  const b = await readUntil(s, (x) => x.length >= need, undefined, 'the SOCKS reply');
  s.destroy();
  return v4 ? b[1]! : b[5]!;
}

describe('deny rules naming an IP address in hosts hold for every spelling of it', () => {
  let origin: Origin;
  let proxy: TestProxy;

  before(async () => {
    origin = await startOrigin(DENIED);
    proxy = await startTestProxy({ rules: { allowPrivate: true, deny: [{ hosts: [DENIED] }] } }, { resolver: tableResolver({}) });
  });
  after(async () => {
    await proxy.close();
    await origin.close();
  });

  it('judges the rule on the address, not the spelling (unit)', () => {
    const rules = new DestinationRules({ allowPrivate: true, defaultAction: 'allow', deny: [{ hosts: [DENIED] }, { hosts: ['::1'] }] });
    for (const h of ['127.0.0.2', '127.0.0.2.', '2130706434', '0x7f000002', '0177.0.0.2', '127.2', '127.0.2', '::ffff:127.0.0.2', '::ffff:7f00:2', '[::ffff:7f00:2]', '0:0:0:0:0:ffff:7f00:2']) {
      assert.equal(rules.checkName(null, h, 80)?.type, 'http_request_denied', `name stage: ${h}`);
      assert.equal(rules.checkAddress(null, h, 80, '127.0.0.2')?.type, 'http_request_denied', `address stage: ${h}`);
    }
    for (const h of ['::1', '0:0:0:0:0:0:0:1', '0::1', '[::1]']) assert.equal(rules.checkName(null, h, 80)?.type, 'http_request_denied', h);
    for (const h of ['127.0.0.3', '2130706435', '127.3', 'example.test']) assert.equal(rules.checkName(null, h, 80), undefined, h);
  });

  it('SOCKS5 domain names in inet_aton forms and ATYP 4 mapped addresses are refused, nothing dialled', async () => {
    const port = origin.port;
    for (const name of ['127.0.0.2', '127.0.0.2.', '2130706434', '0x7f000002', '0177.0.0.2', '127.2', '127.0.2', '::ffff:127.0.0.2']) {
      assert.equal(await socksReply(proxy.port, socks5NameBytes(name, port), false), 0x02, `SOCKS5 domain ${name}`);
    }
    assert.equal(await socksReply(proxy.port, socks5Mapped(port), false), 0x02, 'SOCKS5 ATYP 4 ::ffff:127.0.0.2');
    assert.equal(origin.connections, 0, 'the denied origin saw a connection');
  });

  it('SOCKS4a names in inet_aton forms are refused', async () => {
    for (const name of ['2130706434', '0x7f000002', '127.2']) {
      assert.equal(await socksReply(proxy.port, socks4a(name, origin.port), true), 0x5b, `SOCKS4a ${name}`);
    }
    assert.equal(origin.connections, 0, 'the denied origin saw a connection');
  });

  it('CONNECT and absolute-form requests to mapped IPv6 spellings are refused with 403', async () => {
    const port = origin.port;
    for (const authority of [`[::ffff:127.0.0.2]:${port}`, `[::ffff:7f00:2]:${port}`, `2130706434:${port}`, `127.2:${port}`]) {
      const res = await rawExchange(proxy.port, `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
      assert.match(res, /^HTTP\/1\.1 403 /, `CONNECT ${authority}: ${res.slice(0, 120)}`);
      const get = await rawExchange(proxy.port, `GET http://${authority}/ HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\n\r\n`);
      assert.match(get, /^HTTP\/1\.1 403 /, `GET http://${authority}/: ${get.slice(0, 120)}`);
    }
    assert.equal(origin.connections, 0, 'the denied origin saw a connection');
  });
});

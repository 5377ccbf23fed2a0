import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseProxyStatus } from '../../src/failure/index.js';
import { tableResolver } from '../forward/helpers.js';
import { localhostSpellings } from '../helpers/localhost-spellings.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { connectGet, proxyGet, socksGet, startPoolProxy, startUpstreamGatewise, whoAmI, PASSWORD, USER, type PoolProxy, type WhoAmI } from './helpers.js';

/**
 * RFC 6761 §6.3: `localhost` and names under it are loopback wherever they are resolved, so
 * the destination rules can judge them before an upstream proxy exit is asked (which resolves
 * names itself): a deny of 127.0.0.0/8 denied `127.0.0.1` but sent `localhost` to the exit as
 * a name, unjudged, and the exit reached the loopback the rule refuses. The upstream's resolver
 * is a table standing for getaddrinfo (every spelling → 127.0.0.1), so nothing but loopback is
 * ever asked or dialled. Seeded over spellings; SOCKS5 and HTTP exits, SOCKS5, CONNECT and
 * absolute-form clients.
 */
const rand = seededRandom();
const NAMES = localhostSpellings(rand, 2);

describe(`localhost names through an upstream proxy exit, judged first (seed ${rand.seed}: ${NAMES.join(' ')})`, () => {
  let secret: WhoAmI;
  let up: PoolProxy;
  let viaSocks: PoolProxy;
  let viaHttp: PoolProxy;
  before(async () => {
    secret = await whoAmI('127.0.0.1');
    up = await startUpstreamGatewise('up', tableResolver(Object.fromEntries(NAMES.map((n) => [n.toLowerCase(), ['127.0.0.1']]))));
    const rules = { allowPrivate: false, deny: [{ cidrs: ['127.0.0.0/8'] }] };
    viaSocks = await startPoolProxy({ rules, egress: { pools: { s: { proxies: [`socks5://${USER}:${PASSWORD}@127.0.0.1:${up.port}`] } }, defaultPool: 's' } } as never);
    viaHttp = await startPoolProxy({ rules, egress: { pools: { h: { proxies: [`http://${USER}:${PASSWORD}@127.0.0.1:${up.port}`] } }, defaultPool: 'h' } } as never);
  });
  after(async () => {
    await viaSocks?.close();
    await viaHttp?.close();
    await up?.close();
    await secret?.close();
  });

  for (const name of NAMES) {
    it(`${JSON.stringify(name)} is refused as 127.0.0.1 before any exit is asked`, async () => {
      await withSeed(rand, async () => {
        await assert.rejects(socksGet(viaSocks.port, name, secret.port), /NotAllowed/, `SOCKS5 client, SOCKS5 exit: ${name}`);
        for (const [what, p] of [['SOCKS5 exit', viaSocks], ['HTTP exit', viaHttp]] as const) {
          const c = await connectGet(p.port, name, secret.port);
          assert.match(c.connect, /^HTTP\/1\.1 (\d{3})/, `CONNECT through the ${what}: ${c.connect}`);
          assert.equal(parseProxyStatus(/\r\nproxy-status: ([^\r]*)/i.exec(c.connect)?.[1] ?? '').at(-1)?.params.error, 'destination_ip_prohibited', `CONNECT through the ${what}: ${c.connect}`);
        }
        const h = await proxyGet(viaHttp.port, `http://${name}:${secret.port}/`);
        assert.equal(parseProxyStatus(String(h.headers['proxy-status'] ?? '')).at(-1)?.params.error, 'destination_ip_prohibited', `absolute-form through the HTTP exit: ${h.status} ${JSON.stringify(h.headers)} ${h.body.slice(0, 200)}`);
        assert.deepEqual(secret.seen, [], 'the denied loopback was reached through the upstream exit');
      });
    });
  }
});

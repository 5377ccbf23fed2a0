import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DestinationRules } from '../../src/forward/index.js';
import { parseProxyStatus } from '../../src/failure/index.js';
import { tableResolver } from './helpers.js';
import { seededRandom, withSeed, type Rand } from '../helpers/seeded.js';
import { connectGet, proxyGet, socksGet, startPoolProxy, whoAmI, PASSWORD, USER, USER2, PASSWORD2, type PoolProxy, type WhoAmI } from '../egress/helpers.js';

/**
 * SSRF audit (brief ssrf): through an upstream proxy exit a destination name is resolved by
 * the upstream, so the rules' name stage (`checkName`) is the only judgement it gets. That stage
 * ended at "no rule refused by name" and let the name go:
 *
 * - `defaultAction: deny` was applied only to resolved addresses, so through an exit every name
 *   no allow rule names went out (an allow list of `*.ok.test` let `anything.denied.test` through);
 * - a user's allow rule with `cidrs` "may match" any name, which ended the name stage before the
 *   global deny rules, so `x.internal.test` denied for everyone went out for that user (directly
 *   the address stage judges the global denies again; through an exit nothing did).
 *
 * The upstream is a Gatewise whose resolver is a table (every name → 127.0.0.2, a loopback
 * server that records each request) and whose rules refuse everything but loopback: nothing
 * but loopback is asked or dialled. Seeded over names; HTTP and SOCKS5 exits; CONNECT, SOCKS5
 * and absolute-form clients.
 */
const rand = seededRandom();

function label(r: Rand): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let l = alphabet[r.int(26)]!;
  for (let k = r.int(10); k > 0; k--) l += alphabet[r.int(alphabet.length)];
  return l;
}

/** `n` names under `zone`, drawn from the seed (one or two labels, case mixed, sometimes absolute). */
function names(r: Rand, zone: string, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const labels = r.int(2) === 0 ? [label(r)] : [label(r), label(r)];
    const name = [...labels, zone].join('.');
    out.push([...name].map((c) => (r.int(3) === 0 ? c.toUpperCase() : c)).join('') + (r.int(4) === 0 ? '.' : ''));
  }
  return out;
}

const DENIED = names(rand, 'denied.test', 3);
const OK = names(rand, 'ok.test', 2);
const INTERNAL = names(rand, 'internal.test', 3);

/** The error type of a refused CONNECT (its Proxy-Status), or its status line when it was not refused. */
function connectError(head: string): string {
  return parseProxyStatus(/\r\nproxy-status: ([^\r]*)/i.exec(head)?.[1] ?? '').at(-1)?.params.error?.toString() ?? head.slice(0, 40);
}

describe(`names through an upstream proxy exit are judged by every rule a name can meet (seed ${rand.seed})`, () => {
  let secret: WhoAmI;
  let up: PoolProxy;
  const exits: Array<[string, PoolProxy]> = [];
  const lists: PoolProxy[] = [];

  before(async () => {
    secret = await whoAmI('127.0.0.2');
    const table = Object.fromEntries([...DENIED, ...OK, ...INTERNAL].map((n) => [n.toLowerCase().replace(/\.$/, ''), ['127.0.0.2']]));
    const resolver = tableResolver(table);
    // The upstream: names by the table, and nothing but loopback whatever it is asked.
    up = await startPoolProxy({ name: 'up', rules: { allowPrivate: true, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8', '::1/128'] }] } } as never, {}, { resolver: (h) => resolver(h.replace(/\.$/, '')) });
    for (const scheme of ['http', 'socks5'] as const) {
      const pools = { egress: { pools: { up: { proxies: [`${scheme}://${USER}:${PASSWORD}@127.0.0.1:${up.port}`] } }, defaultPool: 'up' } };
      // An allow list by name, everything else denied.
      lists.push(await startPoolProxy({ ...pools, rules: { allowPrivate: true, defaultAction: 'deny', allow: [{ hosts: ['*.ok.test'] }] } } as never));
      // A deny by name for everyone; alice has an allow rule by address of her own.
      exits.push([scheme, await startPoolProxy({ ...pools, rules: { allowPrivate: true, defaultAction: 'allow', deny: [{ hosts: ['*.internal.test'] }] } } as never, { alice: { allow: [{ cidrs: ['198.51.100.0/24'] }] } })]);
    }
  });
  after(async () => {
    for (const p of [...lists, ...exits.map(([, p]) => p)]) await p.close();
    await up?.close();
    await secret?.close();
  });

  it('the name stage applies defaultAction deny and skips allow rules no address is known for (unit)', () => {
    const list = new DestinationRules({ allowPrivate: false, defaultAction: 'deny', allow: [{ hosts: ['*.ok.test'] }] });
    for (const n of DENIED) assert.equal(list.checkName(null, n, 443)?.type, 'http_request_denied', n);
    for (const n of OK) assert.equal(list.checkName(null, n, 443), undefined, n);
    const byPort = new DestinationRules({ allowPrivate: false, defaultAction: 'deny', allow: [{ hosts: ['api.test'], ports: [443] }] });
    assert.equal(byPort.checkName(null, 'api.test', 80)?.type, 'http_request_denied', 'api.test:80');
    assert.equal(byPort.checkName(null, 'api.test', 443), undefined, 'api.test:443');
    // An allow rule with cidrs may match any name once resolved: the name stage leaves it to the address stage.
    const byAddress = new DestinationRules({ allowPrivate: false, defaultAction: 'deny', allow: [{ cidrs: ['198.51.100.0/24'] }] });
    assert.equal(byAddress.checkName(null, 'x.test', 443), undefined);
    assert.equal(byAddress.checkAddress(null, 'x.test', 443, '198.51.100.7'), undefined);
    assert.equal(byAddress.checkAddress(null, 'x.test', 443, '203.0.113.7')?.type, 'http_request_denied');
    // Unresolved here (an upstream resolves it): no address, so an allow rule with cidrs allows nothing.
    assert.equal(byAddress.checkUnresolved(null, 'x.test', 443)?.type, 'http_request_denied');
    const mixed = new DestinationRules({ allowPrivate: false, defaultAction: 'allow', deny: [{ hosts: ['*.internal.test'] }, { ports: [25] }] }, [{ name: 'alice', allow: [{ cidrs: ['198.51.100.0/24'] }] }]);
    for (const n of INTERNAL) {
      assert.equal(mixed.checkName('alice', n, 443), undefined, `${n}: the address stage decides for a direct dial`);
      assert.equal(mixed.checkAddress('alice', n, 443, '203.0.113.7')?.type, 'http_request_denied', `${n} resolved outside alice's range`);
      assert.equal(mixed.checkUnresolved('alice', n, 443)?.type, 'http_request_denied', `${n} unresolved, for alice`);
      assert.equal(mixed.checkUnresolved(null, n, 443)?.type, 'http_request_denied', `${n} unresolved, for everyone`);
    }
    assert.equal(mixed.checkUnresolved('alice', 'mail.test', 25)?.type, 'http_request_denied', 'a global deny by port, for alice');
    assert.equal(mixed.checkUnresolved('alice', 'www.test', 443), undefined, 'nothing denies it');
  });

  it('defaultAction deny: a name no allow rule names never reaches an exit', async () => {
    await withSeed(rand, async () => {
      for (const [i, p] of lists.entries()) {
        const what = i === 0 ? 'HTTP exit' : 'SOCKS5 exit';
        for (const n of DENIED) {
          const c = await connectGet(p.port, n, secret.port);
          assert.equal(connectError(c.connect), 'http_request_denied', `CONNECT ${n} through the ${what}: ${c.connect.slice(0, 200)}`);
          await assert.rejects(socksGet(p.port, n, secret.port), /NotAllowed/, `SOCKS5 ${n} through the ${what}`);
          const h = await proxyGet(p.port, `http://${n}:${secret.port}/`);
          assert.equal(h.status, 403, `GET http://${n}/ through the ${what}: ${h.status} ${h.body.slice(0, 200)}`);
        }
        assert.deepEqual(secret.seen, [], `a denied name went out through the ${what}`);
        // The control: a name an allow rule names goes out and is answered.
        const ok = OK[i % OK.length]!;
        const c = await connectGet(p.port, ok, secret.port);
        assert.match(c.connect, /^HTTP\/1\.1 200 /, `CONNECT ${ok} through the ${what}: ${c.connect.slice(0, 200)}`);
        assert.equal(secret.seen.length, 1, `${ok} through the ${what} did not reach its destination`);
        secret.seen.length = 0;
      }
    });
  });

  it("a user's allow rule by address does not open a name denied for everyone through an exit", async () => {
    await withSeed(rand, async () => {
      for (const [what, p] of exits) {
        for (const n of INTERNAL) {
          for (const [user, password] of [[USER, PASSWORD], [USER2, PASSWORD2]] as const) {
            const c = await connectGet(p.port, n, secret.port, user, password);
            assert.equal(connectError(c.connect), 'http_request_denied', `CONNECT ${n} as ${user} through the ${what} exit: ${c.connect.slice(0, 200)}`);
            await assert.rejects(socksGet(p.port, n, secret.port, user, password), /NotAllowed/, `SOCKS5 ${n} as ${user} through the ${what} exit`);
            const h = await proxyGet(p.port, `http://${n}:${secret.port}/`, user, password);
            assert.equal(h.status, 403, `GET http://${n}/ as ${user} through the ${what} exit: ${h.status} ${h.body.slice(0, 200)}`);
          }
        }
        assert.deepEqual(secret.seen, [], `a name denied for everyone went out through the ${what} exit`);
        const ok = OK[0]!;
        await socksGet(p.port, ok, secret.port);
        assert.equal(secret.seen.length, 1, `SOCKS5 ${ok} as alice through the ${what} exit did not reach its destination`);
        secret.seen.length = 0;
      }
    });
  });
});

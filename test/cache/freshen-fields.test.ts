import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import { startRawServer, onHeads } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { withCacheGateway } from './cache-gateway.js';

/**
 * What a 304 leaves in the stored response it freshens (RFC 9111 §4.3.4: its header fields
 * replace the stored ones). Findings (probe, session 38), each seeded over its parameter:
 * - `Vary`: a 304 whose Vary differs from the stored one replaced the field, but the stored
 *   values of the request fields stayed those of the old Vary, read against the new names: the
 *   client whose request was validated missed on its next request, and a request whose value of
 *   a new Vary field happened to equal an old value hit.
 * - `Set-Cookie` brought to a `no-cache="set-cookie"` entry was kept in the stored entry (never
 *   answered, but at rest in memory and on disk).
 * - `Age`: the stored response's own `Age` stayed after the 304, and the freshened response's
 *   age was computed from it (RFC 9111 §4.2.3 takes the age from the 304 and now): stored with
 *   `Age: 5000` and freshened by a 304 saying `max-age=600` it was still stale.
 */

function rawResponse(status: string, fields: Array<[string, string]>, body = ''): string {
  return `HTTP/1.1 ${status}\r\n${fields.map(([n, v]) => `${n}: ${v}\r\n`).join('')}${status.startsWith('304') ? '' : `content-length: ${Buffer.byteLength(body)}\r\n`}\r\n${body}`;
}

test('a 304 whose Vary differs from the stored one stores the request\'s values of its Vary fields (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const plans = new Map<string, { oldVary: string | undefined; newVary: string }>();
  const up = await startRawServer((socket) => {
    onHeads(socket, (head, target) => {
      const p = plans.get(target)!;
      if (/^if-none-match: "v1"$/im.test(head)) {
        socket.write(rawResponse('304 Not Modified', [['etag', '"v1"'], ['cache-control', 'max-age=600'], ['vary', p.newVary]]));
        return;
      }
      const fields: Array<[string, string]> = [['etag', '"v1"'], ['cache-control', 'max-age=0']];
      if (p.oldVary !== undefined) fields.push(['vary', p.oldVary]);
      socket.write(rawResponse('200 OK', fields, 'hello'));
    });
  });
  await withCacheGateway(up as never, { routes: [{ name: 'c', cache: { collapseWait: '0s' } }] }, async ({ base }) => {
    await withSeed(rand, async () => {
      for (let i = 0; i < 12; i++) {
        const path = `/v${i}-${rand.seed}`;
        const p = { oldVary: rand.pick([undefined, 'accept-language']), newVary: rand.pick(['x-variant', 'accept-language, x-variant']) };
        plans.set(path, p);
        const lang = rand.pick(['fr', 'de', 'en']);
        const mine = `m${rand.int(1000)}`;
        // The old Vary's stored value, as a value of the new field: it must not select the response.
        const other = p.oldVary === undefined ? `o${rand.int(1000)}` : lang;
        const what = `case ${i} ${JSON.stringify(p)}: x-variant ${mine}`;
        const get = async (variant: string) => {
          const r = await request(base + path, { headers: { 'accept-language': lang, 'x-variant': variant } });
          assert.equal(await r.body.text(), 'hello');
          return String(r.headers['cache-status']);
        };
        assert.match(await get(mine), /fwd=uri-miss/, what);
        assert.match(await get(mine), /fwd=stale; fwd-status=304; ttl=\d+$/, `${what}: validated`);
        assert.match(await get(mine), /; hit; ttl=\d+$/, `${what}: the validated request's values select the freshened response`);
        assert.doesNotMatch(await get(other === mine ? `${mine}x` : other), /; hit; /, `${what}: x-variant ${other} does not select it`);
      }
    });
  });
});

test('a 304 leaves no Set-Cookie at rest and no stale Age in the stored response (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const plans = new Map<string, { storedAge: number; age304: number | undefined; cookie: boolean }>();
  const up = await startRawServer((socket) => {
    onHeads(socket, (head, target) => {
      const p = plans.get(target)!;
      const cc = p.cookie ? 'max-age=0, no-cache="set-cookie"' : `max-age=${p.storedAge >> 1}`;
      if (/^if-none-match: "v1"$/im.test(head)) {
        const fields: Array<[string, string]> = [['etag', '"v1"'], ['cache-control', p.cookie ? 'max-age=600, no-cache="set-cookie"' : 'max-age=600']];
        if (p.age304 !== undefined) fields.push(['age', String(p.age304)]);
        if (p.cookie) fields.push(['set-cookie', `sid=secret-${target}`]);
        socket.write(rawResponse('304 Not Modified', fields));
        return;
      }
      const fields: Array<[string, string]> = [['etag', '"v1"'], ['cache-control', cc]];
      if (!p.cookie) fields.push(['age', String(p.storedAge)]);
      socket.write(rawResponse('200 OK', fields, 'hello'));
    });
  });
  await withCacheGateway(up as never, { routes: [{ name: 'c', cache: { collapseWait: '0s' } }] }, async ({ g, base }) => {
    await withSeed(rand, async () => {
      for (let i = 0; i < 12; i++) {
        const path = `/a${i}-${rand.seed}`;
        const p = { storedAge: 100 + rand.int(100_000), age304: rand.next() < 0.5 ? undefined : rand.int(30), cookie: rand.next() < 0.5 };
        plans.set(path, p);
        const what = `case ${i} ${JSON.stringify(p)}`;
        const get = async () => {
          const r = await request(base + path);
          assert.equal(await r.body.text(), 'hello');
          return { cs: String(r.headers['cache-status']), age: Number(r.headers.age), cookie: r.headers['set-cookie'] };
        };
        assert.match((await get()).cs, /fwd=uri-miss/, what);
        const v = await get();
        assert.match(v.cs, /fwd=stale; fwd-status=304; ttl=\d+$/, `${what}: freshened, fresh (${v.cs}, Age ${v.age})`);
        const want = p.age304 ?? 0;
        assert.ok(v.age >= want && v.age <= want + 2, `${what}: Age ${v.age} after a 304 saying ${p.age304 ?? 'no Age'}`);
        if (p.cookie) assert.equal(String(v.cookie), `sid=secret-${path}`, `${what}: the client whose 304 brought the cookie gets it`);
        const h = await get();
        assert.match(h.cs, /; hit; ttl=\d+$/, `${what}: a hit after the 304`);
        assert.equal(h.cookie, undefined, what);
        // At rest: the stored entry keeps no Set-Cookie (memory; the disk tier writes what memory holds).
        const stored = g.gw.ctx.cache!.store.get(`127.0.0.1${path} c`);
        assert.ok(stored !== undefined && stored.length === 1, `${what}: stored`);
        const names = stored[0]!.headers.filter((_, j) => j % 2 === 0).map((n) => n.toLowerCase());
        assert.ok(!names.includes('set-cookie'), `${what}: no Set-Cookie at rest (${names.join(',')})`);
      }
    });
  });
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import { startRawServer, onHeads } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { withCacheGateway } from './cache-gateway.js';

/**
 * A 304 without `Date` freshens a stored response (RFC 9111 §4.3.4). RFC 9110 §6.6.1: a
 * recipient with a clock that caches a response without `Date` records the time it was received
 * as its `Date`, and §4.3.4 then puts that `Date` in place of the stored one. Finding (adversarial
 * probe, session 37): the stored response kept its old `Date`, its apparent age stayed what it
 * was, and freshened with `max-age=600` it was still stale (`ttl=-101`, `Age: 700`): every
 * request went upstream to validate again, the 304's lifetime never used. Seeded over how old
 * the stored response is and the 304's max-age.
 */
test('a 304 without Date makes the stored response fresh for the 304\'s lifetime (seeded)', async () => {
  const rand = seededRandom();
  const plans = new Map<string, { storedAgeS: number; maxAge: number }>();
  const counts = new Map<string, number>();
  const up = await startRawServer((socket) => {
    onHeads(socket, (head, target) => {
      const p = plans.get(target)!;
      counts.set(target, (counts.get(target) ?? 0) + 1);
      if (/^if-none-match: "v1"$/im.test(head)) {
        socket.write(`HTTP/1.1 304 Not Modified\r\netag: "v1"\r\ncache-control: max-age=${p.maxAge}\r\n\r\n`);
        return;
      }
      const date = new Date(Date.now() - p.storedAgeS * 1000).toUTCString();
      socket.write(`HTTP/1.1 200 OK\r\ndate: ${date}\r\netag: "v1"\r\ncache-control: max-age=${p.storedAgeS >> 1}\r\ncontent-length: 5\r\n\r\nhello`);
    });
  });
  await withCacheGateway(up as never, { routes: [{ name: 'c', cache: { collapseWait: '0s' } }] }, async ({ base }) => {
    await withSeed(rand, async () => {
      for (let i = 0; i < 12; i++) {
        const path = `/d${i}-${rand.seed}`;
        const p = { storedAgeS: 20 + rand.int(100_000), maxAge: 60 + rand.int(100_000) };
        plans.set(path, p);
        const get = async () => {
          const r = await request(base + path);
          assert.equal(await r.body.text(), 'hello');
          return { cs: String(r.headers['cache-status']), age: Number(r.headers.age) };
        };
        assert.match((await get()).cs, /fwd=uri-miss/);
        const v = await get();
        assert.match(v.cs, /fwd=stale; fwd-status=304; ttl=\d+$/, `case ${i} ${JSON.stringify(p)}: freshened, fresh`);
        assert.ok(v.age <= 2, `case ${i}: Age ${v.age} after a 304 just received`);
        const h = await get();
        assert.match(h.cs, /; hit; ttl=\d+$/, `case ${i} ${JSON.stringify(p)}: a hit after the 304`);
        assert.equal(counts.get(path), 2, `case ${i}: went upstream twice (the fill and one validation)`);
      }
    });
  });
});

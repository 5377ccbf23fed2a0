import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { within } from '../helpers/ended-records.js';
import { withCacheGateway } from './cache-gateway.js';
import { counterSum } from './stale-entry.js';

/**
 * A request carrying `Authorization` or `Cookie` is passed by the shared store by default
 * (gateway/cache-phase.ts, `routes[].cache.bypassOn`): it is neither answered from a stored
 * response nor stored. Finding (probe, session 38): such a request was answered from the store,
 * so a personalised upstream's answer to the logged-in user was the anonymous page stored by an
 * earlier request (and, with `public` or `s-maxage`, a user's own answer was stored and answered
 * to everyone). Varnish passes both by default; nginx does not. The bypass says its reason like
 * `unkeyed-field`: Cache-Status `fwd=bypass; detail=authorization|cookie`, the access line's
 * `bypass` and `gatewise_cache_bypasses_total{reason}`. A route that lists a field no longer in
 * `bypassOn` shares the store for it (the operator's word that its answers do not depend on it),
 * and RFC 9111 §3.5 still applies: an answer to an Authorization request is stored only with
 * `public`, `s-maxage` or `must-revalidate`. Seeded over the field, whether the route opts out,
 * the response's Cache-Control and which request comes first.
 */

type Field = 'authorization' | 'cookie';
const CC = ['max-age=600', 'public, max-age=600', 's-maxage=600', 'max-age=600, must-revalidate'] as const;

test('a request with Authorization or Cookie neither reads nor fills the store unless its route opts out (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const ccOf = new Map<string, string>();
  const up = await startScriptedUpstream((req, res) => {
    const who = req.headers.authorization ?? req.headers.cookie ?? 'anonymous';
    const body = `for ${who}`;
    res.writeHead(200, { 'cache-control': ccOf.get(req.url!)!, 'content-length': String(Buffer.byteLength(body)) });
    res.end(body);
  });
  const routes = [
    { name: 'shared-auth', match: { pathPrefix: '/shared-authorization/' }, cache: { collapseWait: '0s', bypassOn: ['cookie'] } },
    { name: 'shared-cookie', match: { pathPrefix: '/shared-cookie/' }, cache: { collapseWait: '0s', bypassOn: ['authorization'] } },
    { name: 'default', cache: { collapseWait: '0s' } },
  ];
  await withCacheGateway(up, { routes }, async ({ g, base }) => {
    const get = async (path: string, headers: Record<string, string>) => {
      const r = await request(base + path, { headers });
      return { body: await r.body.text(), cs: String(r.headers['cache-status']), id: String(r.headers['x-request-id']) };
    };
    const reached = (path: string) => up.received.filter((r) => r.url === path).length;
    await withSeed(rand, async () => {
      for (let i = 0; i < 16; i++) {
        const field: Field = rand.pick(['authorization', 'cookie'] as const);
        const shared = rand.next() < 0.4;
        const cc = rand.pick(CC);
        const anonymousFirst = rand.next() < 0.5;
        const route = shared ? `shared-${field}` : 'default';
        const path = shared ? `/${route}/p${i}-${rand.seed}` : `/p${i}-${rand.seed}`;
        ccOf.set(path, cc);
        const secret = field === 'authorization' ? `Bearer user-${i}` : `session=user-${i}`;
        const creds = { [field]: secret };
        const what = `case ${i}: ${field}, route ${route}, ${cc}, ${anonymousFirst ? 'anonymous' : 'credentialled'} request first`;
        if (anonymousFirst) {
          const a = await get(path, {});
          assert.match(a.cs, /fwd=uri-miss; fwd-status=200; stored$/, `${what}: the anonymous fill`);
          const before = await counterSum(g.registry, 'gatewise_cache_bypasses_total', { route, reason: field });
          const u = await get(path, creds);
          if (shared) {
            assert.match(u.cs, /; hit; ttl=\d+$/, `${what}: the route opted out, a hit`);
            assert.equal(u.body, 'for anonymous', what);
            assert.equal(reached(path), 1, what);
          } else {
            // Never the anonymous page for a user: it went upstream and got its own answer.
            assert.equal(u.body, `for ${secret}`, `${what}: the user's own answer`);
            assert.match(u.cs, new RegExp(`; fwd=bypass; fwd-status=200; detail=${field}$`), `${what}: ${u.cs}`);
            assert.equal(reached(path), 2, what);
            const line = await within(g.logFor(u.id), 10_000, `${what}: the access line`);
            assert.equal(line.cache, 'bypass', what);
            assert.equal(line.bypass, field, `${what}: the access line's bypass`);
            assert.equal(await counterSum(g.registry, 'gatewise_cache_bypasses_total', { route, reason: field }), before + 1, `${what}: gatewise_cache_bypasses_total`);
            // And the user's answer did not replace the stored one.
            const again = await get(path, {});
            assert.match(again.cs, /; hit; ttl=\d+$/, what);
            assert.equal(again.body, 'for anonymous', what);
          }
        } else {
          const u = await get(path, creds);
          assert.equal(u.body, `for ${secret}`, what);
          // Stored only on an opted-out route, and for Authorization only as §3.5 allows.
          const stores = shared && (field === 'cookie' || cc !== 'max-age=600');
          if (shared) assert.match(u.cs, stores ? /fwd=uri-miss; fwd-status=200; stored$/ : /fwd=uri-miss; fwd-status=200$/, `${what}: ${u.cs}`);
          else assert.match(u.cs, new RegExp(`; fwd=bypass; fwd-status=200; detail=${field}$`), `${what}: ${u.cs}`);
          const a = await get(path, {});
          if (stores) {
            assert.match(a.cs, /; hit; ttl=\d+$/, what);
          } else {
            // The user's answer was not stored: another client never gets it.
            assert.equal(a.body, 'for anonymous', `${what}: the anonymous client's answer`);
            assert.match(a.cs, /fwd=uri-miss; fwd-status=200; stored$/, `${what}: ${a.cs}`);
          }
        }
      }
    });
  });
});

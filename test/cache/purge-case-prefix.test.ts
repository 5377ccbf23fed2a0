import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { recased, withPurgeRuntime } from './purge-runtime.js';

/**
 * A `caseInsensitive` route that strips or rewrites its prefix keys every casing of it under the
 * prefix as configured (session 39: `/API/items/7` and `/api/items/7` are one key, `/Api/items/7`
 * for a prefix configured `/Api/`). A purge by key or by prefix that named the path in another
 * casing than the configured one found nothing (`purged: 0`) and the response stayed a hit,
 * while a GET in that casing is answered from the very entry. A purge now takes any spelling of
 * the key that the route would match, as a GET does. Seeded over the route (a directory prefix
 * stripped, a prefix without a trailing slash rewritten), the casings of the GETs and of the
 * purge, and the purge's form (key, or a prefix cut anywhere after the host); a sibling target
 * outside what the purge names stays stored.
 */

interface CaseRoute {
  readonly name: string;
  /** The prefix as configured. */
  readonly prefix: string;
  readonly rewrite: Record<string, unknown>;
}

const ROUTES: readonly CaseRoute[] = [
  { name: 'api', prefix: '/Api/', rewrite: { stripPrefix: true } },
  { name: 'docs', prefix: '/DocS', rewrite: { rewritePrefix: '/v2/docs' } },
];

test('a purge by key or by prefix takes any casing of a caseInsensitive route\'s rewritten prefix (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  let gen = 0;
  await withPurgeRuntime(
    (req, res) => {
      req.resume();
      const body = `gen ${++gen} ${req.url}`;
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': String(Buffer.byteLength(body)) });
      res.end(body);
    },
    [...ROUTES.map((r) => ({ name: r.name, match: { pathPrefix: r.prefix, caseInsensitive: true }, ...r.rewrite, cache: { collapseWait: '0s' } })), { name: 'rest', cache: { collapseWait: '0s' } }],
    async ({ gwUrl, purge }) => {
      const get = async (path: string): Promise<{ cs: string; body: string }> => {
        const r = await request(gwUrl + path);
        const body = await r.body.text();
        assert.equal(r.statusCode, 200, path);
        return { cs: String(r.headers['cache-status']), body };
      };
      await withSeed(rand, async () => {
        for (let i = 0; i < 16; i++) {
          const route = rand.pick(ROUTES);
          const n = `${i}-${rand.seed}`;
          const rest = `/items-${n}/a?q=${rand.int(100)}`;
          const sibling = `/items-${n}x/b`;
          const configured = route.prefix.replace(/\/$/, '') + rest;
          const spelled = (): string => recased(rand, route.prefix).replace(/\/$/, '') + rest;
          // Stored under one casing, a hit under another.
          const first = await get(spelled());
          assert.match(first.cs, /stored/, `case ${i}: stored`);
          const again = await get(rand.next() < 0.5 ? configured : spelled());
          assert.match(again.cs, /; hit/, `case ${i}: a hit in another casing`);
          assert.equal(again.body, first.body, `case ${i}`);
          await get(recased(rand, route.prefix).replace(/\/$/, '') + sibling);
          const byKey = rand.next() < 0.5;
          const target = `127.0.0.1${recased(rand, route.prefix).replace(/\/$/, '')}${rest}`;
          // A prefix cut anywhere after the host's slash: inside the route's prefix, or after it.
          const cut = '127.0.0.1/'.length + rand.int(target.length - '127.0.0.1/'.length + 1);
          const text = byKey ? target : target.slice(0, cut);
          const what = `case ${i}: route ${route.name} (${route.prefix}), purge by ${byKey ? 'key' : 'prefix'} ${text}`;
          assert.ok((await purge(byKey ? 'key' : 'prefix', text)) >= 1, `${what}: purged the stored target`);
          const after = await get(spelled());
          assert.doesNotMatch(after.cs, /; hit/, `${what}: the purged target answered from the store: ${after.cs}`);
          assert.notEqual(after.body, first.body, `${what}: the origin answered again`);
          // What the purge did not name stays: the sibling, when the purge names the key or cuts past where they part.
          const parted = '127.0.0.1'.length + route.prefix.replace(/\/$/, '').length + `/items-${n}`.length;
          if (byKey || cut > parted) assert.match((await get(recased(rand, route.prefix).replace(/\/$/, '') + sibling)).cs, /; hit/, `${what}: the sibling stays stored`);
        }
      });
    },
  );
});

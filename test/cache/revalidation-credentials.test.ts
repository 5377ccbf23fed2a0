import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'undici';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { startTestGateway } from '../helpers/gateway.js';
import { endedRecords, within } from '../helpers/ended-records.js';
import { seededRandom, withSeed, type Rand } from '../helpers/seeded.js';

/**
 * A background revalidation (stale-while-revalidate) is a request of the gateway's own for
 * the stored response, not the triggering client's: RFC 9111 §4.3.1 validates the stored
 * response, which the request that stored it produced. It went upstream with the triggering
 * client's Cookie and Authorization, and an origin that personalises for those (with a
 * Cache-Control that lets a shared cache keep the answer) had one client's page stored for
 * every client, while that client was answered the stale shared page.
 *
 * The origin personalises by Cookie or Authorization (`personal:<value>`, `public`) and answers
 * anonymously otherwise; both 304 to their own entity tag. Seeded over the credential fields
 * and values, and over who stored the entry: an anonymous request (the revalidation carries no
 * credentials, whoever triggers it), the same client (its credentials go again), or another
 * client (none go).
 */

type Creds = Record<string, string>;

function credsOf(h: IncomingHttpHeaders): string | undefined {
  const v = h.cookie ?? h.authorization;
  return v === undefined ? undefined : String(v);
}

function anyCreds(rand: Rand): Creds {
  const v = `u${rand.int(1e9)}`;
  switch (rand.int(3)) {
    case 0:
      return { cookie: `session=${v}` };
    case 1:
      return { authorization: `Bearer ${v}` };
    default:
      return { cookie: `session=${v}; theme=dark`, authorization: `Basic ${Buffer.from(`${v}:pw`).toString('base64')}` };
  }
}

test('a background revalidation goes upstream with the credentials of the request that stored the entry, never another client’s (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const seen = new Map<string, IncomingHttpHeaders[]>();
  const up = await startScriptedUpstream((req, res) => {
    req.resume();
    (seen.get(req.url!) ?? seen.set(req.url!, []).get(req.url!)!).push(req.headers);
    const who = credsOf(req.headers);
    const tag = who === undefined ? '"anon"' : `"p-${Buffer.from(who).toString('hex').slice(0, 32)}"`;
    if (req.headers['if-none-match'] === tag) {
      res.writeHead(304, { etag: tag, 'cache-control': 'public, max-age=0, stale-while-revalidate=600' });
      res.end();
      return;
    }
    const body = who === undefined ? 'anonymous' : `personal:${who}`;
    // Shared storage allowed either way (public: even with Authorization, RFC 9111 §3.5).
    res.writeHead(200, { etag: tag, 'cache-control': 'public, max-age=0, stale-while-revalidate=600', 'content-length': String(Buffer.byteLength(body)) });
    res.end(body);
  });
  const g = await startTestGateway({
    clusters: { up: { endpoints: [`http://127.0.0.1:${up.port}`], outlierDetection: { enabled: false } } },
    // The route shares the store with Cookie and Authorization requests (the default passes them
    // by, session 38): the case where a background revalidation could carry another client's.
    routes: [{ cluster: 'up', cache: { bypassOn: [] } }],
  } as never).catch(async (err: unknown) => {
    await up.close();
    throw err;
  });
  const records = endedRecords();
  const base = g.url.replace(/\/$/, '');
  const get = async (path: string, headers: Creds = {}): Promise<{ body: string; cs: string; id: string }> => {
    const r = await request(base + path, { headers });
    return { body: await r.body.text(), cs: String(r.headers['cache-status']), id: String(r.headers['x-request-id']) };
  };
  try {
    await withSeed(rand, async () => {
      for (let i = 0; i < 12; i++) {
        const path = `/c${i}-${rand.seed}`;
        const storedBy = rand.pick(['anonymous', 'same', 'other'] as const);
        const mine = anyCreds(rand);
        const first = storedBy === 'anonymous' ? {} : mine;
        const trigger = storedBy === 'other' ? anyCreds(rand) : mine;
        const what = `case ${i}: stored by ${storedBy} (${JSON.stringify(first)}), stale hit by ${JSON.stringify(trigger)}`;
        assert.match((await get(path, first)).cs, /stored/, what);
        const stale = await get(path, trigger);
        assert.match(stale.cs, /detail=stale-while-revalidate/, what);
        const rec = await within(records.wait((r) => r.background === 'revalidation' && r.triggeredBy === stale.id), 10_000, `${what}: the revalidation's record`);
        const reval = seen.get(path)!.at(-1)!;
        assert.ok(reval['if-none-match'] !== undefined, `${what}: the last request upstream is the revalidation`);
        if (storedBy === 'same') {
          assert.equal(reval.cookie, first.cookie, `${what}: the credentials that stored it go again`);
          assert.equal(reval.authorization, first.authorization, what);
          assert.equal(rec.revalidation, 'refreshed', what);
        } else {
          assert.equal(reval.cookie, undefined, `${what}: the triggering client's Cookie went upstream`);
          assert.equal(reval.authorization, undefined, `${what}: the triggering client's Authorization went upstream`);
        }
        // Another client (anonymous) is never answered with the triggering client's page (unless
        // that client stored it itself, and the origin said public).
        const later = await get(path);
        if (storedBy !== 'same') assert.notEqual(later.body, `personal:${credsOf(trigger as IncomingHttpHeaders)}`, `${what}: another client got the triggering client's page (${later.cs})`);
        if (storedBy === 'anonymous') assert.equal(later.body, 'anonymous', what);
      }
    });
  } finally {
    records.close();
    await g.close();
    await up.close();
  }
});

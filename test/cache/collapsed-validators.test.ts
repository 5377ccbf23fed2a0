import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { request } from 'undici';
import { cacheKey } from '../../src/cache/index.js';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { withCacheGateway } from './cache-gateway.js';
import { seededRandom, shuffle, withSeed } from '../helpers/seeded.js';
import { within } from '../helpers/ended-records.js';
import { until } from '../helpers/until.js';

/**
 * A collapsed waiter that must go upstream itself after its leader (here: its request says
 * `no-cache`, so what the leader stored does not answer it) validates the stored response it
 * woke to, not the one it saw when it started waiting (review finding, session 49). Before, it
 * kept the choice its first lookup made (`#conditional`, the Vary variants' tags): one that had
 * started with nothing stored, or with a stored response without validators, went upstream
 * with no validator at all although the leader had just stored one with an ETag, and got the
 * whole response again (a 200, recorded `miss`) where a 304 would do. Seeded over the order of
 * the cases: what is stored when the waiter starts (nothing; a response with an ETag; one
 * without validators) and what the leader stores (a new ETag; none).
 */

type Before = 'nothing' | 'etag' | 'none';
type After = 'etag' | 'none';
interface Case {
  before: Before;
  after: After;
}

test('a collapsed waiter woken to another stored response sends that response\'s validators (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  /** Per path: the version the origin answers now, whether it has an ETag, and a hold for its next request. */
  const state = new Map<string, { version: number; etag: boolean; hold?: (res: ServerResponse) => void }>();
  const seen: Array<{ path: string; inm: string | undefined }> = [];
  const answer = (req: IncomingMessage, res: ServerResponse): void => {
    const s = state.get(req.url!)!;
    const tag = s.etag ? `"v${s.version}"` : undefined;
    if (tag !== undefined && req.headers['if-none-match'] === tag) {
      res.writeHead(304, { etag: tag, 'cache-control': 'max-age=60' });
      res.end();
      return;
    }
    res.writeHead(200, { ...(tag !== undefined ? { etag: tag } : {}), 'cache-control': 'max-age=60' });
    res.end(`version ${s.version} of ${req.url}`);
  };
  const up = await startScriptedUpstream((req, res) => {
    req.resume();
    seen.push({ path: req.url!, inm: req.headers['if-none-match'] as string | undefined });
    const s = state.get(req.url!)!;
    const hold = s.hold;
    if (hold !== undefined) {
      s.hold = undefined;
      hold(res);
      return;
    }
    answer(req, res);
  });
  await withCacheGateway(up, { routes: [{ name: 'c', cache: { collapseWait: '30s' } }] }, async ({ g: gw, base, records }) => {
    const cache = gw.gw.ctx.cache!;
    const cases: Case[] = [];
    for (const before of ['nothing', 'etag', 'none'] as const) for (const after of ['etag', 'none'] as const) cases.push({ before, after });
    await withSeed(rand, async () => {
      const failed: string[] = [];
      for (const c of shuffle(rand.next, cases)) {
        const path = `/${c.before}-${c.after}-${rand.seed}`;
        const what = `stored before: ${c.before}, the leader stores: ${c.after === 'etag' ? 'an ETag' : 'no validator'}`;
        try {
          state.set(path, { version: 0, etag: c.before === 'etag' });
          if (c.before !== 'nothing') {
            const r = await request(base + path);
            assert.equal(await r.body.text(), `version 0 of ${path}`, `${what}: stored first`);
            const hit = await request(base + path);
            await hit.body.text();
            assert.match(String(hit.headers['cache-status']), /; hit/, `${what}: the first response is stored`);
          }
          // The origin's representation changes; its next request (the leader's) waits.
          const s = state.get(path)!;
          s.version = 1;
          s.etag = c.after === 'etag';
          const leaderAtOrigin = new Promise<ServerResponse>((resolve) => (s.hold = resolve));
          const noCache = { headers: { 'cache-control': 'no-cache' } };
          const leader = request(base + path, noCache);
          const leaderRes = await within(leaderAtOrigin, 10_000, `${what}: the leader at the origin`);
          const key = cacheKey(`127.0.0.1${path}`, 'c');
          const waiter = request(base + path, noCache);
          assert.ok(await until(() => cache.collapser.waiting(key) === 1, 10_000), `${what}: the waiter queued`);
          const from = seen.length;
          answer({ url: path, headers: {} } as IncomingMessage, leaderRes);
          const [l, w] = await Promise.all([leader, waiter]);
          await l.body.text();
          const body = await w.body.text();
          assert.equal(body, `version 1 of ${path}`, `${what}: the waiter's answer`);
          const mine = seen.slice(from).filter((x) => x.path === path);
          assert.equal(mine.length, 1, `${what}: the waiter went upstream once: ${JSON.stringify(mine)}`);
          const cs = String(w.headers['cache-status']);
          const rec = await within(records.wait((r) => r.requestId === String(w.headers['x-request-id'])), 10_000, `${what}: the waiter's record`);
          if (c.after === 'etag') {
            assert.equal(mine[0]!.inm, '"v1"', `${what}: the waiter validated the response the leader stored`);
            assert.match(cs, /fwd-status=304/, `${what}: answered from the store after a 304: ${cs}`);
            assert.equal(rec.cache, 'revalidated', `${what}: recorded`);
          } else {
            assert.equal(mine[0]!.inm, undefined, `${what}: no validator to send`);
            assert.match(cs, /fwd-status=200/, `${what}: ${cs}`);
          }
        } catch (err) {
          failed.push((err as Error).message.split('\n')[0]!);
        }
      }
      assert.deepEqual(failed, [], `${failed.length} of ${cases.length} cases failed:\n${failed.join('\n')}`);
    });
  });
});

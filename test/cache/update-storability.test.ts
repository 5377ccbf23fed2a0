import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { seededRun } from '../helpers/seeded.js';

/**
 * Adversarial review, session 30 (high): a 304 (or a HEAD answer, or a background
 * revalidation's 304) was merged into the stored response without asking whether the result
 * may still be stored. A 304 carrying the validating client's `Set-Cookie` put that session
 * cookie into the shared store, and every later client got it as a hit; one saying `private`
 * or `no-store` left the entry stored and served. Now the freshened response is kept only when
 * it is storable (RFC 9111 §3, §4.3.4, §4.3.5, §5.2.2.5, §5.2.2.7), else the key is dropped.
 *
 * A seeded family over the field that comes with the update (a Set-Cookie, `private`,
 * `no-store`, or a harmless field as the control that must still be kept), the way it comes
 * (a client's stale request revalidated, a HEAD answer freshening the GET, a background
 * stale-while-revalidate revalidation) and the users' names: the next client never gets the
 * update's cookie or a `private`/`no-store` response from the store; the control is a hit.
 */

type Kind = 'cookie' | 'private' | 'no-store' | 'control';
type Way = 'revalidate' | 'head' | 'background';

let origin: Server;
let gw: TestGateway;
let base: string;

before(async () => {
  origin = createServer((req, res) => {
    const u = new URL(req.url!, 'http://x');
    const kind = u.searchParams.get('kind') as Kind;
    const way = u.searchParams.get('way') as Way;
    const user = String(req.headers['x-user'] ?? '-');
    const etag = '"v1"';
    const cc = way === 'background' ? 'max-age=0, stale-while-revalidate=600' : 'max-age=0';
    // The update: what the 304 (or the HEAD answer) says besides its validator.
    const update: Record<string, string> = { etag, 'cache-control': 'max-age=600' };
    if (kind === 'cookie') update['set-cookie'] = `session=secret-of-${user}; HttpOnly`;
    if (kind === 'private') update['cache-control'] = 'private, max-age=600';
    if (kind === 'no-store') update['cache-control'] = 'no-store, max-age=600';
    if (kind === 'control') update['x-note'] = `for ${user}`;
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, update);
      res.end();
      return;
    }
    const body = `page ${u.pathname}`;
    if (req.method === 'HEAD') {
      res.writeHead(200, { ...update, 'content-type': 'text/plain', 'content-length': String(body.length) });
      res.end();
      return;
    }
    res.writeHead(200, { etag, 'cache-control': cc, 'content-type': 'text/plain', 'content-length': String(body.length) });
    res.end(body);
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
  gw = await startTestGateway({
    clusters: { o: { endpoints: [`http://127.0.0.1:${(origin.address() as { port: number }).port}`] } },
    routes: [{ name: 'cached', cluster: 'o', cache: {} }],
  });
  base = gw.url.replace(/\/$/, '');
});

after(async () => {
  await gw.close();
  origin.closeAllConnections();
  await new Promise<void>((r) => origin.close(() => r()));
});

async function get(path: string, user: string, method: 'GET' | 'HEAD' = 'GET'): Promise<{ status: number; cs: string; cookie: string | undefined; cc: string; requestId: string }> {
  const r = await request(base + path, { method, headers: { 'x-user': user } });
  await r.body.dump();
  const cookie = r.headers['set-cookie'];
  return { status: r.statusCode, cs: String(r.headers['cache-status']), cookie: cookie === undefined ? undefined : String(cookie), cc: String(r.headers['cache-control'] ?? ''), requestId: String(r.headers['x-request-id']) };
}

/** The background revalidation a stale answer started, once recorded. */
async function revalidationOf(requestId: string): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const line = gw.logs.find((l) => l.type === 'access' && l.background === 'revalidation' && l.triggeredBy === requestId);
    if (line !== undefined) return String(line.revalidation);
    if (Date.now() > deadline) throw new Error(`no revalidation recorded for ${requestId}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('a stored response freshened by a 304 or a HEAD answer is kept only when it may still be stored', () => {
  test('a seeded family of updates, ways and users', { timeout: 60_000 }, async () => {
    await seededRun('cache update storability', async (rand) => {
      const kinds: Kind[] = ['cookie', 'private', 'no-store', 'control'];
      const ways: Way[] = ['revalidate', 'head', 'background'];
      let n = 0;
      for (const way of ways) {
        for (const kind of kinds) {
          for (let k = 0; k < 2; k++) {
            const [a, b, c] = Array.from({ length: 3 }, () => `u${Math.floor(rand() * 1e6)}`);
            const path = `/p${n++}?kind=${kind}&way=${way}`;
            const where = `${kind} by ${way}, users ${a} ${b} ${c}`;
            const first = await get(path, a!);
            assert.match(first.cs, /stored/, where);
            // b's request brings the update.
            if (way === 'revalidate') {
              const r = await get(path, b!);
              assert.match(r.cs, /fwd=stale; fwd-status=304/, where);
              // b is answered with what its own 304 said (its cookie is for b).
              if (kind === 'cookie') assert.match(String(r.cookie), new RegExp(`secret-of-${b}`), where);
            } else if (way === 'head') {
              const r = await get(path, b!, 'HEAD');
              assert.equal(r.status, 200, where);
            } else {
              const r = await get(path, b!);
              assert.match(r.cs, /hit; ttl=[-\d]+; detail=stale-while-revalidate/, where);
              const result = await revalidationOf(r.requestId);
              assert.equal(result, kind === 'control' ? 'refreshed' : 'dropped', where);
            }
            const next = await get(path, c!);
            assert.equal(next.status, 200, where);
            if (kind === 'control') {
              assert.match(next.cs, /hit/, `the harmless update is kept: ${where}`);
              continue;
            }
            assert.equal(next.cookie, undefined, `${c} got a cookie from the store: ${where}`);
            if (/hit/.test(next.cs)) assert.doesNotMatch(next.cc, /private|no-store/, `${c} got a ${next.cc} response from the store: ${where}`);
            assert.doesNotMatch(next.cs, /hit/, `the key was dropped: ${where}`);
          }
        }
      }
    });
  });
});

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { request } from 'undici';
import { startTestGateway, type LogLine, type TestGateway } from '../helpers/gateway.js';

/**
 * Background revalidation (stale-while-revalidate) is a request of the gateway's own and is
 * treated like one: recorded (an access-log line marked `background: "revalidation"` with
 * the request id of the stale answer that started it, and the revalidations metric),
 * admitted through the cluster's concurrency limit and queue, and one per key at a time.
 *
 * The origin answers `/slow…` after `delay` ms (holding the cluster's one slot), and every
 * other path with `max-age=1, stale-while-revalidate=60` and an ETag, a 304 to a request
 * that sends it; it counts requests per path and conditional requests per path.
 */
let origin: Server;
let gw: TestGateway;
let base: string;
const seen = new Map<string, number>();
const conditional = new Map<string, number>();
/** Held `/slow` answers, released by the test. */
const held: Array<() => void> = [];
/** Held 304s to background revalidations of `/open/…`, released by the test. */
const held304: Array<() => void> = [];

before(async () => {
  origin = createServer((req, res) => {
    const u = new URL(req.url!, 'http://x');
    seen.set(u.pathname, (seen.get(u.pathname) ?? 0) + 1);
    if (u.pathname.startsWith('/slow')) {
      held.push(() => res.end('slow'));
      return;
    }
    const h = { 'cache-control': 'max-age=1, stale-while-revalidate=60', etag: '"v1"', 'content-type': 'text/plain' };
    if (req.headers['if-none-match'] === '"v1"') {
      conditional.set(u.pathname, (conditional.get(u.pathname) ?? 0) + 1);
      // The 304 makes the entry fresh for a minute (so "fresh again" holds on a slow machine).
      const answer = (): void => {
        res.writeHead(304, { ...h, 'cache-control': 'max-age=60, stale-while-revalidate=60' });
        res.end();
      };
      // /open/…: held until the test lets it go, so concurrent stale hits all arrive while it is on its way.
      if (u.pathname.startsWith('/open/')) held304.push(answer);
      else answer();
      return;
    }
    res.writeHead(200, { ...h, 'content-length': String(Buffer.byteLength(`body of ${u.pathname}`)) });
    res.end(`body of ${u.pathname}`);
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
  const port = (origin.address() as { port: number }).port;
  gw = await startTestGateway({
    clusters: {
      open: { endpoints: [`http://127.0.0.1:${port}`] },
      // One request at a time, no queue: a background revalidation needs the slot like anyone.
      one: { endpoints: [`http://127.0.0.1:${port}`], limits: { maxConcurrent: 1, maxQueued: 0 } },
      // One at a time with a queue: the revalidation waits for the slot.
      queued: { endpoints: [`http://127.0.0.1:${port}`], limits: { maxConcurrent: 1, maxQueued: 4, queueTimeout: '5s' } },
    },
    routes: [
      { name: 'one', match: { pathPrefix: '/one' }, cluster: 'one', cache: {} },
      { name: 'slow-one', match: { pathPrefix: '/slow-one' }, cluster: 'one' },
      { name: 'queued', match: { pathPrefix: '/queued' }, cluster: 'queued', cache: {} },
      { name: 'slow-queued', match: { pathPrefix: '/slow-queued' }, cluster: 'queued' },
      { name: 'open', cluster: 'open', cache: {} },
    ],
  });
  base = gw.url.replace(/\/$/, '');
});

after(async () => {
  for (const release of [...held.splice(0), ...held304.splice(0)]) release();
  await gw?.close();
  await new Promise<void>((r) => origin.close(() => r()));
});

async function get(path: string): Promise<{ status: number; cs: string; id: string; body: string }> {
  const r = await request(base + path);
  const body = await r.body.text();
  return { status: r.statusCode, cs: String(r.headers['cache-status']), id: String(r.headers['x-request-id']), body };
}

async function until<T>(what: string, fn: () => T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const background = (path: string): LogLine[] => gw.logs.filter((l) => l.type === 'access' && l.background === 'revalidation' && l.path === path);

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const m = await gw.registry.getSingleMetric(name)!.get();
  let n = 0;
  for (const v of m.values) if (Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want)) n += v.value;
  return n;
}

/** Store `path`, then let it go stale (max-age=1). */
async function storeStale(path: string): Promise<void> {
  assert.match((await get(path)).cs, /stored/);
  await new Promise((r) => setTimeout(r, 2100));
}

test('a background revalidation is logged (marked, with the stale answer it follows), counted, not a client request, and collapsed per key', async () => {
  await storeStale('/open/a');
  const clientRequests = await gw.requestsCounted({ route: 'open' });
  // Eight stale hits at once: one revalidation.
  const hits = await Promise.all(Array.from({ length: 8 }, () => get('/open/a')));
  for (const h of hits) assert.match(h.cs, /hit; ttl=-\d+; detail=stale-while-revalidate/);
  // All eight answered while the one revalidation waits for its 304.
  await until('the revalidation upstream', () => (held304.length === 1 ? true : undefined));
  held304.shift()!();
  const [line] = await until('the revalidation line', () => (background('/open/a').length > 0 ? background('/open/a') : undefined));
  assert.equal(conditional.get('/open/a'), 1, 'one conditional request upstream for eight stale hits');
  assert.equal(background('/open/a').length, 1);
  assert.equal(line!.revalidation, 'refreshed');
  assert.equal(line!.status, 304, 'the upstream status');
  assert.equal(line!.method, 'GET');
  assert.equal(line!.route, 'open');
  assert.equal(line!.clientAddress, undefined, 'no client');
  assert.ok(hits.some((h) => h.id === line!.triggeredBy), `triggeredBy ${String(line!.triggeredBy)} is one of the stale answers`);
  assert.ok(!hits.some((h) => h.id === line!.requestId), 'its own request id');
  assert.equal(line!.attempts?.length, 1);
  assert.equal(line!.attempts![0]!.status, 304);
  assert.equal(await metric('gatewise_cache_revalidations_total', { route: 'open', result: 'refreshed' }), 1);
  assert.equal(await gw.requestsCounted({ route: 'open' }), clientRequests + 8, 'the eight client requests, not the revalidation');
  // Refreshed: fresh again, no further revalidation.
  assert.match((await get('/open/a')).cs, /^[^;]+; hit; ttl=\d+$/);
});

test('a background revalidation needs an admission slot: with the slot taken and no queue it is refused (logged), the stale entry stays, and the next hit tries again', async () => {
  await storeStale('/one/b');
  // Take the cluster's one slot.
  const slow = get('/slow-one');
  await until('the slow request upstream', () => (seen.get('/slow-one') === 1 ? true : undefined));
  const stale = await get('/one/b');
  assert.match(stale.cs, /detail=stale-while-revalidate/);
  const [refused] = await until('the refused revalidation line', () => (background('/one/b').length > 0 ? background('/one/b') : undefined));
  assert.equal(refused!.revalidation, 'refused');
  assert.equal(refused!.error, 'connection_limit_reached');
  assert.equal(refused!.status, undefined);
  assert.equal(refused!.triggeredBy, stale.id);
  assert.equal(conditional.get('/one/b'), undefined, 'nothing went upstream');
  assert.equal(seen.get('/one/b'), 1, 'only the first fill');
  assert.equal(await metric('gatewise_cache_revalidations_total', { route: 'one', result: 'refused' }), 1);
  // The slot comes back; the next stale hit revalidates.
  held.shift()!();
  assert.equal((await slow).status, 200);
  assert.match((await get('/one/b')).cs, /detail=stale-while-revalidate/);
  const lines = await until('the second revalidation', () => (background('/one/b').length === 2 ? background('/one/b') : undefined));
  assert.equal(lines[1]!.revalidation, 'refreshed');
  assert.equal(conditional.get('/one/b'), 1);
});

test('with a queue, a background revalidation waits for the slot like a request and goes upstream only when it has one', async () => {
  await storeStale('/queued/c');
  const slow = get('/slow-queued');
  await until('the slow request upstream', () => (seen.get('/slow-queued') === 1 ? true : undefined));
  assert.match((await get('/queued/c')).cs, /detail=stale-while-revalidate/);
  // Queued behind the slow request: nothing upstream yet, and the admission queue holds it.
  await until('the revalidation in the queue', () => (gw.gw.ctx.clusters.get('queued')!.admission!.queued === 1 ? true : undefined));
  assert.equal(conditional.get('/queued/c'), undefined);
  held.shift()!();
  assert.equal((await slow).status, 200);
  const [line] = await until('the revalidation line', () => (background('/queued/c').length > 0 ? background('/queued/c') : undefined));
  assert.equal(line!.revalidation, 'refreshed');
  assert.equal(conditional.get('/queued/c'), 1);
});

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { request } from 'undici';
import type { CacheEntry } from '../../src/cache/index.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { cacheKey } from '../../src/cache/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

/**
 * Never a bad page in the cache, over statuses and Cache-Control combinations (seeded):
 *   - nothing the gateway made (every Failure answer: the upstream closed, hung, cut its body,
 *     sent garbage) is ever stored, whatever the stored state before;
 *   - an upstream 5xx, whatever its Cache-Control, never replaces or changes a stored response
 *     (the same entry object stays; a stale copy may answer for it);
 *   - a 206 (to a range request, or to none) is never stored and never replaces a complete entry.
 * The origin's answer per path is set by the test (`plan`); the second request of each case asks
 * with `Cache-Control: no-cache` so that it always goes upstream.
 */
type Plan =
  | { kind: 'status'; status: number; cc: string | undefined; body: string; etag?: string }
  | { kind: 'partial'; cc: string | undefined }
  | { kind: 'fault'; fault: 'close' | 'hang' | 'cut' | 'garbage' };

let origin: Server;
let gw: TestGateway;
let base: string;
const plan = new Map<string, Plan>();
const sockets = new Set<Socket>();

before(async () => {
  origin = createServer((req, res) => {
    const p = plan.get(new URL(req.url!, 'http://x').pathname);
    if (p === undefined) {
      res.writeHead(404);
      res.end();
      return;
    }
    if (p.kind === 'fault') {
      const sock = req.socket;
      if (p.fault === 'close') sock.destroy();
      else if (p.fault === 'hang') return; // the gateway's response timeout ends it
      else if (p.fault === 'garbage') sock.end('HTTP/1.1 2xx Nope\r\n\r\n');
      else {
        // A head that promises more body than comes, then the connection goes.
        sock.write('HTTP/1.1 200 OK\r\ncache-control: max-age=3600\r\ncontent-length: 100\r\n\r\npartial');
        setTimeout(() => sock.destroy(), 20);
      }
      return;
    }
    if (p.kind === 'partial') {
      const h: Record<string, string> = { 'content-range': 'bytes 0-4/20', 'content-length': '5' };
      if (p.cc !== undefined) h['cache-control'] = p.cc;
      res.writeHead(206, h);
      res.end('AAAAA');
      return;
    }
    const h: Record<string, string> = { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(p.body)) };
    if (p.cc !== undefined) h['cache-control'] = p.cc;
    if (p.etag !== undefined) h.etag = p.etag;
    res.writeHead(p.status, h);
    res.end(p.body);
  });
  origin.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
  const port = (origin.address() as { port: number }).port;
  gw = await startTestGateway({
    clusters: { o: { endpoints: [`http://127.0.0.1:${port}`], timeouts: { response: '300ms' }, outlierDetection: { enabled: false }, waitForEndpoint: { timeout: '0s' } } },
    routes: [{ cluster: 'o', retry: { tries: 1 }, cache: { collapseWait: '0s' } }],
  });
  base = gw.url.replace(/\/$/, '');
});

after(async () => {
  for (const s of sockets) s.destroy();
  await gw?.close();
  await new Promise<void>((r) => origin.close(() => r()));
});

/** Cache-Control values a response may carry: fresh, stale, stale-if-error, forbidding, none. */
const RESPONSE_CC = [undefined, 'max-age=3600', 'public, max-age=3600', 's-maxage=3600', 'max-age=0', 'no-cache', 'no-store', 'private', 'max-age=3600, immutable', 'max-age=0, stale-if-error=600', 'max-age=0, stale-while-revalidate=600', 'max-age=3600, must-revalidate', 'max-age=3600, must-understand, no-store'];
const GOOD_STATUS = [200, 203, 301, 404, 410];

async function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; cs: string; body: string } | 'cut'> {
  try {
    const r = await request(base + path, { headers });
    const body = await r.body.text();
    return { status: r.statusCode, cs: String(r.headers['cache-status'] ?? ''), body };
  } catch {
    return 'cut'; // the gateway aborted a response whose body the upstream cut
  }
}

const stored = (path: string): readonly CacheEntry[] | undefined => gw.gw.ctx.cache!.store.get(cacheKey(`127.0.0.1${path}`, 'route-0'));

test('no gateway-made answer, upstream 5xx or 206 is ever stored, and none replaces a stored response (seeded over statuses × Cache-Control × faults)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  await withSeed(rand, async () => {
    let hangs = 0;
    for (let i = 0; i < 90; i++) {
      const path = `/case-${rand.seed}-${i}`;
      // 1. Maybe a good stored response first.
      let before: CacheEntry | undefined;
      if (rand.int(3) > 0) {
        const good: Plan = { kind: 'status', status: rand.pick(GOOD_STATUS), cc: rand.pick(['max-age=3600', 'max-age=0, stale-if-error=600', 'public, max-age=60', 'max-age=1, must-revalidate', 's-maxage=600']), body: `good ${i}`, etag: rand.int(2) === 0 ? `"g${i}"` : undefined };
        plan.set(path, good);
        const r = await get(path);
        assert.notEqual(r, 'cut');
        before = stored(path)?.[0];
        assert.ok(before !== undefined, `case ${i}: the good response was stored (${good.status} ${good.cc})`);
      }
      // 2. The bad answer.
      const which = rand.int(10);
      let bad: Plan;
      if (which < 5) bad = { kind: 'status', status: 500 + rand.int(100), cc: rand.pick(RESPONSE_CC), body: `bad ${i}` };
      else if (which < 7) bad = { kind: 'partial', cc: rand.pick(RESPONSE_CC) };
      else {
        const fault = hangs < 8 ? rand.pick(['close', 'hang', 'cut', 'garbage'] as const) : rand.pick(['close', 'cut', 'garbage'] as const);
        if (fault === 'hang') hangs++;
        bad = { kind: 'fault', fault };
      }
      plan.set(path, bad);
      const headers: Record<string, string> = { 'cache-control': rand.pick(['no-cache', 'max-age=0']) };
      if (bad.kind === 'partial' && rand.int(2) === 0) headers.range = 'bytes=0-4';
      const r = await get(path, headers);
      const what = `case ${i}: ${JSON.stringify(bad)} after ${before === undefined ? 'nothing stored' : `a stored ${before.status}`}`;
      const mayStore = bad.kind === 'status' && before === undefined;
      if (r !== 'cut' && !mayStore) assert.doesNotMatch(r.cs, /stored/, `${what}: Cache-Status says stored`);
      const after = stored(path);
      if (before !== undefined) {
        assert.equal(after?.length, 1, what);
        assert.equal(after![0], before, `${what}: the stored response was replaced or changed`);
      } else if (bad.kind === 'status') {
        // RFC 9111 §3 lets a fresh 5xx be stored when nothing is; never with a gateway failure, and then only what the upstream sent.
        if (after !== undefined) {
          assert.equal(after[0]!.status, bad.status, what);
          assert.equal(after[0]!.body.toString(), bad.body, what);
        }
      } else {
        assert.equal(after, undefined, `${what}: something was stored`);
      }
      if (bad.kind === 'fault' && r !== 'cut' && before === undefined) assert.ok(r.status >= 502 && r.status <= 504, `${what}: status ${r.status}`);
    }
  });
});

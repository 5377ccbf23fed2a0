import { test } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { ServerResponse } from 'node:http';
import { cacheKey } from '../../src/cache/index.js';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { startTestGateway } from '../helpers/gateway.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { endedRecords, within } from '../helpers/ended-records.js';
import { cacheGet, counterSum, fillStale, Holds, answerStale, isFill } from './stale-entry.js';

/**
 * A storable answer that is both larger than the route's `maxObjectSize` and purged while it
 * comes: one rule names the refusal on both paths, a client's request (`storeRefused`,
 * `gatewise_cache_store_refused_total{reason}`) and a background revalidation (`revalidation`,
 * `gatewise_cache_revalidations_total{result}`). The first to decide the store names it: a purge
 * that arrived before the size refused the store, `purged`; once the size refused it (a
 * `Content-Length` over the limit at the head, or the body passing it), a later purge changes
 * nothing, `too-large`. Before, the client path followed that rule and the revalidation said
 * `purged` whenever a purge came before its end, so the same race was named by which path ran
 * it. The purge is made from undici's diagnostics channels in the gateway's own upstream
 * request, at the event the size is decided on (the head with a `Content-Length`, else the body
 * chunk that passes the limit): synchronously, before the gateway's handler sees that event, or
 * in a microtask, after it. Seeded over the path, the body's size in a range around the limit,
 * whether it has a `Content-Length`, and the purge's moment (none; before the head; at the size's
 * event, before or after the handler; with a body within the limit, at the head).
 */
type Path = 'client' | 'revalidation';
type Moment = 'none' | 'before-head' | 'at-size' | 'after-size';
const MOMENTS: readonly Moment[] = ['none', 'before-head', 'at-size', 'after-size'];

const LIMIT = 2048;

/** The gateway's upstream request a case purges at: its path, and what to do at its size's event. */
interface Trap {
  path: string;
  byLength: boolean;
  over: boolean;
  fire: () => void;
  bytes: number;
  fired: boolean;
}

test('a response both too large and purged while it comes is named by the first to decide its store, the same on a client\'s request and a revalidation (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const holds = new Holds();
  const up = await startScriptedUpstream((req, res) => {
    req.resume();
    // Held: the request a case answers (a client's, or a revalidation's after its path's fill).
    if (holds.take(req, res)) return;
    if (isFill(up, req)) answerStale(res, 'A');
    else res.writeHead(500).end();
  });
  const origin = new URL(up.url).origin;
  let trap: Trap | undefined;
  type Msg = { request: { origin?: string; path: string }; chunk?: Buffer };
  const mine = (m: Msg): Trap | undefined => (trap !== undefined && !trap.fired && m.request.origin === origin && m.request.path === trap.path ? trap : undefined);
  const onHeaders = (m: unknown): void => {
    const t = mine(m as Msg);
    // With a Content-Length the size is decided at the head; a body within the limit is purged there too.
    if (t !== undefined && (t.byLength || !t.over)) {
      t.fired = true;
      t.fire();
    }
  };
  const onChunk = (m: unknown): void => {
    const t = mine(m as Msg);
    if (t === undefined || t.byLength || !t.over) return;
    t.bytes += (m as Msg).chunk!.length;
    if (t.bytes > LIMIT) {
      t.fired = true;
      t.fire();
    }
  };
  subscribe('undici:request:headers', onHeaders);
  subscribe('undici:request:bodyChunkReceived', onChunk);
  const records = endedRecords();
  let g: Awaited<ReturnType<typeof startTestGateway>> | undefined;
  try {
    g = await startTestGateway({
      // undici: its diagnostics channels say when the gateway's upstream request gets its head and each chunk.
      clusters: { up: { endpoints: [up.url], client: 'undici', outlierDetection: { enabled: false } } },
      routes: [{ name: 'r', cluster: 'up', retry: { tries: 1 }, cache: { maxObjectSize: LIMIT } }],
    } as never);
    const gw = g;
    const base = gw.url.replace(/\/$/, '');
    const cache = gw.gw.ctx.cache!;
    const refused = (reason: string) => counterSum(gw.registry, 'gatewise_cache_store_refused_total', { route: 'r', reason });
    const revalidated = (result: string) => counterSum(gw.registry, 'gatewise_cache_revalidations_total', { route: 'r', result });
    await withSeed(rand, async () => {
      for (let i = 0; i < 24; i++) {
        const path: Path = rand.pick(['client', 'revalidation'] as const);
        const moment = rand.pick(MOMENTS);
        // Around the limit, its two edges often.
        const r = rand.int(4);
        const size = r === 0 ? LIMIT : r === 1 ? LIMIT + 1 : LIMIT - 64 + rand.int(129);
        const over = size > LIMIT;
        const byLength = rand.next() < 0.5;
        const url = `/r${i}-${rand.seed}`;
        const key = cacheKey(`127.0.0.1${url}`, 'r');
        const what = `case ${i}: ${path}, ${size} bytes (limit ${LIMIT}), ${byLength ? 'Content-Length' : 'chunked'}, purge ${moment}`;
        if (path === 'revalidation') await fillStale(base, url, what);
        let purged = (): void => undefined;
        const purgedP = new Promise<void>((resolve) => (purged = resolve));
        const purge = (): void => {
          cache.invalidateTarget(`127.0.0.1${url}`);
          purged();
        };
        if (moment === 'at-size' || moment === 'after-size') {
          trap = { path: url, byLength, over, bytes: 0, fired: false, fire: moment === 'at-size' ? purge : () => queueMicrotask(purge) };
        } else trap = undefined;
        const atOrigin = holds.hold(url);
        const counted = path === 'client' ? refused : revalidated;
        const words = path === 'client' ? ['purged', 'too-large'] : ['purged', 'too-large', 'replaced'];
        const before = new Map<string, number>();
        for (const w of words) before.set(w, await counted(w));
        const sent = cacheGet(base, url);
        sent.catch(() => undefined);
        if (path === 'revalidation') {
          const hit = await within(sent, 10_000, `${what}: the stale hit`);
          assert.match(hit.cs, /detail=stale-while-revalidate$/, `${what}: the stale hit`);
        }
        const res: ServerResponse = await within(atOrigin, 10_000, `${what}: the request at the origin`);
        if (moment === 'before-head') purge();
        const body = Buffer.alloc(size, 0x62);
        res.writeHead(200, { etag: '"b"', 'cache-control': 'max-age=600', ...(byLength ? { 'content-length': String(size) } : {}) });
        // All but the end (the last byte, or the last chunk) until the purge is made.
        res.write(byLength ? body.subarray(0, size - 1) : body);
        if (moment !== 'none') await within(purgedP, 10_000, `${what}: the purge`);
        res.end(byLength ? body.subarray(size - 1) : undefined);
        // The rule: a purge before the size refused the store names it; none, or one after, leaves the size's word.
        const want = moment === 'none' ? (over ? 'too-large' : undefined) : moment === 'after-size' && over ? 'too-large' : 'purged';
        if (path === 'client') {
          const got = await within(sent, 10_000, `${what}: the answer`);
          assert.equal(got.status, 200, what);
          assert.equal(got.body.length, size, `${what}: the client got the whole body`);
          const rec = await within(records.wait((x) => x.requestId === got.id), 10_000, `${what}: the record`);
          assert.equal(rec.storeRefused, want, `${what}: the record's storeRefused`);
          assert.equal(rec.cache, 'miss', `${what}: the record's cache`);
        } else {
          const hit = await sent;
          const rec = await within(records.wait((x) => x.background === 'revalidation' && x.triggeredBy === hit.id), 10_000, `${what}: the revalidation's record`);
          const result = want ?? 'replaced';
          assert.equal(rec.revalidation, result, `${what}: the revalidation's result`);
        }
        // Counted as the record was published (the metrics subscribe to it): the one label of the rule, by one.
        const label = path === 'client' ? want : (want ?? 'replaced');
        for (const w of words) assert.equal(await counted(w), before.get(w)! + (w === label ? 1 : 0), `${what}: ${path === 'client' ? 'store_refused_total{reason' : 'revalidations_total{result'}="${w}"}`);
        assert.equal(trap === undefined || trap.fired, true, `${what}: the purge was made at its event`);
        const stored = cache.store.get(key);
        if (want === undefined) assert.equal(stored?.[0]?.etag, '"b"', `${what}: stored`);
        else if (moment === 'none') assert.notEqual(stored?.[0]?.etag, '"b"', `${what}: not stored`);
        else assert.equal(stored, undefined, `${what}: nothing stored after the purge`);
        assert.equal(cache.keysUnderway, 0, `${what}: every store under way was finished`);
      }
    });
  } finally {
    unsubscribe('undici:request:headers', onHeaders);
    unsubscribe('undici:request:bodyChunkReceived', onChunk);
    records.close();
    await g?.close();
    await up.close();
  }
});

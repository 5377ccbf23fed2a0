import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Agent, request } from 'undici';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { certDir } from '../helpers/tls-certs.js';
import { seededRandom, withSeed, type Rand } from '../helpers/seeded.js';
import { endedRecords, within } from '../helpers/ended-records.js';

/**
 * Adversarial review, session 30: a purge (admin purge by key or prefix) or the RFC 9111 §4.4
 * invalidation after an unsafe request did not reach a response still on its way into the
 * store; it finished after the purge and was stored, and the purged content came back as a
 * hit. Likewise a background revalidation answered after the purge put its response (or the
 * freshened purged one) back.
 *
 * The origin holds the first request of each path and the test writes it chunk by chunk: the
 * purge runs (and answers) before the head, between two body chunks the client has received,
 * or right before the end; then the response ends, its access-log record is waited for, and
 * the next request must be a miss that goes to the origin. Seeded over the purge's form (key,
 * prefix, unsafe request on either scheme), the client's scheme, the chunks and the moment.
 */

interface Held {
  req: IncomingMessage;
  res: ServerResponse;
}

/** An origin whose first request of each path (and each conditional one) the test answers itself; every other gets an immediate 200. */
async function heldOrigin() {
  const seen = new Map<string, number>();
  const waiting = new Map<string, (h: Held) => void>();
  const arrived = new Map<string, Held>();
  const holdNext = new Set<string>();
  const up = await startScriptedUpstream((req, res) => {
    const path = req.url!;
    req.resume();
    if (req.method !== 'GET') {
      res.writeHead(204);
      res.end();
      return;
    }
    seen.set(path, (seen.get(path) ?? 0) + 1);
    if (holdNext.delete(path)) {
      const h = { req, res };
      const w = waiting.get(path);
      if (w !== undefined) {
        waiting.delete(path);
        w(h);
      } else arrived.set(path, h);
      return;
    }
    res.writeHead(200, { 'cache-control': 'max-age=0, stale-while-revalidate=600', etag: '"plain"', 'x-gen': 'later', 'content-length': '5' });
    res.end('later');
  });
  return {
    up,
    seen: (p: string) => seen.get(p) ?? 0,
    /** Hold the next GET of `path`. */
    hold(path: string): void {
      holdNext.add(path);
    },
    /** The held request of `path`, once it arrives. */
    arrival(path: string): Promise<Held> {
      const h = arrived.get(path);
      if (h !== undefined) {
        arrived.delete(path);
        return Promise.resolve(h);
      }
      return new Promise((resolve) => waiting.set(path, resolve));
    },
  };
}

type PurgeForm = 'key' | 'prefix' | 'https-prefix' | 'post-http' | 'post-https';

async function setup() {
  const dir = certDir('gatewise-purge-inflight-');
  const ca = dir.ca('Purge CA');
  const cert = ca.issue('127.0.0.1', { ip: ['127.0.0.1'] });
  const origin = await heldOrigin();
  let g: TestGateway;
  try {
    g = await startTestGateway({
      listeners: [
        { address: '127.0.0.1', port: 0 },
        { address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: cert.certFile, key: cert.keyFile }] } },
      ],
      clusters: { up: { endpoints: [`http://127.0.0.1:${origin.up.port}`], outlierDetection: { enabled: false } } },
      routes: [{ cluster: 'up', retry: { tries: 1 }, cache: {} }],
    } as never);
  } catch (err) {
    await origin.up.close();
    dir.remove();
    throw err;
  }
  const tlsPort = (g.gw.addresses() as Array<{ port: number }>)[1]!.port;
  const agent = new Agent({ connect: { ca: ca.cert } });
  const bases = { http: `http://127.0.0.1:${g.port}`, https: `https://127.0.0.1:${tlsPort}` };
  const records = endedRecords();
  const close = async (): Promise<void> => {
    records.close();
    await g.close();
    await agent.close();
    await origin.up.close();
    dir.remove();
  };
  return { g, origin, agent, bases, records, close };
}

type Setup = Awaited<ReturnType<typeof setup>>;

/** Run one purge of `path` in the given form; resolves with its answer. */
async function purge(s: Setup, form: PurgeForm, path: string, rand: Rand): Promise<string> {
  const cache = s.g.gw.ctx.cache!;
  const target = `127.0.0.1${path}`;
  switch (form) {
    case 'key':
      return `key: ${cache.invalidateTarget(rand.next() < 0.5 ? target : `https://${target}`)}`;
    case 'prefix':
    case 'https-prefix': {
      // Any prefix of the target that still names the host.
      const cut = '127.0.0.1/'.length + rand.int(target.length - '127.0.0.1/'.length + 1);
      const p = (form === 'https-prefix' ? 'https://' : '') + target.slice(0, cut);
      return `prefix ${p}: ${cache.purgePrefix(p)}`;
    }
    case 'post-http':
    case 'post-https': {
      const r = await request(s.bases[form === 'post-http' ? 'http' : 'https'] + path, { method: 'POST', body: 'x', dispatcher: s.agent });
      await r.body.text();
      assert.equal(r.statusCode, 204);
      return `POST ${String(r.headers['cache-status'])}`;
    }
  }
}

async function get(s: Setup, scheme: 'http' | 'https', path: string): Promise<{ cs: string; gen: string; id: string }> {
  const r = await request(s.bases[scheme] + path, { dispatcher: s.agent });
  await r.body.text();
  return { cs: String(r.headers['cache-status']), gen: String(r.headers['x-gen']), id: String(r.headers['x-request-id']) };
}

/** `gatewise_cache_revalidations_total` for one result, summed over routes. */
async function revalidations(s: Setup, result: string): Promise<number> {
  const m = await s.g.registry.getSingleMetric('gatewise_cache_revalidations_total')!.get();
  let n = 0;
  for (const v of m.values) if ((v.labels as Record<string, unknown>).result === result) n += v.value;
  return n;
}

const FORMS: readonly PurgeForm[] = ['key', 'prefix', 'https-prefix', 'post-http', 'post-https'];

test('a purge or an invalidation cancels the stores under way of the keys it covers: before the head, between chunks, before the end (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const s = await setup();
  try {
    await withSeed(rand, async () => {
      for (let i = 0; i < 16; i++) {
        const path = `/p${i}-${rand.seed}?q=${rand.int(100)}`;
        const scheme = rand.pick(['http', 'https'] as const);
        const form = rand.pick(FORMS);
        const chunks = Array.from({ length: 1 + rand.int(4) }, (_, c) => Buffer.alloc(1 + rand.int(3000), 97 + c));
        // The purge runs after this many chunks reached the client; -1: before the head. With
        // every chunk and no Content-Length, the response has not ended (the last chunk is to come).
        // Not between the head and the first chunk: the gateway passes the head on with the first
        // chunk, so nothing the test can wait for says it has the head.
        const after = rand.int(chunks.length + 1) || -1;
        const withLength = (after < 0 || after < chunks.length) && rand.next() < 0.5;
        const what = `case ${i}: ${scheme} ${path}, purge by ${form} after ${after < 0 ? 'nothing (before the head)' : `${after} of ${chunks.length} chunks`}${withLength ? ', with Content-Length' : ''}`;
        s.origin.hold(path);
        const pending = request(s.bases[scheme] + path, { dispatcher: s.agent });
        const held = await s.origin.arrival(path);
        const length = chunks.reduce((n, c) => n + c.length, 0);
        const head = (): void => {
          held.res.writeHead(200, { 'cache-control': 'max-age=600', 'x-gen': 'purged', ...(withLength ? { 'content-length': String(length) } : {}) });
          held.res.flushHeaders();
        };
        let purged = '';
        if (after < 0) {
          purged = await purge(s, form, path, rand);
          head();
          for (const c of chunks) held.res.write(c);
          held.res.end();
        } else {
          head();
          for (const c of chunks.slice(0, after)) held.res.write(c);
        }
        const r = await pending;
        const id = String(r.headers['x-request-id']);
        let got = 0;
        const want = chunks.slice(0, Math.max(0, after)).reduce((n, c) => n + c.length, 0);
        const rest = async (): Promise<void> => {
          purged = await purge(s, form, path, rand);
          for (const c of chunks.slice(after)) held.res.write(c);
          held.res.end();
        };
        for await (const c of r.body) {
          got += (c as Buffer).length;
          if (after > 0 && purged === '' && got >= want) await rest();
        }
        assert.equal(got, length, `${what}: the client got the whole body`);
        await within(s.records.wait((rec) => rec.requestId === id), 10_000, `${what}: the record of the request`);
        const before = s.origin.seen(path);
        const next = await get(s, scheme, path);
        assert.doesNotMatch(next.cs, /; hit/, `${what} (${purged}): the purged response answered from the store: ${next.cs}`);
        assert.equal(next.gen, 'later', `${what} (${purged})`);
        assert.equal(s.origin.seen(path), before + 1, `${what}: the next request went to the origin`);
        await within(s.records.wait((r) => r.requestId === next.id), 10_000, `${what}: the record of the next request`);
        assert.equal(s.g.gw.ctx.cache!.keysUnderway, 0, `${what}: every store under way was finished`);
      }
    });
  } finally {
    await s.close();
  }
});

test('a purge during a background revalidation: neither its 304 nor its new response is stored, and it is recorded and counted as purged (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const s = await setup();
  try {
    await withSeed(rand, async () => {
      for (let i = 0; i < 8; i++) {
        const path = `/r${i}-${rand.seed}`;
        const scheme = rand.pick(['http', 'https'] as const);
        const form = rand.pick(FORMS);
        const answer = rand.pick(['304', '200'] as const);
        const what = `case ${i}: ${scheme} ${path}, purge by ${form}, revalidation answered ${answer}`;
        // Stored, stale at once (max-age=0) and within stale-while-revalidate.
        assert.match((await get(s, scheme, path)).cs, /stored/, what);
        s.origin.hold(path);
        const stale = await get(s, scheme, path);
        assert.match(stale.cs, /detail=stale-while-revalidate/, what);
        const held = await s.origin.arrival(path);
        assert.equal(held.req.headers['if-none-match'], '"plain"', `${what}: the revalidation is conditional`);
        const purged = await purge(s, form, path, rand);
        if (answer === '304') {
          held.res.writeHead(304, { 'cache-control': 'max-age=600', etag: '"plain"' });
          held.res.end();
        } else {
          held.res.writeHead(200, { 'cache-control': 'max-age=600', etag: '"new"', 'x-gen': 'purged' });
          held.res.write('re');
          held.res.end('placed');
        }
        const rec = await within(s.records.wait((r) => r.background === 'revalidation' && r.triggeredBy === stale.id), 10_000, `${what}: the revalidation's record`);
        // Recorded as what happened: cancelled by the purge, not `kept` (before session 32 it said
        // `kept`, which claims the answer was judged and not stored, and counted it so).
        assert.equal(rec.revalidation, 'purged', `${what}: the revalidation is recorded as cancelled by the purge`);
        assert.equal(await revalidations(s, 'purged'), i + 1, `${what}: counted as purged`);
        assert.equal(await revalidations(s, 'kept'), 0, `${what}: not counted as kept`);
        const before = s.origin.seen(path);
        const next = await get(s, scheme, path);
        assert.doesNotMatch(next.cs, /; hit/, `${what} (${purged}): answered from the store after the purge: ${next.cs}`);
        assert.equal(next.gen, 'later', `${what} (${purged})`);
        assert.equal(s.origin.seen(path), before + 1, `${what}: the next request went to the origin`);
        await within(s.records.wait((r) => r.requestId === next.id), 10_000, `${what}: the record of the next request`);
        assert.equal(s.g.gw.ctx.cache!.keysUnderway, 0, `${what}: every store under way was finished`);
      }
    });
  } finally {
    await s.close();
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { request } from 'undici';
import { seededRandom, withSeed, type Rand } from '../helpers/seeded.js';
import { endedRecords, within } from '../helpers/ended-records.js';
import { sumOf } from '../helpers/metrics-text.js';
import { recased, withPurgeRuntime } from './purge-runtime.js';

/**
 * A purge that arrives while a storable response streams into the store (its head said
 * `Cache-Status: ...; stored`, its body is still coming) cancels that store: the client still
 * gets the whole response, nothing is stored, its record says `storeRefused: purged`, and the next
 * GET is a miss that goes to the origin. Here the purge goes the operator's way, through the
 * admin API (`POST /cache/purge?key=` or `?prefix=`, any spelling of the target: host case and
 * port, scheme, path encodings, and the casing of a `caseInsensitive` route's rewritten prefix),
 * or is an unsafe request's invalidation (a POST to the target, in any casing of that prefix).
 * The origin sends the head and the first chunk, then holds the rest until the test, having the
 * first chunk and the purge's answer, releases it (events, no sleeps). Guards: a purge of another
 * target cancels nothing (the response is stored, the next GET a hit); a purge after the store
 * finished removes it as before. Seeded over the route, the form, the spelling and the guards.
 */

type Form = 'key' | 'prefix' | 'post';
type Moment = 'in-flight' | 'other-target' | 'after-store';

interface Route {
  readonly name: string;
  /** The client path's prefix as configured ('' for the catch-all route). */
  readonly prefix: string;
  /** The upstream path of a client path on the route. */
  upstream(clientPath: string): string;
}

const API: Route = { name: 'api', prefix: '/Api', upstream: (p) => p.slice('/Api'.length) };
const REST: Route = { name: 'rest', prefix: '', upstream: (p) => p };

test('an admin purge (any spelling) or an invalidating POST during the body cancels the store under way; another target\'s does not; a finished store is purged (seeded)', { timeout: 120_000 }, async () => {
  const rand = seededRandom();
  const held = new Map<string, (res: ServerResponse) => void>();
  const seen = new Map<string, number>();
  const records = endedRecords();
  try {
    await withPurgeRuntime(
      (req, res) => {
        req.resume();
        const path = req.url!;
        if (req.method !== 'GET') {
          res.writeHead(204);
          res.end();
          return;
        }
        seen.set(path, (seen.get(path) ?? 0) + 1);
        const h = held.get(path);
        if (h !== undefined) {
          held.delete(path);
          h(res);
          return;
        }
        res.writeHead(200, { 'cache-control': 'max-age=600', 'x-gen': 'later', 'content-length': '5' });
        res.end('later');
      },
      [
        { name: 'api', match: { pathPrefix: '/Api/', caseInsensitive: true }, stripPrefix: true, cache: { collapseWait: '0s' } },
        { name: 'rest', cache: { collapseWait: '0s' } },
      ],
      async ({ gwUrl, gwPort, purge, metrics }) => {
        const get = async (path: string): Promise<{ cs: string; gen: string; id: string }> => {
          const r = await request(gwUrl + path);
          await r.body.text();
          return { cs: String(r.headers['cache-status']), gen: String(r.headers['x-gen']), id: String(r.headers['x-request-id']) };
        };
        /** The client path of `rest` on `route`, its prefix in a drawn casing. */
        const spell = (route: Route, rest: string): string => (route.prefix === '' ? '' : recased(rand, route.prefix)) + rest;
        /**
         * A target naming `path` (a client path on `route`), spelled as an operator might: the
         * host's case, port, trailing dot or scheme, the prefix's casing; a key's path encoded
         * or with dot segments too (a prefix's stays as written: `/%7` or `/x/.` would be cut
         * short of the key).
         */
        const targetText = (route: Route, path: string, asKey: boolean): string => {
          const host = rand.pick(['127.0.0.1', `127.0.0.1:${gwPort}`, 'HTTP://127.0.0.1', 'https://127.0.0.1', '127.0.0.1.']);
          let p = path.slice(route.prefix.length);
          if (asKey) p = rand.next() < 0.5 ? p.replace('/~', '/%7e') : p.replace('/a', '/./x/../a');
          return host + spell(route, p);
        };
        /**
         * A purge of `path` in the given form; its answer. A prefix is cut anywhere after the
         * host's slash, but not before `apart` (where `path` parts from the target that must stay).
         */
        const run = async (form: Form, route: Route, path: string, apart?: string): Promise<string> => {
          if (form === 'post') {
            const r = await request(gwUrl + spell(route, path.slice(route.prefix.length)), { method: 'POST', body: 'x' });
            await r.body.text();
            assert.equal(r.statusCode, 204);
            return `POST: ${String(r.headers['cache-status'])}`;
          }
          const text = targetText(route, path, form === 'key');
          if (form === 'key') return `key ${text}: ${await purge('key', text)}`;
          const from = apart === undefined ? text.indexOf('/', text.indexOf('127.0.0.1')) + 1 : text.indexOf(apart) + 2;
          const cut = from + rand.int(text.length - from + 1);
          return `prefix ${text.slice(0, cut)}: ${await purge('prefix', text.slice(0, cut))}`;
        };
        /** `gatewise_cache_store_refused_total{reason="purged"}` of one route. */
        const refused = async (route: Route): Promise<number> => sumOf(await metrics(), 'gatewise_cache_store_refused_total', { route: route.name, reason: 'purged' });
        await withSeed(rand, async () => {
          for (let i = 0; i < 16; i++) {
            const route = rand.pick([API, REST]);
            const form = rand.pick(['key', 'prefix', 'post'] as const);
            const moment: Moment = rand.pick(['in-flight', 'in-flight', 'other-target', 'after-store']);
            const n = `${i}-${rand.seed}`;
            const path = `${route.prefix}/~u-${n}/a?q=${rand.int(100)}`;
            // Another target, apart from `path` before its first segment ends.
            const other = `${route.prefix}/~v-${n}/a`;
            const upstream = route.upstream(path);
            const chunks = Array.from({ length: 2 + rand.int(3) }, (_, c) => Buffer.alloc(1 + rand.int(3000), 97 + c));
            const length = chunks.reduce((k, c) => k + c.length, 0);
            const withLength = rand.next() < 0.5;
            const what = `case ${i}: route ${route.name}, ${moment}, by ${form}, ${chunks.length} chunks${withLength ? ', with Content-Length' : ''}`;
            const counted = await refused(route);
            const origin = new Promise<ServerResponse>((resolve) => held.set(upstream, resolve));
            const pending = request(gwUrl + spell(route, path.slice(route.prefix.length)));
            const res = await within(origin, 10_000, `${what}: the origin's request ${upstream}`);
            res.writeHead(200, { 'cache-control': 'max-age=600', 'x-gen': 'first', ...(withLength ? { 'content-length': String(length) } : {}) });
            res.write(chunks[0]);
            const r = await pending;
            if (withLength) assert.match(String(r.headers["cache-status"]), /; stored/, `${what}: the head was judged storable: ${String(r.headers["cache-status"])}`);
            const id = String(r.headers['x-request-id']);
            let got = 0;
            let purged = '';
            for await (const c of r.body) {
              got += (c as Buffer).length;
              if (purged === '' && got >= chunks[0]!.length) {
                // The client has the first chunk; the rest waits for the purge's answer.
                purged = moment === 'after-store' ? '(later)' : await (moment === 'in-flight' ? run(form, route, path) : run(form, route, other, `~v-${n}`));
                for (const c2 of chunks.slice(1)) res.write(c2);
                res.end();
              }
            }
            assert.equal(got, length, `${what}: the client got the whole body`);
            const rec = await within(records.wait((x) => x.requestId === id), 10_000, `${what}: the record`);
            if (moment === 'after-store') {
              assert.equal(rec.storeRefused, undefined, `${what}: stored`);
              assert.match((await get(spell(route, path.slice(route.prefix.length)))).cs, /; hit/, `${what}: stored before the purge`);
              purged = await run(form, route, path);
            } else if (moment === 'in-flight') {
              assert.equal(rec.storeRefused, 'purged', `${what} (${purged}): the record says the purge cancelled the store`);
              assert.equal(await refused(route), counted + 1, `${what}: counted in gatewise_cache_store_refused_total{reason="purged"}`);
            } else {
              assert.equal(rec.storeRefused, undefined, `${what} (${purged}): another target's purge cancelled nothing`);
              assert.equal(await refused(route), counted, `${what}: nothing counted`);
            }
            const before = seen.get(upstream) ?? 0;
            const next = await get(spell(route, path.slice(route.prefix.length)));
            if (moment === 'other-target') {
              assert.match(next.cs, /; hit/, `${what} (${purged}): stored: ${next.cs}`);
              assert.equal(next.gen, 'first', what);
            } else {
              assert.doesNotMatch(next.cs, /; hit/, `${what} (${purged}): the purged response answered from the store: ${next.cs}`);
              assert.equal(next.gen, 'later', `${what} (${purged})`);
              assert.equal(seen.get(upstream), before + 1, `${what}: the next request went to the origin`);
            }
          }
        });
      },
    );
  } finally {
    records.close();
  }
});

import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { request } from 'undici';
import type { ScriptedUpstream } from '../helpers/scripted-upstream.js';

/**
 * The set-up the stale-while-revalidate tests share (before session 34 each wrote its own copy):
 * an origin whose first answer for a path is stored stale at once within a stale-while-revalidate
 * window, with the entity tag `STALE_ETAG`; a GET through the gateway that reads what the tests
 * assert on; the fill of a path with that stale entry; the origin holding a path's next request
 * until the test answers it; a counter of the gateway's registry summed over matching labels.
 */

/** The entity tag of the stale entry the origin fills a path with. */
export const STALE_ETAG = '"a"';

/** Whether `req` is the first request the origin got for its path (the fill). The upstream records a request before its handler runs. */
export function isFill(up: ScriptedUpstream, req: IncomingMessage): boolean {
  const path = req.url!.split('?')[0];
  return up.received.filter((r) => r.url.split('?')[0] === path).length === 1;
}

/** Answer the fill: stale on arrival (`max-age=0`), within `stale-while-revalidate=swr` seconds, with `STALE_ETAG`. */
export function answerStale(res: ServerResponse, body: string, swr = 600): void {
  // With its length: a head says `stored` only when it decides the store (docs/cache.md).
  res.writeHead(200, { etag: STALE_ETAG, 'cache-control': `max-age=0, stale-while-revalidate=${swr}`, 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}

/** What the tests read of an answer: status, body, Cache-Status and the request id (the record's). */
export interface Got {
  status: number;
  body: string;
  cs: string;
  id: string;
}

/** GET `path` through the gateway at `base` (its URL without the trailing slash). */
export async function cacheGet(base: string, path: string, headers: Record<string, string> = {}): Promise<Got> {
  const r = await request(base + path, { headers });
  return { status: r.statusCode, body: await r.body.text(), cs: String(r.headers['cache-status']), id: String(r.headers['x-request-id']) };
}

/** Fill `path` with the origin's first answer and check it was stored. */
export async function fillStale(base: string, path: string, what: string): Promise<Got> {
  const got = await cacheGet(base, path);
  assert.match(got.cs, /; stored$/, `${what}: filled (${got.cs})`);
  return got;
}

/** Requests the origin holds, by path, until the test answers them (`hold` before the request is sent). */
export class Holds {
  readonly #held = new Map<string, (res: ServerResponse) => void>();

  /** The next request for `path` is held: the promise gives its response to write. */
  hold(path: string): Promise<ServerResponse> {
    return new Promise((resolve) => this.#held.set(path, resolve));
  }

  /** In the origin's handler: true when this request was held (the test answers it). */
  take(req: IncomingMessage, res: ServerResponse): boolean {
    const w = this.#held.get(req.url!);
    if (w === undefined) return false;
    this.#held.delete(req.url!);
    w(res);
    return true;
  }
}

/** The sum of a counter's samples whose labels include `labels`; 0 when it is not registered (the count's assertion then fails). */
export async function counterSum(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) return 0;
  let n = 0;
  for (const v of (await metric.get()).values) {
    const l = v.labels as Record<string, unknown>;
    if (Object.entries(labels).every(([k, want]) => l[k] === want)) n += v.value;
  }
  return n;
}
